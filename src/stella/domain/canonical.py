"""Canonical JSON (RFC 8785, JCS) for the values decision records hold.

Keys are sorted by their UTF-16 code units, no insignificant white space, strings as
JSON with only the mandatory escapes, integers as digits; floats follow ECMAScript's shortest
round-trip form. Identical data therefore always serialises to identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def _number(value: float) -> str:
    if not math.isfinite(value):
        msg = "NaN and infinities have no canonical JSON form"
        raise ValueError(msg)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, exponent = text.split("e")
        exp = int(exponent)
        return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"
    return text


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 serialisation of `value` (dicts, lists, str, int, float, bool, None)."""
    return _encode(value).encode("utf-8")


def _encode(value: Any) -> str:
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: str(k).encode("utf-16-be"))
        return (
            "{"
            + ",".join(
                f"{json.dumps(str(k), ensure_ascii=False)}:{_encode(value[k])}" for k in keys
            )
            + "}"
        )
    msg = f"{type(value).__name__} has no canonical JSON form"
    raise TypeError(msg)


def digest(value: Any) -> str:
    """`sha256:<hex>` of the canonical JSON of `value`."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
