"""Masking of secrets in log output: every value resolved in this process, and known patterns.

`register_secret` is called where a secret reference is resolved (`resolve_secret` registers
every value it returns, whoever asked for it: the server, the worker, the agent's container
environment); `mask` replaces each registered value (also in its JSON, Python and Go quoted
forms, see `secret_forms`) and every known credential pattern with `***`. The logging setup
applies `mask` to every log record of every logger, so a value resolved once cannot reach a log
line later, wherever the line comes from. The executors' journal masks the secrets of one job in
its log lines with the same machinery (`SecretValues`).

The registry is process-wide, thread-safe and bounded (least recently registered values drop
out first beyond `MAX_SECRETS`); values shorter than `MIN_SECRET_CHARS` are not registered,
since masking a two-letter value would mask every word that contains it.

Cost: a log line that needs no masking (nearly all of them) is recognised with one test of all
its fields joined (`needs_masking`): a substring test per registered form (beyond SEARCH_FROM
forms, one compiled search for all of them, rebuilt only when the set of forms changes) and a
few substring tests for the patterns; a pattern's regular expression runs only on a text that
has the words it needs.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import NamedTuple

MASK = "***"
MAX_SECRETS = 1024
MIN_SECRET_CHARS = 4
SEARCH_FROM = 128  # forms; fewer are found with a substring test each, more with one search
PREFIX_CHARS = 16  # how much of each form that search looks for

_KEYS = (
    r"password|passwd|task_token|join_token|api_token|access_token|refresh_token"
    r"|client_secret|secret_key|x-stella-task-token"
)


class Words:
    """A cheap test for a set of words, at least one of which is in every text a pattern can
    match: for ASCII text a substring test on the lower-cased text; for other text a search
    that ignores case as `re` does (it folds more letters onto `k`, `s` and `i`: the Kelvin
    sign, the long s, the dotted capital I)."""

    def __init__(self, *groups: tuple[tuple[str, ...], bool]) -> None:
        """`groups`: (words, ignore_case) pairs."""
        self.lower = tuple(dict.fromkeys(word.lower() for words, _ in groups for word in words))
        self.search = re.compile(
            "|".join(
                ("(?i:{})" if ignore_case else "{}").format("|".join(map(re.escape, words)))
                for words, ignore_case in groups
            )
        ).search

    def found_in(self, text: str) -> bool:
        if text.isascii():
            lower = text.lower()
            for word in self.lower:  # noqa: SIM110 - a generator costs more than the tests
                if word in lower:
                    return True
            return False
        return self.search(text) is not None


class Rule(NamedTuple):
    """A credential pattern, what replaces it, and words it cannot match without."""

    pattern: re.Pattern[str]
    replacement: str
    words: tuple[str, ...]
    ignore_case: bool = False


_KEY_WORDS = ("passw", "token", "secret")  # every name in _KEYS contains one of these
RULES: tuple[Rule, ...] = (
    # PEM private key blocks (also when their newlines are escaped, or the block is cut off)
    Rule(
        re.compile(
            r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        MASK,
        ("PRIVATE KEY-----",),
    ),
    # Stella API tokens and agent join tokens (prefix + token_urlsafe(32))
    Rule(re.compile(r"\bstl_[A-Za-z0-9_-]{8,}"), "stl_" + MASK, ("stl_",)),
    Rule(re.compile(r"\bstj_[A-Za-z0-9_-]{8,}"), "stj_" + MASK, ("stj_",)),
    # `Authorization: Bearer …`, `Bearer …` alone, and Basic credentials
    Rule(
        re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]+"),
        r"\1\2" + MASK,
        ("bearer", "basic"),
        ignore_case=True,
    ),
    # password=…, "password": "…", task_token: …, X-Stella-Task-Token: … (task tokens carry
    # no prefix: they are recognised by the name they travel under)
    Rule(
        re.compile(rf"""(?i)(["']?\b(?:{_KEYS})\b["']?\s*[:=]\s*)(["'])(?:\\.|(?!\2).)*\2"""),
        r"\1\2" + MASK + r"\2",
        _KEY_WORDS,
        ignore_case=True,
    ),
    Rule(
        re.compile(rf"""(?i)(\b(?:{_KEYS})\b\s*[:=]\s*)[^\s"',;&}}\]]+"""),
        r"\1" + MASK,
        _KEY_WORDS,
        ignore_case=True,
    ),
    # scheme://user:password@host (`://` has no other case)
    Rule(
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@"),
        r"\1" + MASK + "@",
        ("://",),
    ),
)
_RULE_WORDS = tuple(Words((rule.words, rule.ignore_case)) for rule in RULES)
_ANY_RULE_WORDS = Words(*((rule.words, rule.ignore_case) for rule in RULES))

_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(value: str) -> str:
    """The inside of Go's strconv.Quote (what `%q` prints in Docker and runc errors)."""
    out: list[str] = []
    for char in value:
        if char in _GO_ESCAPES:
            out.append(_GO_ESCAPES[char])
        elif char.isprintable():
            out.append(char)
        elif ord(char) < 0x80:
            out.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "".join(out)


def secret_forms(value: str, min_chars: int = MIN_SECRET_CHARS) -> set[str]:
    """`value` as a message may carry it: raw, stripped, quoted the JSON, Python or Go way, and
    each of its lines (output is logged line by line; lines shorter than MIN_SECRET_CHARS are
    left out). Forms shorter than `min_chars` (not counting surrounding blanks) are left out."""
    forms = {value, value.strip(), repr(value)[1:-1], go_quote(value)}
    forms.update((json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1]))
    forms.add(value.replace("\\", "\\\\").replace('"', '\\"'))  # Go %q, non-printables raw
    lines = value.splitlines()
    if len(lines) > 1:
        for line in lines:
            if len(line.strip()) >= MIN_SECRET_CHARS:
                forms.update((line, line.strip()))
    least = max(min_chars, 1)
    return {form for form in forms if len(form.strip()) >= least}


class _Matcher(NamedTuple):
    """An immutable snapshot of a set of forms and how to find them: up to SEARCH_FROM forms one
    substring test each (Python's `in` is fast), more with one compiled search for the first
    PREFIX_CHARS of every form, factored by common prefixes (a cost that grows far slower)."""

    forms: tuple[str, ...]
    search: re.Pattern[str] | None

    @classmethod
    def of(cls, forms: Iterable[str]) -> _Matcher:
        forms = tuple(forms)
        if len(forms) < SEARCH_FROM:
            return cls(forms, None)
        return cls(forms, re.compile(_trie_pattern({form[:PREFIX_CHARS] for form in forms})))

    def may_occur(self, text: str) -> bool:
        """False when no form occurs in `text`."""
        if self.search is not None:
            return self.search.search(text) is not None
        for form in self.forms:  # noqa: SIM110 - a generator costs more than the tests
            if form in text:
                return True
        return False

    def spans(self, text: str) -> list[list[int]]:
        """Where forms occur in `text`: every occurrence of every form, overlaps merged."""
        if not self.may_occur(text):
            return []
        found: list[tuple[int, int]] = []
        for form in self.forms:
            start = text.find(form)
            while start >= 0:
                found.append((start, start + len(form)))
                start = text.find(form, start + 1)
        spans: list[list[int]] = []
        for start, end in sorted(found):
            if spans and start < spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], end)
            else:
                spans.append([start, end])
        return spans


_Trie = dict[str, "_Trie"]


def _trie_pattern(words: Iterable[str]) -> str:
    """One regular expression matching wherever one of `words` starts, factored by common
    prefixes (a long alternation of literals is tried member by member at every position)."""
    root: _Trie = {}
    for word in words:
        node = root
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}
    return _node_pattern(root)


def _node_pattern(node: _Trie) -> str:
    if "" in node:  # a word ends here: enough for a match (longer words start the same way)
        return ""
    branches = [re.escape(char) + _node_pattern(child) for char, child in sorted(node.items())]
    return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"


class SecretValues:
    """A thread-safe set of secret values (kept as their `secret_forms`) that `mask` replaces
    with `***`. Each place where a form occurs is masked, overlapping places as one. The
    compiled search is rebuilt, on first use, only after the set of forms has changed."""

    def __init__(self, min_chars: int = MIN_SECRET_CHARS) -> None:
        self.min_chars = min_chars
        self._lock = threading.Lock()
        self._forms: OrderedDict[str, None] = OrderedDict()
        self._matcher: _Matcher | None = _Matcher((), None)

    def add(self, value: str, limit: int | None = None) -> None:
        """Remember `value`'s forms (as most recent); beyond `limit` forms the least recently
        added drop out."""
        forms = secret_forms(value, self.min_chars)
        with self._lock:
            changed = False
            for form in forms:
                if form in self._forms:
                    self._forms.move_to_end(form)
                else:
                    self._forms[form] = None
                    changed = True
            while limit is not None and len(self._forms) > limit:
                self._forms.popitem(last=False)
                changed = True
            if changed:
                self._matcher = None

    def clear(self) -> None:
        with self._lock:
            self._forms.clear()
            self._matcher = _Matcher((), None)

    def _current(self) -> _Matcher:
        matcher = self._matcher  # an immutable snapshot: no lock on the hot path
        if matcher is None:
            with self._lock:
                matcher = self._matcher
                if matcher is None:
                    matcher = self._matcher = _Matcher.of(self._forms)
        return matcher

    def may_occur(self, text: str) -> bool:
        """False when no form occurs in `text`."""
        return self._current().may_occur(text)

    def mask(self, text: str) -> str:
        spans = self._current().spans(text)
        if not spans:
            return text
        parts: list[str] = []
        last = 0
        for start, end in spans:
            parts += (text[last:start], MASK)
            last = end
        parts.append(text[last:])
        return "".join(parts)


_registry = SecretValues()


def register_secret(value: str) -> None:
    """Remember a resolved secret value: from now on `mask` hides it."""
    if not isinstance(value, str) or len(value.strip()) < MIN_SECRET_CHARS:
        return
    _registry.add(value, limit=MAX_SECRETS)


def forget_secrets() -> None:
    """Drop every registered value (tests)."""
    _registry.clear()


def needs_masking(text: str) -> bool:
    """False only when `mask(text)` is certainly `text`; then the same holds for every part of
    `text`, so one test of the fields of a log line joined together covers all of them."""
    return _registry.may_occur(text) or _ANY_RULE_WORDS.found_in(text)


def mask(text: str) -> str:
    """`text` with every registered value and every known credential pattern as `***`."""
    text = _registry.mask(text)
    if not _ANY_RULE_WORDS.found_in(text):
        return text
    for rule, words in zip(RULES, _RULE_WORDS, strict=True):
        if words.found_in(text):
            text = rule.pattern.sub(rule.replacement, text)
    return text


def mask_value(value: object) -> object:
    """Strings masked; mappings, lists and tuples masked member by member; numbers, booleans
    and None as they are; any other object as its masked text (a renderer would otherwise
    write its repr, unmasked)."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, Mapping):
        return {key: mask_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(item) for item in value]
    if value is None or isinstance(value, int | float):
        return value
    return mask(str(value))
