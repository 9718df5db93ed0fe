"""Identifier generation.

Ids are UUIDv7 (RFC 9562): random enough to be unguessable, and ordered by creation time, so
keyset pagination over `id` walks rows in creation order and indexes stay append-mostly.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id(now_ms: int | None = None) -> uuid.UUID:
    """Return a fresh UUIDv7; `now_ms` pins the timestamp part (tests, replay)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a
    value |= 0b10 << 62  # variant
    value |= rand & 0x3FFF_FFFF_FFFF_FFFF  # rand_b
    return uuid.UUID(int=value)
