"""Semantic Versioning 2.0.0 parsing and precedence, used for release versions."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The regular expression published with the SemVer 2.0.0 specification.
_SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@dataclass(frozen=True, slots=True)
class SemVer:
    """A parsed semantic version; `precedence_key` orders versions as SemVer prescribes."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...]
    build: str | None

    def precedence_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A version without pre-release outranks any pre-release of the same core version.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def parse_semver(text: str) -> SemVer:
    """Parse `text` or raise ValueError saying why it is not SemVer."""
    match = _SEMVER_RE.match(text)
    if not match:
        msg = f"'{text}' is not a semantic version (MAJOR.MINOR.PATCH, e.g. 2.3.1 or 2.4.0-rc.1)"
        raise ValueError(msg)
    major, minor, patch, pre, build = match.groups()
    return SemVer(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build)
