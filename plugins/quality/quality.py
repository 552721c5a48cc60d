"""Data-quality checks for incoming records: validate, normalise and mask fields.

Typical use: a `filter` that keeps rows passing `is_email(email)`, a `select` that masks
personal data before it leaves the pipeline, and `on_error: dead-letter` on a `udf` step so the
rows `require_range` rejects land in a dead-letter file with the reason.
"""

import re
from typing import Optional

import weir

_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
_PHONE_DIGITS = re.compile(r"\d")


@weir.scalar
def is_email(text: str) -> bool:
    """Whether `text` looks like an e-mail address (local@domain.tld)."""
    return _EMAIL.match(text) is not None


@weir.scalar
def mask_email(text: str) -> str:
    """`jane.doe@example.com` -> `j*******@example.com`; rejects a value that is not an e-mail."""
    if _EMAIL.match(text) is None:
        raise ValueError(f"not an e-mail address: {text!r}")
    local, domain = text.split("@", 1)
    return local[0] + "*" * (len(local) - 1) + "@" + domain.lower()


@weir.scalar
def normalize_phone(text: str) -> Optional[str]:
    """Digits only, with a leading `+` kept; NULL when fewer than 7 digits remain."""
    digits = "".join(_PHONE_DIGITS.findall(text))
    if len(digits) < 7:
        return None
    return ("+" if text.strip().startswith("+") else "") + digits


@weir.scalar
def require_range(value: float, low: float, high: float) -> float:
    """`value` when `low <= value <= high`; rejects the row otherwise (for dead-lettering)."""
    if not low <= value <= high:
        raise ValueError(f"{value} is outside [{low}, {high}]")
    return value


@weir.scalar
def completeness(a: Optional[str], b: Optional[str], c: Optional[str]) -> float:
    """The share of the three fields that are present and not blank (0.0 to 1.0); NULLs count as missing."""
    present = sum(1 for v in (a, b, c) if v is not None and v.strip())
    return present / 3
