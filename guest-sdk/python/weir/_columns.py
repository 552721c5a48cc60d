"""Columnar batches to Python values and back, and the per-batch loops.

A column arrives in Arrow's layout (see wit/plugin.wit): numbers packed, strings as offsets
plus one bytes buffer, NULLs as a validity bitmap. Scalar functions use the `scalar-buffers`
export, where every buffer is one `bytes` object: componentize-py copies those in one go, while a
typed `list<s64>` would cost it about 0.3 us per element each way; `memoryview.cast` and `array`
turn the bytes into Python values and back at C speed. Table functions use the typed `table`
export. The loops take a fast path when they can (`map` over whole columns, one `join` for all
output strings, one `array` conversion that also checks output types) and fall back to
row-by-row only for the rows that need it (NULLs for strict functions, exceptions, values of the
wrong type).
"""

from __future__ import annotations

import traceback
from array import array
from itertools import accumulate, islice

from componentize_py_types import Err
from wit_world.imports import types as t

# Only the world being built has bindings: the scalar-udf world has no `table` export, and so on.
try:
    from wit_world.exports.scalar_buffers import BufferColumn, BufferOutput
except ImportError:
    BufferColumn = BufferOutput = None
try:
    from wit_world.exports.table import TableOutput
except ImportError:
    TableOutput = None

_TIME_UNITS = {
    "timestamp_s": t.TimeUnit.SECOND,
    "timestamp_ms": t.TimeUnit.MILLISECOND,
    "timestamp_us": t.TimeUnit.MICROSECOND,
    "timestamp_ns": t.TimeUnit.NANOSECOND,
}

_DATA_TYPES = {
    "boolean": t.DataType_Boolean,
    "int32": t.DataType_Int32,
    "int64": t.DataType_Int64,
    "uint64": t.DataType_Uint64,
    "float32": t.DataType_Float32,
    "float64": t.DataType_Float64,
    "utf8": t.DataType_Utf8,
    "binary": t.DataType_Binary,
    "date32": t.DataType_Date32,
}

# Output checks: an `array` of this code accepts exactly the values the column can hold.
_ARRAY_CODES = {"int32": "i", "int64": "q", "uint64": "Q", "date32": "i", "float32": "f", "float64": "d"}
_ARRAY_CODES.update({unit: "q" for unit in _TIME_UNITS})
_FLOATS = ("float32", "float64")

_VALUE_CLASSES = {
    "int32": t.ColumnValues_Int32,
    "int64": t.ColumnValues_Int64,
    "uint64": t.ColumnValues_Uint64,
    "float32": t.ColumnValues_Float32,
    "float64": t.ColumnValues_Float64,
    "date32": t.ColumnValues_Date32,
}
_VALUE_CLASSES.update({unit: t.ColumnValues_Timestamp for unit in _TIME_UNITS})

_ZERO = {"boolean": False, "utf8": "", "binary": b"", "float32": 0.0, "float64": 0.0}


def data_type(name):
    if name in _TIME_UNITS:
        return t.DataType_Timestamp(_TIME_UNITS[name])
    return _DATA_TYPES[name]()


def describe_scalar(info, functions):
    signatures = [
        t.ScalarSignature(f.name, [data_type(a) for a in f.args], data_type(f.returns), f.description)
        for f in functions
    ]
    return t.PluginInfo(*info), signatures


def describe_table(info, functions):
    signatures = [
        t.TableSignature(
            f.name,
            [data_type(a) for a in f.args],
            [t.Field(name, data_type(kind), True) for name, kind in f.output],
            f.description,
        )
        for f in functions
    ]
    return t.PluginInfo(*info), signatures


def _invalid(message):
    return Err(t.CallError_InvalidInput(message))


def _location(error):
    """Where an exception was raised in the plugin's own code: up to three frames, innermost
    first, as `file.py:line in function` (the SDK's frames left out)."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if not frame.filename.replace("\\", "/").endswith(("weir/_columns.py", "weir/__init__.py"))
    ]
    shown = [f"{frame.filename.replace(chr(92), '/').rsplit('/', 1)[-1]}:{frame.lineno} in {frame.name}" for frame in frames[-3:]]
    return " (at " + " <- ".join(reversed(shown)) + ")" if shown else ""


def _message(error):
    """A row error's reason: the message of a ValueError (how a UDF rejects a row on purpose),
    "Type: message (at file.py:line in function ...)" for any other exception: a bug, whose type
    and place say what broke."""
    text = str(error)
    if type(error) is ValueError and text:
        return text
    described = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return described + _location(error)


# ---- reading columns -------------------------------------------------------------------------


def _valid_rows(validity, rows):
    return [bool(validity[i >> 3] >> (i & 7) & 1) for i in range(rows)]


def _type_name(data_type):
    """The SDK's name of a WIT data type."""
    if isinstance(data_type, t.DataType_Timestamp):
        return next(name for name, unit in _TIME_UNITS.items() if unit == data_type.value)
    for name, cls in _DATA_TYPES.items():
        if isinstance(data_type, cls):
            return name
    return type(data_type).__name__


def _strings(offsets, data):
    text = data.decode("utf-8")
    if len(text) == len(data):
        # ASCII: byte offsets are character offsets, slice the decoded text.
        return [text[a:b] for a, b in zip(offsets, islice(offsets, 1, None))]
    return [data[a:b].decode("utf-8") for a, b in zip(offsets, islice(offsets, 1, None))]


def _binaries(offsets, data):
    return [data[a:b] for a, b in zip(offsets, islice(offsets, 1, None))]


def _bits(packed, rows):
    return [bool(packed[i >> 3] >> (i & 7) & 1) for i in range(rows)]


_READERS = {
    t.ColumnValues_Utf8: ("utf8", lambda var, rows: _strings(var.offsets, var.data)),
    t.ColumnValues_Binary: ("binary", lambda var, rows: _binaries(var.offsets, var.data)),
    t.ColumnValues_Boolean: ("boolean", _bits),
}


def _read_typed(column, rows, expected, position):
    values = column.values
    kind = type(values)
    reader = _READERS.get(kind)
    if reader is not None:
        actual, read = reader
        if expected != actual:
            raise ValueError(f"argument {position} is {actual}, the function takes {expected}")
        return read(values.value, rows)
    wanted = _VALUE_CLASSES.get(expected)
    if wanted is not kind:
        raise ValueError(f"argument {position} is {kind.__name__}, the function takes {expected}")
    out = values.value
    return out if type(out) is list else list(out)


def _read_buffer(column, rows, expected, position):
    actual = _type_name(column.data_type)
    if actual != expected:
        raise ValueError(f"argument {position} is {actual}, the function takes {expected}")
    if expected == "utf8" or expected == "binary":
        offsets = memoryview(column.offsets).cast("i")
        if len(offsets) != rows + 1:
            raise ValueError(f"argument {position} has {len(offsets)} offsets for {rows} rows")
        read = _strings if expected == "utf8" else _binaries
        return read(offsets.tolist(), column.values)
    if expected == "boolean":
        return _bits(column.values, rows)
    return memoryview(column.values).cast(_ARRAY_CODES[expected]).tolist()


def read_column(column, rows, expected, position):
    """The column's values as a Python list (None for NULL) and whether it has NULLs."""
    if BufferColumn is not None and isinstance(column, BufferColumn):
        out = _read_buffer(column, rows, expected, position)
    else:
        out = _read_typed(column, rows, expected, position)
    if len(out) != rows:
        raise ValueError(f"argument {position} has {len(out)} values for {rows} rows")
    validity = column.validity
    if validity is None:
        return out, False
    valid = _valid_rows(validity, rows)
    if all(valid):
        return out, False
    return [v if ok else None for v, ok in zip(out, valid)], True


def _read_args(function, rows, args):
    if len(args) != len(function.args):
        raise ValueError(f"{function.name} takes {len(function.args)} arguments, got {len(args)}")
    columns, strict_nulls = [], False
    for position, (column, expected, nullable) in enumerate(zip(args, function.args, function.nullable)):
        values, has_nulls = read_column(column, rows, expected, position)
        columns.append(values)
        strict_nulls = strict_nulls or (has_nulls and not nullable)
    return columns, strict_nulls


def _skips_row(row, nullable):
    for value, passes_null in zip(row, nullable):
        if value is None and not passes_null:
            return True
    return False


# ---- writing columns -------------------------------------------------------------------------


def _bitmap(flags, rows):
    packed = bytearray((rows + 7) >> 3)
    for i, flag in enumerate(flags):
        if flag:
            packed[i >> 3] |= 1 << (i & 7)
    return bytes(packed)


def _bad_value(kind, value):
    """Why `value` cannot go into a column of `kind` (None when it can)."""
    if value is None:
        return None
    if kind == "utf8":
        return None if isinstance(value, str) else "a str"
    if kind == "binary":
        return None if isinstance(value, (bytes, bytearray, memoryview)) else "bytes"
    if kind == "boolean":
        return None if isinstance(value, bool) else "a bool"
    code = _ARRAY_CODES[kind]
    if kind not in _FLOATS and not isinstance(value, int):
        return "an int"
    try:
        array(code, [value])
    except (TypeError, OverflowError):
        return "a float" if kind in _FLOATS else "an int in range"
    return None


def _fits(kind, values):
    """Whether every non-NULL value fits the column type (checked at C speed)."""
    try:
        if kind == "utf8":
            return all(type(v) is str for v in values)
        if kind == "binary" or kind == "boolean":
            return all(_bad_value(kind, v) is None for v in values)
        code = _ARRAY_CODES[kind]
        array(code, values)
        return kind in _FLOATS or not any(type(v) is float for v in values)
    except (TypeError, OverflowError):
        return False


def _check_values(kind, values, errors, function):
    """Nulls out values of the wrong type, adding row errors for them."""
    for row, value in enumerate(values):
        wanted = _bad_value(kind, value)
        if wanted is not None:
            errors.append(
                t.RowError(row, f"{function} returned {value!r} ({type(value).__name__}), expected {wanted} for {kind}")
            )
            values[row] = None


def write_column(kind, values):
    """A Python list (None for NULL) as a column of `kind`."""
    rows = len(values)
    validity = None
    if None in values:
        validity = _bitmap([v is not None for v in values], rows)
        zero = _ZERO.get(kind, 0)
        values = [zero if v is None else v for v in values]
    if kind == "utf8":
        joined = "".join(values)
        if joined.isascii():
            offsets = list(accumulate(map(len, values), initial=0))
            data = joined.encode("ascii")
        else:
            encoded = [v.encode("utf-8") for v in values]
            offsets = list(accumulate(map(len, encoded), initial=0))
            data = b"".join(encoded)
        column_values = t.ColumnValues_Utf8(t.VarData(offsets, data))
    elif kind == "binary":
        offsets = list(accumulate(map(len, values), initial=0))
        column_values = t.ColumnValues_Binary(t.VarData(offsets, b"".join(values)))
    elif kind == "boolean":
        column_values = t.ColumnValues_Boolean(_bitmap(values, rows))
    else:
        if kind in _FLOATS and not all(type(v) is float for v in values):
            values = [float(v) for v in values]
        column_values = _VALUE_CLASSES[kind](values)
    return t.Column(rows, validity, column_values)


def _utf8_buffers(values):
    joined = "".join(values)
    if joined.isascii():
        return array("i", accumulate(map(len, values), initial=0)).tobytes(), joined.encode("ascii")
    encoded = [v.encode("utf-8") for v in values]
    return array("i", accumulate(map(len, encoded), initial=0)).tobytes(), b"".join(encoded)


def _buffers(kind, values):
    """(offsets, values) bytes of non-NULL values; TypeError or OverflowError when one does not fit."""
    if kind == "utf8":
        return _utf8_buffers(values)
    if kind == "binary":
        return array("i", accumulate(map(len, values), initial=0)).tobytes(), b"".join(values)
    if kind == "boolean":
        if not all(type(v) is bool for v in values):
            raise TypeError("a boolean function returned a value that is not a bool")
        return b"", _bitmap(values, len(values))
    return b"", array(_ARRAY_CODES[kind], values).tobytes()


def write_buffer(kind, values):
    """A Python list (None for NULL) as a `buffer-column`; TypeError or OverflowError when a
    value does not fit `kind` (the caller nulls such values and tries again)."""
    rows = len(values)
    try:
        # Fast path: no NULLs (None does not convert, so this also detects them).
        offsets, data = _buffers(kind, values)
        return BufferColumn(rows, data_type(kind), None, offsets, data)
    except (TypeError, OverflowError, AttributeError):
        if None not in values:
            raise
    validity = _bitmap([v is not None for v in values], rows)
    zero = _ZERO.get(kind, 0)
    offsets, data = _buffers(kind, [zero if v is None else v for v in values])
    return BufferColumn(rows, data_type(kind), validity, offsets, data)


# ---- calls -------------------------------------------------------------------------------


def _call_rows(function, columns, rows, errors):
    """Row by row: strict NULL handling and one error per failing row."""
    fn, nullable = function.fn, function.nullable
    out = [None] * rows
    for row, values in enumerate(zip(*columns)) if columns else enumerate([()] * rows):
        if _skips_row(values, nullable):
            continue
        try:
            out[row] = fn(*values)
        except Exception as error:  # noqa: BLE001 - any exception rejects the row
            errors.append(t.RowError(row, _message(error)))
    return out


def _prepare(functions, index, rows, args):
    """Function number `index`, its argument columns as lists, and whether a strict argument has
    NULLs; an `invalid-input` error when the call does not fit."""
    if index >= len(functions):
        raise _invalid(f"no function number {index}")
    function = functions[index]
    try:
        return (function, *_read_args(function, rows, args))
    except ValueError as error:
        raise _invalid(f"{function.name}: {error}") from None


def call_scalar(functions, index, rows, args):
    function, columns, strict_nulls = _prepare(functions, index, rows, args)
    errors = []
    out = None
    if not strict_nulls and columns:
        try:
            out = list(map(function.fn, *columns))
        except Exception:  # noqa: BLE001 - redo row by row to find the failing rows
            out = None
    if out is None:
        out = _call_rows(function, columns, rows, errors)
    try:
        # The conversion to bytes also checks the values (TypeError, OverflowError).
        column = write_buffer(function.returns, out)
    except (TypeError, OverflowError, AttributeError):
        _check_values(function.returns, out, errors, function.name)
        column = write_buffer(function.returns, out)
    return BufferOutput(column, errors)


def call_table(functions, index, rows, args):
    function, columns, _ = _prepare(functions, index, rows, args)
    fn, nullable, width = function.fn, function.nullable, len(function.output)
    parents, errors = [], []
    outputs = [[] for _ in range(width)]
    for row, values in enumerate(zip(*columns)) if columns else enumerate([()] * rows):
        if _skips_row(values, nullable):
            continue
        try:
            produced = list(fn(*values))
            if width == 1:
                produced = [p if isinstance(p, tuple) else (p,) for p in produced]
            for item in produced:
                if not isinstance(item, tuple) or len(item) != width:
                    raise TypeError(f"yielded {item!r}; expected a tuple of {width} values")
        except Exception as error:  # noqa: BLE001 - any exception rejects the row
            errors.append(t.RowError(row, _message(error)))
            continue
        for item in produced:
            parents.append(row)
            for column, value in zip(outputs, item):
                column.append(value)
    out_columns = []
    for (name, kind), values in zip(function.output, outputs):
        if not _fits(kind, values):
            bad = []
            _check_values(kind, values, bad, f"{function.name} column {name}")
            # A bad value rejects its input row; the output row keeps a NULL.
            errors.extend(t.RowError(parents[e.row], e.message) for e in bad)
        out_columns.append(write_column(kind, values))
    return TableOutput(parents, out_columns, errors)
