"""Secret references. Stella stores where a secret lives, never the secret itself.

`env:NAME` reads an environment variable of the process that needs it; `file:/abs/path` reads a
file (first line, stripped); `vault:path#key` is reserved for the secrets integration.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ENV_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMES = ("env", "file", "vault")

# Connection settings whose names say they hold a secret must be references, not values.
SECRET_KEY_HINTS = ("password", "secret", "token", "private_key", "credential", "passphrase")


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A parsed reference such as `env:REGISTRY_PASSWORD`."""

    scheme: str
    location: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.location}"


def parse_secret_ref(text: str) -> SecretRef:
    """Parse a reference or raise ValueError saying which forms are accepted."""
    scheme, sep, location = text.partition(":")
    if not sep or scheme not in SCHEMES or not location:
        msg = "must be a secret reference such as env:NAME, file:/path or vault:path#key"
        raise ValueError(msg)
    if scheme == "env" and not _ENV_RE.match(location):
        msg = f"'{location}' is not an environment variable name"
        raise ValueError(msg)
    if scheme == "file" and not location.startswith("/"):
        msg = "file: references need an absolute path"
        raise ValueError(msg)
    return SecretRef(scheme, location)


def looks_secret(key: str) -> bool:
    """True for setting names that by their name carry a secret (e.g. `ssh_password`)."""
    lowered = key.lower()
    return any(hint in lowered for hint in SECRET_KEY_HINTS)
