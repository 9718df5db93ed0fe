"""Masking of secrets in log output: every value resolved in this process, and known patterns.

`register_secret` is called wherever a secret reference is resolved (`resolve_secret`, the
agent's environment resolution); `mask` replaces each registered value (also in its JSON,
Python and Go quoted forms) and every known credential pattern with `***`. The logging setup
applies `mask` to every log record of every logger, so a value resolved once cannot reach a log
line later, wherever the line comes from.

The registry is process-wide, thread-safe and bounded (least recently registered values drop
out first beyond `MAX_SECRETS`); values shorter than `MIN_SECRET_CHARS` are not registered,
since masking a two-letter value would mask every word that contains it.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping

MASK = "***"
MAX_SECRETS = 1024
MIN_SECRET_CHARS = 4

_lock = threading.Lock()
_secrets: OrderedDict[str, None] = OrderedDict()
_ordered: tuple[str, ...] = ()  # the registered forms, longest first (what `mask` replaces)

_KEYS = (
    r"password|passwd|task_token|join_token|api_token|access_token|refresh_token"
    r"|client_secret|secret_key|x-stella-task-token"
)
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private key blocks (also when their newlines are escaped, or the block is cut off)
    (
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        MASK,
    ),
    # Stella API tokens and agent join tokens (prefix + token_urlsafe(32))
    (re.compile(r"\bstl_[A-Za-z0-9_-]{8,}"), "stl_" + MASK),
    (re.compile(r"\bstj_[A-Za-z0-9_-]{8,}"), "stj_" + MASK),
    # `Authorization: Bearer …`, `Bearer …` alone, and Basic credentials
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"), r"\1\2" + MASK),
    # password=…, "password": "…", task_token: …, X-Stella-Task-Token: … (task tokens carry
    # no prefix: they are recognised by the name they travel under)
    (
        re.compile(rf"""(?i)(["']?\b(?:{_KEYS})\b["']?\s*[:=]\s*)(["'])(?:\\.|(?!\2).)*\2"""),
        r"\1\2" + MASK + r"\2",
    ),
    (re.compile(rf"""(?i)(\b(?:{_KEYS})\b\s*[:=]\s*)[^\s"',;&}}\]]+"""), r"\1" + MASK),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
)


def _forms(value: str) -> set[str]:
    """`value` as a message may carry it: raw, stripped, JSON- and Python-quoted, per line."""

    forms = {value, value.strip(), repr(value)[1:-1], json.dumps(value)[1:-1]}
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.add(value.replace("\\", "\\\\").replace('"', '\\"'))  # Go %q for printable values
    lines = value.splitlines()
    if len(lines) > 1:
        forms.update(line.strip() for line in lines)
    return {form for form in forms if len(form.strip()) >= MIN_SECRET_CHARS}


def register_secret(value: str) -> None:
    """Remember a resolved secret value: from now on `mask` hides it."""
    global _ordered
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_CHARS:
        return
    with _lock:
        for form in _forms(value):
            _secrets.pop(form, None)
            _secrets[form] = None
        while len(_secrets) > MAX_SECRETS:
            _secrets.popitem(last=False)
        _ordered = tuple(sorted(_secrets, key=len, reverse=True))


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    global _ordered
    with _lock:
        _secrets.clear()
        _ordered = ()


def mask(text: str) -> str:
    """`text` with every registered value and every known credential pattern as `***`."""
    for value in _ordered:  # an immutable snapshot: no lock on the hot path
        if value in text:
            text = text.replace(value, MASK)
    for pattern, replacement in PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def mask_value(value: object) -> object:
    """Strings masked; mappings, lists and tuples masked member by member; others as they are."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    return value
