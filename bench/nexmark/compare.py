"""Nexmark in weir and in Apache Flink, same machine, same JSON-lines input, same run.

Run it through bench/nexmark-vs-flink.sh, which builds weir and the plugins and installs Flink from
the Python package index into bench/.venv first. Steps:

1. Generate N Nexmark bids into a JSON-lines file with weir's generator (reused when present).
2. Equal outputs: every query once in each system with a file sink, on the first --check-events
   bids of the file; the two outputs must be equal as multisets (numeric columns with fractions within a relative 1e-9, timestamps compared as
   instants). weir's q1-wasm is checked against Flink's q1.
3. Throughput: for each parallelism and query, weir (`weir bench nexmark --input`, one process
   per run, job time only) and Flink (flink_job.py: one JVM per query, warmed up, the per-job
   set-up cost subtracted), --runs runs each, the median by events per CPU-second.
4. Print a Markdown table, write the results as JSON and a PNG bar chart.
"""

import argparse
import collections
import datetime
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "bench" / "nexmark"
WEIR_QUERIES = ["q0", "q1", "q1-wasm", "q2", "q5", "q7", "q14", "q21", "q22"]
WARMUP_EVENTS = 10_000
TOLERANCE = 1e-9


def flink_query(weir_query):
    """The Flink SQL twin of a weir query: `q1-wasm` is q1 with the conversion in Wasm."""
    return weir_query.split("-")[0]


def log(message):
    print(message, file=sys.stderr, flush=True)


def generate_input(weir, events, work):
    path = work / f"bids-{events}.jsonl"
    if path.exists():
        log(f"reusing {path}")
        return path
    log(f"generating {events} bids into {path} ...")
    pipeline = work / "generate.yaml"
    generator_events = -(-events // 46) * 50
    pipeline.write_text(json.dumps({
        "sources": {"bids": {"type": "nexmark", "kind": "bid", "events": generator_events}},
        "sinks": {"out": {"type": "file", "inputs": ["bids"], "path": str(path) + ".tmp", "format": "json"}},
    }))
    subprocess.run([weir, "run", "--quiet", pipeline], check=True)
    # The generator rounds up to whole epochs of 46 bids: keep exactly `events` lines.
    with open(str(path) + ".tmp") as full, open(path, "w") as out:
        for number, line in enumerate(full):
            if number == events:
                break
            out.write(line)
    os.remove(str(path) + ".tmp")
    return path


def head(path, lines, out):
    with open(path) as full, open(out, "w") as small:
        for number, line in enumerate(full):
            if number == lines:
                break
            small.write(line)
    return out


def run_weir(weir, queries, bids, runs, parallelism=None, output=None):
    command = [weir, "bench", "nexmark", "--queries", ROOT / "examples" / "nexmark", "--mode", "file",
               "--input", bids, "--runs", str(runs), "--json", "--only", ",".join(queries)]
    if parallelism:
        command += ["--parallelism", str(parallelism)]
    if output:
        command += ["--output-dir", output]
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return {line["query"]: line for line in map(json.loads, result.stdout.splitlines())}


def run_flink(python, query, bids, warmup, runs, parallelism, output=None):
    command = [python, HERE / "flink_job.py", "--query", HERE / "flink" / f"{query}.sql", "--input", bids,
               "--warmup", warmup, "--parallelism", str(parallelism), "--runs", str(runs)]
    if output:
        command += ["--output", output]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("\tat "))[-3000:]
        raise SystemExit(f"Flink failed on {query}:\n{tail}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def flink_summary(result, events):
    """Median run by events per CPU-second, with the per-job set-up (measured on the warm-up
    file in the same JVM) subtracted from wall and CPU time."""
    measured = []
    for run in result["runs"]:
        wall = run["wall_seconds"] - result["fixed_wall_seconds"]
        cpu = run["cpu_seconds"] - result["fixed_cpu_seconds"]
        if wall <= 0 or cpu <= 0:  # the input is too small to see past the set-up cost
            wall, cpu = run["wall_seconds"], run["cpu_seconds"]
        measured.append({"wall_seconds": wall, "cpu_seconds": cpu, "raw": run,
                         "events_per_second": (events - WARMUP_EVENTS) / wall,
                         "events_per_cpu_second": (events - WARMUP_EVENTS) / cpu})
    measured.sort(key=lambda run: run["events_per_cpu_second"])
    median = dict(measured[len(measured) // 2])
    median["peak_rss_bytes"] = result["peak_rss_bytes"]
    median["fixed_wall_seconds"] = result["fixed_wall_seconds"]
    median["fixed_cpu_seconds"] = result["fixed_cpu_seconds"]
    return median


# ---- equal outputs ----

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?$")


def canonical(value):
    if isinstance(value, str) and TIMESTAMP.match(value):
        return datetime.datetime.fromisoformat(value.replace(" ", "T")).isoformat(timespec="milliseconds")
    return value


def read_rows(paths):
    rows = []
    for path in paths:
        with open(path) as lines:
            rows.extend({key: canonical(value) for key, value in json.loads(line).items()} for line in lines if line.strip())
    return rows


def equal_as_multisets(weir_rows, flink_rows):
    """Equal as multisets: rows grouped by their exact columns, then the columns with fractions
    compared within TOLERANCE after sorting within each group. Returns (equal, explanation)."""
    if len(weir_rows) != len(flink_rows):
        return False, f"{len(weir_rows)} rows in weir, {len(flink_rows)} in Flink"
    if not weir_rows:
        return True, "both empty"
    columns = list(flink_rows[0].keys())
    if set(weir_rows[0].keys()) != set(columns):
        return False, f"columns differ: weir {sorted(weir_rows[0])}, Flink {sorted(columns)}"
    approximate = [c for c in columns if any(isinstance(row.get(c), float) for row in weir_rows + flink_rows)]
    exact = [c for c in columns if c not in approximate]

    def groups(rows):
        grouped = collections.defaultdict(list)
        for row in rows:
            key = tuple(json.dumps(row.get(c), sort_keys=True) for c in exact)
            grouped[key].append(tuple(None if row.get(c) is None else float(row[c]) for c in approximate))
        return grouped

    weir_groups, flink_groups = groups(weir_rows), groups(flink_rows)
    for key in flink_groups.keys() | weir_groups.keys():
        order = lambda values: [(value is None, value or 0.0) for value in values]  # noqa: E731
        ours, theirs = sorted(weir_groups.get(key, []), key=order), sorted(flink_groups.get(key, []), key=order)
        if len(ours) != len(theirs):
            return False, f"rows {dict(zip(exact, key))}: {len(ours)} in weir, {len(theirs)} in Flink"
        for a, b in zip(ours, theirs):
            for column, x, y in zip(approximate, a, b):
                if (x is None) != (y is None) or (x is not None and not math.isclose(x, y, rel_tol=TOLERANCE, abs_tol=TOLERANCE)):
                    return False, f"{column}: weir {x}, Flink {y} in rows {dict(zip(exact, key))}"
    return True, f"{len(weir_rows)} rows equal" + (f" ({', '.join(approximate)} within {TOLERANCE:g})" if approximate else "")


def check_outputs(weir, python, bids, warmup, queries, work):
    weir_dir, flink_dir = work / "out-weir", work / "out-flink"
    log(f"equal outputs: every query once in each system with a file sink, on {bids.name} ...")
    run_weir(weir, queries, bids, 1, output=weir_dir)
    results = {}
    for query in dict.fromkeys(flink_query(q) for q in queries):
        target = flink_dir / query
        if target.exists():
            for old in target.rglob("*"):
                if old.is_file():
                    old.unlink()
        run_flink(python, query, bids, warmup, 1, 1, output=target)
    for query in queries:
        flink_files = [p for p in (flink_dir / flink_query(query)).rglob("*") if p.is_file() and not p.name.startswith(".")]
        equal, why = equal_as_multisets(read_rows([weir_dir / f"{query}.jsonl"]), read_rows(flink_files))
        results[query] = {"equal": equal, "detail": why}
        log(f"  {query}: {'equal' if equal else 'DIFFERENT'} ({why})")
    return results


# ---- report ----

def megabytes(value):
    return f"{value / 1e6:.0f}"


def human(value):
    return f"{value / 1e6:.2f}M" if value >= 1e6 else f"{value / 1e3:.0f}k"


def table(results, events):
    lines = ["| query | parallelism | events | weir events/s | Flink events/s | ratio | weir events/CPU-s "
             "| Flink events/CPU-s | ratio per core | weir CPU-s | Flink CPU-s | weir peak RSS (MB) "
             "| Flink peak RSS (MB) | equal output |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for row in results["throughput"]:
        weir, flink = row["weir"], row["flink"]
        lines.append(
            f"| {row['query']} | {row['parallelism']} | {events} | {human(weir['events_per_second'])} "
            f"| {human(flink['events_per_second'])} | {weir['events_per_second'] / flink['events_per_second']:.1f}x "
            f"| {human(weir['events_per_cpu_second'])} | {human(flink['events_per_cpu_second'])} "
            f"| {weir['events_per_cpu_second'] / flink['events_per_cpu_second']:.1f}x "
            f"| {weir['cpu_seconds']:.2f} | {flink['cpu_seconds']:.2f} | {megabytes(weir['peak_rss_bytes'])} "
            f"| {megabytes(flink['peak_rss_bytes'])} | {row['equal']} |")
    return "\n".join(lines)


def chart(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parallelisms = sorted({row["parallelism"] for row in results["throughput"]})
    figure, axes = plt.subplots(1, len(parallelisms), figsize=(6 * len(parallelisms), 4.5), squeeze=False)
    for axis, parallelism in zip(axes[0], parallelisms):
        rows = [row for row in results["throughput"] if row["parallelism"] == parallelism]
        names = [row["query"] for row in rows]
        positions = range(len(rows))
        weir = [row["weir"]["events_per_cpu_second"] / 1e6 for row in rows]
        flink = [row["flink"]["events_per_cpu_second"] / 1e6 for row in rows]
        axis.bar([p - 0.2 for p in positions], weir, 0.4, label="weir", color="#1f77b4")
        axis.bar([p + 0.2 for p in positions], flink, 0.4, label="Flink 2.3", color="#ff7f0e")
        for p, w, f in zip(positions, weir, flink):
            axis.annotate(f"{w / f:.1f}x", (p - 0.2, w), ha="center", va="bottom", fontsize=8)
        axis.set_xticks(list(positions), names)
        axis.set_ylabel("million events per CPU-second")
        axis.set_title(f"Nexmark on one JSON file, parallelism {parallelism}")
        axis.legend()
    figure.suptitle(f"weir vs Apache Flink, {results['events']:,} bids, median of {results['runs']}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    log(f"chart: {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5_000_000, help="bids in the input file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--parallelism", default="1,2", help="comma-separated")
    parser.add_argument("--queries", default=",".join(WEIR_QUERIES), help="weir query names, comma-separated")
    parser.add_argument("--work", default=str(ROOT / "bench" / ".work"), help="input, outputs and results")
    parser.add_argument("--chart", default=str(HERE / "nexmark-vs-flink.png"))
    parser.add_argument("--check-events", type=int, default=500_000, help="bids in the equal-output check")
    parser.add_argument("--skip-check", action="store_true", help="no equal-output check")
    parser.add_argument("--weir", default=str(ROOT / "target" / "release" / "weir"))
    args = parser.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    queries = args.queries.split(",")
    python = sys.executable
    bids = generate_input(args.weir, args.events, work)
    warmup = head(bids, WARMUP_EVENTS, work / "warmup.jsonl")
    results = {"events": args.events, "runs": args.runs, "machine": machine(), "throughput": []}
    if args.skip_check:
        results["equal"] = {}
    else:
        check_input = head(bids, args.check_events, work / "check.jsonl")
        results["equal"] = check_outputs(args.weir, python, check_input, warmup, queries, work)
        results["check_events"] = min(args.check_events, args.events)

    for parallelism in map(int, args.parallelism.split(",")):
        flink_cache = {}
        for query in queries:
            log(f"p={parallelism} {query}: weir ...")
            weir = run_weir(args.weir, [query], bids, args.runs, parallelism)[query]
            twin = flink_query(query)
            if twin not in flink_cache:
                log(f"p={parallelism} {query}: Flink {twin} ...")
                flink_cache[twin] = flink_summary(run_flink(python, twin, bids, warmup, args.runs, parallelism), args.events)
            equal = results["equal"].get(query, {}).get("equal")
            results["throughput"].append({"query": query, "parallelism": parallelism, "weir": weir,
                                          "flink": flink_cache[twin], "equal": {True: "yes", False: "NO"}.get(equal, "not checked")})
            row = results["throughput"][-1]
            log(f"  weir {human(weir['events_per_cpu_second'])}/CPU-s, Flink {human(row['flink']['events_per_cpu_second'])}/CPU-s")

    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\n{args.events} bids ({os.path.getsize(bids) / 1e6:.0f} MB of JSON lines), median of {args.runs} runs, "
          f"{results['machine']}\n")
    print(table(results, args.events))
    chart(results, args.chart)
    if any(not check["equal"] for check in results["equal"].values()):
        raise SystemExit("outputs differ (see above)")


def machine():
    cores = os.cpu_count()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cores} cores, {memory:.0f} GiB"


if __name__ == "__main__":
    main()
