"""The Python SDK for weir plugins: UDFs are decorated plain functions.

    import weir

    @weir.scalar
    def to_eur(price: int) -> float:
        "Dollars to euros at Nexmark's rate."
        return price * 0.908

    @weir.table(word=str, position=int)
    def split_words(text: str):
        for position, word in enumerate(text.split()):
            yield word, position

Types come from the annotations: ``int`` is int64, ``float`` float64, ``str`` utf8, ``bytes``
binary, ``bool`` boolean; ``weir.int32``, ``weir.uint64``, ``weir.float32``, ``weir.date32`` and
``weir.timestamp_ms`` / ``timestamp_us`` / ``timestamp_ns`` / ``timestamp_s`` name the others
(their values are plain ints and floats). NULL is ``None``. A function is called for a row only
when none of its arguments is NULL, unless the argument is annotated ``Optional[...]`` (or
``... | None``); returning ``None`` gives NULL. An exception rejects that row: the host applies the
step's error policy (fail, skip, dead-letter) with the exception as the reason.

The host calls the plugin once per batch; the SDK turns the columnar batch into Python values
and back (see ``_columns``). `weir plugin build` compiles the module with componentize-py.
"""

from __future__ import annotations

import typing

from . import _columns

__all__ = [
    "scalar",
    "table",
    "log",
    "counter_add",
    "gauge_set",
    "int32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "date32",
    "timestamp_s",
    "timestamp_ms",
    "timestamp_us",
    "timestamp_ns",
]


class int32(int):
    """Annotation: a 32-bit signed integer column (values are ints)."""


class int64(int):
    """Annotation: a 64-bit signed integer column (same as ``int``)."""


class uint64(int):
    """Annotation: a 64-bit unsigned integer column."""


class float32(float):
    """Annotation: a 32-bit float column (values are floats)."""


class float64(float):
    """Annotation: a 64-bit float column (same as ``float``)."""


class date32(int):
    """Annotation: days since 1970-01-01 (values are ints)."""


class timestamp_s(int):
    """Annotation: seconds since the Unix epoch (values are ints)."""


class timestamp_ms(int):
    """Annotation: milliseconds since the Unix epoch (values are ints)."""


class timestamp_us(int):
    """Annotation: microseconds since the Unix epoch (values are ints)."""


class timestamp_ns(int):
    """Annotation: nanoseconds since the Unix epoch (values are ints)."""


_TYPE_NAMES = {
    bool: "boolean",
    int: "int64",
    int64: "int64",
    int32: "int32",
    uint64: "uint64",
    float: "float64",
    float64: "float64",
    float32: "float32",
    str: "utf8",
    bytes: "binary",
    date32: "date32",
    timestamp_s: "timestamp_s",
    timestamp_ms: "timestamp_ms",
    timestamp_us: "timestamp_us",
    timestamp_ns: "timestamp_ns",
}


class _Function:
    """One declared UDF: the callable, its argument and result types, which args see NULLs."""

    def __init__(self, fn, name, args, nullable, returns, output, description):
        self.fn = fn
        self.name = name
        self.args = args
        self.nullable = nullable
        self.returns = returns
        self.output = output
        self.description = description


_SCALARS: list[_Function] = []
_TABLES: list[_Function] = []
_INFO = ["", "", ""]


def _type_of(annotation, where):
    """The weir type name and whether NULL is passed through, for one annotation."""
    nullable = False
    origin = typing.get_origin(annotation)
    if origin is typing.Union or type(annotation).__name__ == "UnionType":
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1 or len(typing.get_args(annotation)) != 2:
            raise TypeError(f"{where}: only Optional[T] unions are supported, not {annotation!r}")
        annotation = members[0]
        nullable = True
    name = _TYPE_NAMES.get(annotation)
    if name is None:
        known = ", ".join(sorted({t.__name__ for t in _TYPE_NAMES}))
        raise TypeError(f"{where}: unsupported type {annotation!r} (use one of {known})")
    return name, nullable


def _signature(fn, need_return):
    hints = typing.get_type_hints(fn)
    code = fn.__code__
    params = code.co_varnames[: code.co_argcount]
    args, nullable = [], []
    for param in params:
        if param not in hints:
            raise TypeError(f"{fn.__name__}: argument `{param}` needs a type annotation")
        type_name, passes_null = _type_of(hints[param], f"{fn.__name__}({param})")
        args.append(type_name)
        nullable.append(passes_null)
    returns = None
    if need_return:
        if "return" not in hints:
            raise TypeError(f"{fn.__name__}: the return type needs an annotation")
        returns, _ = _type_of(hints["return"], f"{fn.__name__} -> ")
    return args, nullable, returns


def _description(fn):
    return (fn.__doc__ or "").strip()


def scalar(fn=None, *, name=None):
    """Declares a scalar UDF: one value per row. ``@weir.scalar`` or ``@weir.scalar(name="x")``."""

    def declare(fn):
        args, nullable, returns = _signature(fn, need_return=True)
        _SCALARS.append(_Function(fn, name or fn.__name__, args, nullable, returns, None, _description(fn)))
        return fn

    return declare(fn) if fn is not None else declare


def table(name=None, **output):
    """Declares a table UDF: a generator (or any iterable) of output rows per input row.

    The keyword arguments name the output columns and their types, in order:
    ``@weir.table(word=str, position=int)``; each yielded row is a tuple in that order (a single
    column may yield bare values).
    """
    if callable(name):
        raise TypeError("@weir.table needs its output columns: @weir.table(word=str, position=int)")
    if not output:
        raise TypeError("@weir.table needs at least one output column: @weir.table(word=str)")

    def declare(fn):
        args, nullable, _ = _signature(fn, need_return=False)
        columns = [(column, _type_of(kind, f"{fn.__name__} output `{column}`")[0]) for column, kind in output.items()]
        _TABLES.append(_Function(fn, name or fn.__name__, args, nullable, None, columns, _description(fn)))
        return fn

    return declare


def log(message: str, level: str = "info", **fields) -> None:
    """A structured event in the host's log, attributed to this plugin."""
    from wit_world.imports import host

    host.log(host.Level[level.upper()], str(message), [(k, str(v)) for k, v in fields.items()])


def counter_add(name: str, value: int = 1) -> None:
    """Adds to a counter in the host's metrics (call it per batch: it is a host call)."""
    from wit_world.imports import host

    host.counter_add(name, value)


def gauge_set(name: str, value: float) -> None:
    """Sets a gauge in the host's metrics."""
    from wit_world.imports import host

    host.gauge_set(name, float(value))


def _declare_plugin(name: str, version: str, description: str) -> None:
    """Called by the entry module `weir plugin build` generates, before the user's module."""
    _INFO[:] = [name, version, description]


class _ScalarExport:
    """The `weir:plugin/scalar-buffers` export (scalar functions, column buffers as bytes)."""

    def describe(self):
        return _columns.describe_scalar(_INFO, _SCALARS)

    def call(self, function, rows, args):
        return _columns.call_scalar(_SCALARS, function, rows, args)


class _TableExport:
    """The `weir:plugin/table` export."""

    def describe(self):
        return _columns.describe_table(_INFO, _TABLES)

    def call(self, function, rows, args):
        return _columns.call_table(_TABLES, function, rows, args)
