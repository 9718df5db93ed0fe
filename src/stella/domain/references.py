"""OCI image references and digests, parsed the way Docker's reference grammar does.

`127.0.0.1:5000/app/api:v1`, `127.0.0.1:5000/app/api@sha256:…` and
`registry.example.com/app/api:v1@sha256:…` are accepted. Only fully qualified references
(with a registry host) are valid: Stella never guesses Docker Hub, because an air-gapped
estate that silently pulls from the internet is a bug.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST_RE = re.compile(
    r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)(?::[0-9]{1,5})?$"
)


class InvalidReference(ValueError):
    """Raised by the parsers below; the message says what is wrong with the reference."""


def is_valid_digest(value: str) -> bool:
    """True for `sha256:<64 hex>` or `sha512:<128 hex>`."""
    return bool(_DIGEST_RE.match(value))


def is_valid_tag(value: str) -> bool:
    """True when `value` is a legal OCI tag."""
    return bool(_TAG_RE.match(value))


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository with its registry host: `127.0.0.1:5000/app/api`."""

    host: str
    path: str

    def __str__(self) -> str:
        return f"{self.host}/{self.path}"


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A parsed image reference: repository plus a tag, a digest, or both."""

    repository: Repository
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = str(self.repository)
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse_repository(text: str) -> Repository:
    """Parse `host[:port]/path`; raise InvalidReference naming the problem."""
    if not text or text != text.strip():
        msg = "repository must be a non-empty string without surrounding spaces"
        raise InvalidReference(msg)
    host, sep, path = text.partition("/")
    if not sep or not path:
        msg = f"'{text}' has no registry host; write host[:port]/path, e.g. 127.0.0.1:5000/app/api"
        raise InvalidReference(msg)
    if not ("." in host or ":" in host or host == "localhost" or host.startswith("[")):
        msg = f"'{text}' does not start with a registry host (host[:port]/path)"
        raise InvalidReference(msg)
    if not _HOST_RE.match(host):
        msg = f"'{host}' is not a valid registry host"
        raise InvalidReference(msg)
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.match(component):
            msg = f"'{path}' is not a valid repository path (lowercase letters, digits, . _ -)"
            raise InvalidReference(msg)
    if len(text) > 255:
        msg = "repository is longer than 255 characters"
        raise InvalidReference(msg)
    return Repository(host=host, path=path)


def parse_image_reference(text: str) -> ImageReference:
    """Parse `repo:tag`, `repo@digest` or `repo:tag@digest`; a bare repository is an error."""
    name, at, digest = text.partition("@")
    if at and not is_valid_digest(digest):
        msg = f"'{digest}' is not a valid digest (expected sha256:<64 hex characters>)"
        raise InvalidReference(msg)
    tag: str | None = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
        if not is_valid_tag(tag):
            msg = f"'{tag}' is not a valid tag"
            raise InvalidReference(msg)
    repository = parse_repository(name)
    if tag is None and not at:
        msg = f"'{text}' names neither a tag nor a digest; write repo:tag or repo@sha256:…"
        raise InvalidReference(msg)
    return ImageReference(repository=repository, tag=tag, digest=digest if at else None)
