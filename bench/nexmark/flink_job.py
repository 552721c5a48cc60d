"""Runs one Nexmark query in Apache Flink (PyFlink's local mini-cluster) and prints its cost as JSON.

Usage: flink_job.py --query bench/nexmark/flink/q1.sql --input bids.jsonl --warmup small.jsonl
                    --parallelism 2 [--runs 3] [--output DIR]

One process, one JVM, one query. Flink's start-up is kept out of the measurement as far as it can
be: the JVM starts and the query runs twice on the small warm-up file (the first run loads classes
and warms the JIT; the second measures what every further job still pays: planning, code
generation, deployment). Then the query runs `--runs` times on the whole input in the same JVM.
Reported per run: the job's wall and CPU time (user + sys of the JVM, all threads, from /proc);
the same for the second warm-up job; the JVM's peak RSS (VmHWM). compare.py subtracts the fixed
per-job cost. Reusing the warm JVM for the measured runs favours Flink, as a long-running cluster
would.

Streaming mode, as Nexmark runs Flink; object reuse on, as in Nexmark's Flink configuration; the
sink is `blackhole`, or with --output a JSON filesystem sink (for the equal-output check).
"""

import argparse
import re
import json
import os
import sys
import time

from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, TableEnvironment

BID_COLUMNS = """
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel STRING,
    url STRING,
    `dateTime` TIMESTAMP(3),
    extra STRING
"""


def jvm_cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jvm_peak_rss_bytes(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--query", required=True, help="a .sql file with one SELECT over `bid`")
    parser.add_argument("--input", required=True, help="JSON-lines bids")
    parser.add_argument("--warmup", required=True, help="a small JSON-lines file of bids")
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--output", help="write the result as JSON lines under this folder (one run)")
    args = parser.parse_args()

    select = "\n".join(
        line for line in open(args.query).read().splitlines() if not line.lstrip().startswith("--")
    ).strip().rstrip(";")

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", str(args.parallelism))
    config.set("pipeline.object-reuse", "true")
    pid = get_gateway().jvm.java.lang.ProcessHandle.current().pid()

    # Windowed queries need event time: the Nexmark setting, 4 s of out-of-orderness. Stateless
    # queries go without, as they did before windows existed.
    watermark = ""
    if re.search(r"\b(TUMBLE|HOP|SESSION|CUMULATE)\s*\(", select, re.IGNORECASE):
        watermark = ", WATERMARK FOR `dateTime` AS `dateTime` - INTERVAL '4' SECOND"

    def run(path, output=None):
        env.execute_sql("DROP TEMPORARY TABLE IF EXISTS bid")
        env.execute_sql(
            f"""CREATE TEMPORARY TABLE bid ({BID_COLUMNS}{watermark}) WITH (
                'connector' = 'filesystem', 'path' = '{path}', 'format' = 'json',
                'json.timestamp-format.standard' = 'ISO-8601', 'json.fail-on-missing-field' = 'true')"""
        )
        table = env.sql_query(select)
        # The sink takes the query's own column types (the planner's, e.g. DECIMAL(24, 3) for q1).
        # A time attribute (`TIMESTAMP(3) *ROWTIME*`) is a plain TIMESTAMP(3) in a sink.
        columns = ", ".join(
            f"`{column.getName()}` "
            + column.getDataType().toString().replace(" *ROWTIME*", "").replace(" *PROCTIME*", "")
            for column in table._j_table.getResolvedSchema().getColumns()
        )
        env.execute_sql("DROP TEMPORARY TABLE IF EXISTS sink")
        if output:
            sink = (f"'connector' = 'filesystem', 'path' = '{output}', 'format' = 'json', "
                    "'json.timestamp-format.standard' = 'ISO-8601'")
        else:
            sink = "'connector' = 'blackhole'"
        env.execute_sql(f"CREATE TEMPORARY TABLE sink ({columns}) WITH ({sink})")
        cpu, wall = jvm_cpu_seconds(pid), time.monotonic()
        table.execute_insert("sink").wait()
        return time.monotonic() - wall, jvm_cpu_seconds(pid) - cpu

    run(args.warmup)
    fixed_wall, fixed_cpu = run(args.warmup)
    runs = [run(args.input, args.output) for _ in range(1 if args.output else args.runs)]
    json.dump(
        {
            "runs": [{"wall_seconds": wall, "cpu_seconds": cpu} for wall, cpu in runs],
            "fixed_wall_seconds": fixed_wall,
            "fixed_cpu_seconds": fixed_cpu,
            "peak_rss_bytes": jvm_peak_rss_bytes(pid),
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
