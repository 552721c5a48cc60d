"""The cross-language parity functions in Python (see plugins/parity-rust)."""

from typing import Optional

import weir


@weir.scalar
def dollar_to_euro(amount: int) -> float:
    """Nexmark q1: dollars to euros at 0.908."""
    return amount * 0.908


@weir.scalar
def exclaim(text: str) -> str:
    """`text` followed by `!` (the cheapest string function: measures the string path itself)."""
    return text + "!"


@weir.scalar
def or_default(text: Optional[str]) -> str:
    """The text, or `(none)` for NULL: a function that sees NULLs."""
    return "(none)" if text is None else text


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


@weir.scalar
def slug(text: str) -> str:
    """A URL slug: lowercase ASCII letters and digits joined by `-`; rejects text without any."""
    out = []
    for c in text:
        if _is_alnum(c):
            out.append(c.lower())
        elif out and out[-1] != "-":
            out.append("-")
    if out and out[-1] == "-":
        out.pop()
    if not out:
        raise ValueError("no letters or digits to make a slug of")
    return "".join(out)


@weir.scalar
def euclid_gcd(a: int, b: int) -> int:
    """The greatest common divisor by Euclid's loop (arrow-udf's benchmark function)."""
    while b:
        a, b = b, a % b
    return a


@weir.scalar
def euclid_gcd32(a: weir.int32, b: weir.int32) -> weir.int32:
    """`gcd` over int32."""
    while b:
        a, b = b, a % b
    return a
