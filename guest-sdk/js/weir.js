// The JavaScript SDK for weir plugins: UDFs are plain exported functions.
//
// The plugin's module exports plain functions; weir-plugin.yaml gives each one's signature, and
// `weir plugin build` generates the entry module that hands both to `scalarPlugin` /
// `tablePlugin` below, then compiles everything with ComponentizeJS (StarlingMonkey).
//
// Values: int64, uint64 and timestamps are BigInt (exact; a returned whole Number is accepted
// too), int32, date32 and floats are Number, utf8 is a string, binary a Uint8Array, boolean a
// boolean, NULL is null. A function is not called for a row with a NULL argument (its result is
// NULL) unless the signature says `nulls: true`. Throwing rejects the row: the host applies the
// step's error policy with the message. A function declared `columnar: true` is called once per
// batch with whole columns (typed arrays; arrays for strings, binary and booleans; NULL slots hold
// zero values) and returns a whole column; rows with a NULL argument come out NULL.

const decoder = new TextDecoder("utf-8", { fatal: true });
const encoder = new TextEncoder();

const TYPED = {
  int32: Int32Array,
  date32: Int32Array,
  int64: BigInt64Array,
  uint64: BigUint64Array,
  timestamp: BigInt64Array,
  float32: Float32Array,
  float64: Float64Array,
};

const BIG = { int64: true, uint64: true, timestamp: true };

/** The WIT `data-type` of a type name (`int64`, `utf8`, `timestamp_ms`, ...). */
function dataType(name) {
  const unit = name.startsWith("timestamp") ? name.split("_")[1] || "us" : null;
  if (unit) {
    const units = { s: "second", ms: "millisecond", us: "microsecond", ns: "nanosecond" };
    if (!units[unit]) throw new Error(`unknown timestamp unit in ${name}`);
    return { tag: "timestamp", val: units[unit] };
  }
  if (!["boolean", "int32", "int64", "uint64", "float32", "float64", "utf8", "binary", "date32"].includes(name)) {
    throw new Error(`unknown type ${name}`);
  }
  return { tag: name };
}

const family = (name) => (name.startsWith("timestamp") ? "timestamp" : name);

// Where an error was thrown in the plugin's own code: up to three stack frames, innermost first,
// as `function@file.js:line:column` (the SDK's and the entry module's frames left out).
function location(error) {
  const stack = typeof error.stack === "string" ? error.stack : "";
  const frames = stack
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !/weir\.js|entry\.js/.test(line))
    .map((line) => line.replace(/@.*\//, "@"))
    .slice(0, 3);
  return frames.length ? ` (at ${frames.join(" <- ")})` : "";
}

// A row error's reason: the message of a plain Error (how a UDF rejects a row on purpose),
// "Name: message (at function@file.js:line ...)" for other errors (a bug: its name and place say
// what broke), anything else as text.
function message(error) {
  if (error instanceof Error) {
    return error.constructor === Error ? error.message : `${error.name}: ${error.message}${location(error)}`;
  }
  return String(error);
}

class InvalidInput extends Error {}

// ---- reading columns ---------------------------------------------------------------------

function isValid(validity, row) {
  return (validity[row >> 3] >> (row & 7)) & 1;
}

function readStrings(data, offsets, rows) {
  const out = new Array(rows);
  const whole = decoder.decode(data);
  if (whole.length === data.length) {
    // ASCII: byte offsets are character offsets.
    for (let i = 0; i < rows; i++) out[i] = whole.substring(offsets[i], offsets[i + 1]);
  } else {
    for (let i = 0; i < rows; i++) out[i] = decoder.decode(data.subarray(offsets[i], offsets[i + 1]));
  }
  return out;
}

/** One argument column as values: a typed array, or an array for strings, binary, booleans. */
function readColumn(column, rows, expected, position) {
  const { tag, val } = column.values;
  if (tag !== family(expected)) throw new InvalidInput(`argument ${position} is ${tag}, the function takes ${expected}`);
  let values;
  if (tag === "utf8") values = readStrings(val.data, val.offsets, rows);
  else if (tag === "binary") {
    values = new Array(rows);
    for (let i = 0; i < rows; i++) values[i] = val.data.slice(val.offsets[i], val.offsets[i + 1]);
  } else if (tag === "boolean") {
    values = new Array(rows);
    for (let i = 0; i < rows; i++) values[i] = isValid(val, i) === 1;
  } else if (tag === "decimal128") {
    throw new InvalidInput("decimal128 arguments are not supported by the JavaScript SDK");
  } else {
    // The lifted list is indexable as it is (copying it into a new typed array cost more than
    // the whole call); `columnar` functions get a typed array of the column's type.
    values = val;
  }
  if (values.length !== rows) throw new InvalidInput(`argument ${position} has ${values.length} values for ${rows} rows`);
  return values;
}

// ---- writing columns ---------------------------------------------------------------------

/** Collects one output column row by row; `set` throws a TypeError for a value of the wrong type. */
class Builder {
  constructor(type, rows) {
    this.type = type;
    this.kind = family(type);
    this.rows = rows;
    this.validity = null;
    const Typed = TYPED[this.kind];
    this.values = Typed ? new Typed(rows) : new Array(rows);
  }

  setNull(row) {
    if (!this.validity) this.validity = new Uint8Array((this.rows + 7) >> 3).fill(0xff);
    this.validity[row >> 3] &= ~(1 << (row & 7));
    if (!TYPED[this.kind]) this.values[row] = null;
  }

  set(row, value) {
    if (value === null || value === undefined) return this.setNull(row);
    const kind = this.kind;
    if (BIG[kind]) {
      if (typeof value === "number" && Number.isInteger(value)) value = BigInt(value);
      if (typeof value !== "bigint") throw new TypeError(`returned ${typeof value} ${String(value)}, expected a BigInt for ${this.type}`);
    } else if (TYPED[kind]) {
      if (typeof value !== "number") throw new TypeError(`returned ${typeof value} ${String(value)}, expected a number for ${this.type}`);
      if ((kind === "int32" || kind === "date32") && !Number.isInteger(value)) {
        throw new TypeError(`returned ${value}, expected an integer for ${this.type}`);
      }
    } else if (kind === "utf8" && typeof value !== "string") {
      throw new TypeError(`returned ${typeof value} ${String(value)}, expected a string`);
    } else if (kind === "binary" && !(value instanceof Uint8Array)) {
      throw new TypeError(`returned ${typeof value}, expected a Uint8Array`);
    } else if (kind === "boolean" && typeof value !== "boolean") {
      throw new TypeError(`returned ${typeof value} ${String(value)}, expected a boolean`);
    }
    this.values[row] = value;
  }

  finish() {
    const rows = this.rows;
    const kind = this.kind;
    let values;
    if (kind === "utf8" && !this.validity) {
      // All strings at once; when the text is ASCII, byte offsets are character offsets.
      const joined = this.values.join("");
      const data = encoder.encode(joined);
      if (data.length === joined.length) {
        const offsets = new Int32Array(rows + 1);
        let total = 0;
        for (let i = 0; i < rows; i++) {
          total += this.values[i].length;
          offsets[i + 1] = total;
        }
        return { len: rows, validity: undefined, values: { tag: kind, val: { offsets, data } } };
      }
    }
    if (kind === "utf8" || kind === "binary") {
      const parts = new Array(rows);
      const offsets = new Int32Array(rows + 1);
      let total = 0;
      for (let i = 0; i < rows; i++) {
        const v = this.values[i];
        const bytes = v == null ? new Uint8Array(0) : kind === "utf8" ? encoder.encode(v) : v;
        parts[i] = bytes;
        total += bytes.length;
        offsets[i + 1] = total;
      }
      const data = new Uint8Array(total);
      for (let i = 0; i < rows; i++) data.set(parts[i], offsets[i]);
      values = { tag: kind, val: { offsets, data } };
    } else if (kind === "boolean") {
      const bits = new Uint8Array((rows + 7) >> 3);
      for (let i = 0; i < rows; i++) if (this.values[i]) bits[i >> 3] |= 1 << (i & 7);
      values = { tag: kind, val: bits };
    } else {
      values = { tag: kind, val: this.values };
    }
    return { len: rows, validity: this.validity ?? undefined, values };
  }
}

// ---- calls -------------------------------------------------------------------------------

function readArgs(fn, rows, args) {
  if (args.length !== fn.args.length) throw new InvalidInput(`${fn.name} takes ${fn.args.length} arguments, got ${args.length}`);
  const columns = [];
  const validities = [];
  for (let i = 0; i < args.length; i++) {
    columns.push(readColumn(args[i], rows, fn.args[i], i));
    validities.push(args[i].validity ?? null);
  }
  return { columns, validities };
}

/** Whether row `row` is skipped because a strict function has a NULL argument there. */
function skips(fn, validities, row) {
  if (fn.nulls) return false;
  for (let i = 0; i < validities.length; i++) if (validities[i] && !isValid(validities[i], row)) return true;
  return false;
}

/** Argument values of one row, NULLs as null. */
function rowArgs(columns, validities, row) {
  const values = new Array(columns.length);
  for (let i = 0; i < columns.length; i++) {
    values[i] = validities[i] && !isValid(validities[i], row) ? null : columns[i][row];
  }
  return values;
}

// Result types a plain typed store accepts without further checks, by typeof.
const FAST_TYPEOF = { float32: "number", float64: "number", int64: "bigint", uint64: "bigint", timestamp: "bigint", utf8: "string", boolean: "boolean" };

function callScalar(fn, rows, args) {
  const { columns, validities } = readArgs(fn, rows, args);
  const out = new Builder(fn.returns, rows);
  const errors = [];
  const anyNull = validities.some((v) => v !== null);
  if (fn.columnar) {
    const typed = columns.map((column, i) => {
      const Typed = TYPED[family(fn.args[i])];
      return Typed && !(column instanceof Typed) ? Typed.from(column) : column;
    });
    const result = fn.fn(...typed);
    if (result == null || result.length !== rows) throw new InvalidInput(`${fn.name} returned ${result?.length} values for ${rows} rows`);
    for (let row = 0; row < rows; row++) {
      if (anyNull && validities.some((v) => v && !isValid(v, row))) out.setNull(row);
      else out.set(row, result[row]);
    }
    return { values: out.finish(), errors };
  }
  // The row loop; an exception leaves it, records the row and re-enters at the next row (a
  // try/catch per row would cost more than most functions).
  const f = fn.fn;
  const values = out.values;
  const fast = FAST_TYPEOF[out.kind];
  const single = !anyNull && columns.length === 1 ? columns[0] : null;
  let row = 0;
  while (row < rows) {
    try {
      if (single) {
        for (; row < rows; row++) {
          const result = f(single[row]);
          if (typeof result === fast) values[row] = result;
          else out.set(row, result);
        }
      } else {
        for (; row < rows; row++) {
          if (anyNull && skips(fn, validities, row)) {
            out.setNull(row);
            continue;
          }
          const result = f(...rowArgs(columns, validities, row));
          if (typeof result === fast) values[row] = result;
          else out.set(row, result);
        }
      }
    } catch (error) {
      out.setNull(row);
      errors.push({ row, message: message(error) });
      row++;
    }
  }
  return { values: out.finish(), errors };
}

function callTable(fn, rows, args) {
  const { columns, validities } = readArgs(fn, rows, args);
  const names = fn.output.map(([name]) => name);
  const produced = [];
  const parents = [];
  const errors = [];
  for (let row = 0; row < rows; row++) {
    if (skips(fn, validities, row)) continue;
    try {
      const items = [];
      for (const item of fn.fn(...rowArgs(columns, validities, row))) {
        const tuple = names.length === 1 && !Array.isArray(item) ? [item] : item;
        if (!Array.isArray(tuple) || tuple.length !== names.length) {
          throw new TypeError(`yielded ${String(item)}; expected an array of ${names.length} values`);
        }
        items.push(tuple);
      }
      for (const item of items) {
        parents.push(row);
        produced.push(item);
      }
    } catch (error) {
      errors.push({ row, message: message(error) });
    }
  }
  const outputs = fn.output.map(([, type]) => new Builder(type, produced.length));
  produced.forEach((item, index) => {
    outputs.forEach((builder, column) => {
      try {
        builder.set(index, item[column]);
      } catch (error) {
        builder.setNull(index);
        errors.push({ row: parents[index], message: `column ${names[column]}: ${message(error)}` });
      }
    });
  });
  errors.sort((a, b) => a.row - b.row);
  return { parents: new Uint32Array(parents), columns: outputs.map((b) => b.finish()), errors };
}

function guard(call) {
  try {
    return call();
  } catch (error) {
    if (error instanceof InvalidInput) throw { tag: "invalid-input", val: error.message };
    throw { tag: "failed", val: message(error) };
  }
}

function lookup(functions, index) {
  const fn = functions[index];
  if (!fn) throw new InvalidInput(`no function number ${index}`);
  return fn;
}

/** The `weir:plugin/scalar` export for `functions` ({name, fn, args, returns, description, nulls, columnar}). */
export function scalarPlugin(info, functions) {
  return {
    describe() {
      return [
        info,
        functions.map((f) => ({
          name: f.name,
          args: f.args.map(dataType),
          returns: dataType(f.returns),
          description: f.description ?? "",
        })),
      ];
    },
    call(index, rows, args) {
      return guard(() => callScalar(lookup(functions, index), rows, args));
    },
  };
}

/** The `weir:plugin/table` export for `functions` ({name, fn, args, output: [[column, type], ...], description}). */
export function tablePlugin(info, functions) {
  return {
    describe() {
      return [
        info,
        functions.map((f) => ({
          name: f.name,
          args: f.args.map(dataType),
          output: f.output.map(([name, type]) => ({ name, dataType: dataType(type), nullable: true })),
          description: f.description ?? "",
        })),
      ];
    },
    call(index, rows, args) {
      return guard(() => callTable(lookup(functions, index), rows, args));
    },
  };
}
