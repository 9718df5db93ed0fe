"""Durations as users write them: `250ms`, `30s`, `5m`, `1h`, `2d`, and ISO 8601 (`PT48H`)."""

from __future__ import annotations

import re
from datetime import timedelta

_SHORT_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_ISO_RE = re.compile(
    r"^P(?:(?P<w>\d+)W)?(?:(?P<d>\d+)D)?"
    r"(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse a duration or raise ValueError naming the accepted forms."""
    short = _SHORT_RE.match(text.strip())
    if short:
        return timedelta(seconds=float(short.group(1)) * _UNIT_SECONDS[short.group(2)])
    iso = _ISO_RE.match(text.strip())
    if iso and text.strip() not in {"P", "PT"} and not text.strip().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return timedelta(
            weeks=parts.get("w", 0),
            days=parts.get("d", 0),
            hours=parts.get("h", 0),
            minutes=parts.get("m", 0),
            seconds=parts.get("s", 0),
        )
    msg = f"'{text}' is not a duration (use 250ms, 30s, 5m, 1h, 2d or ISO 8601 such as PT48H)"
    raise ValueError(msg)
