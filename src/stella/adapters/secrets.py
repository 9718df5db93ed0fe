"""Resolving secret references just in time. Values are returned, never logged or stored.

References are user input (a tenant admin writes them), so they are confined: `file:` paths must
lie inside one of the secret folders (`STELLA_SECRET_DIRS`, default `$STELLA_HOME/secrets` and
`/run/secrets`), and `env:` names may not point at Stella's own configuration (`STELLA_*`
other than `STELLA_SECRET_*`) — otherwise a reference could send the signing key or the
database password to a host of the user's choosing. `vault:` paths may not contain `.`/`..`
segments, so they stay inside the configured KV v2 mount.
"""

from __future__ import annotations

import os
from pathlib import Path

from stella.adapters.masking import register_secret
from stella.domain.errors import TerminalError
from stella.domain.secrets import parse_secret_ref

MAX_SECRET_BYTES = 64 * 1024


class SecretUnavailable(TerminalError):
    """Raised when a reference cannot be resolved; the message names the reference only."""

    status = 502
    title = "Secret unavailable"


def secret_dirs() -> list[Path]:
    configured = os.environ.get("STELLA_SECRET_DIRS")
    if configured:
        return [Path(p).resolve() for p in configured.split(os.pathsep) if p]
    home = Path(os.environ.get("STELLA_HOME", ".stella"))
    return [(home / "secrets").resolve(), Path("/run/secrets")]


def _registered(value: str) -> str:
    """`value`, registered for masking: no log line of this process can show it from now on."""
    register_secret(value)
    return value


def resolve_secret(reference: str) -> str:
    """The value behind `env:NAME`, `file:/path` (first line) or `vault:path#key` (a KV v2
    field, see stella.adapters.vault); raise SecretUnavailable."""
    ref = parse_secret_ref(reference)
    if ref.scheme == "env":
        name = ref.location
        if name.startswith("STELLA_") and not name.startswith("STELLA_SECRET_"):
            msg = f"secret reference {ref} names Stella's own configuration, not a secret"
            raise SecretUnavailable(msg)
        value = os.environ.get(name)
        if value is None:
            msg = f"secret reference {ref} is not set in the environment of this Stella process"
            raise SecretUnavailable(msg)
        return _registered(value)
    if ref.scheme == "file":
        path = Path(ref.location).resolve()
        if not any(path.is_relative_to(folder) for folder in secret_dirs()):
            folders = ", ".join(str(d) for d in secret_dirs())
            msg = f"secret reference {ref} is outside the secret folders ({folders})"
            raise SecretUnavailable(msg)
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_SECRET_BYTES)
        except OSError:
            msg = f"secret reference {ref} cannot be read"
            raise SecretUnavailable(msg) from None
        lines = data.decode(errors="replace").splitlines()
        return _registered(lines[0].strip() if lines else "")
    # vault:path#key — imported here so processes without Vault never load hvac.
    from stella.adapters.vault import read_vault_secret

    return _registered(read_vault_secret(ref, resolve_secret))
