"""Resolving secret references just in time. Values are returned, never logged or stored."""

from __future__ import annotations

import os
from pathlib import Path

from stella.domain.errors import TerminalError
from stella.domain.secrets import parse_secret_ref


class SecretUnavailable(TerminalError):
    """Raised when a reference cannot be resolved; the message names the reference only."""

    status = 502
    title = "Secret unavailable"


def resolve_secret(reference: str) -> str:
    """The value behind `env:NAME` or `file:/path`; raise SecretUnavailable otherwise."""
    ref = parse_secret_ref(reference)
    if ref.scheme == "env":
        value = os.environ.get(ref.location)
        if value is None:
            msg = f"secret reference {ref} is not set in the environment of this Stella process"
            raise SecretUnavailable(msg)
        return value
    if ref.scheme == "file":
        try:
            return Path(ref.location).read_text().strip()
        except OSError:
            msg = f"secret reference {ref} cannot be read"
            raise SecretUnavailable(msg) from None
    msg = f"secret reference {ref}: the vault integration is not configured"
    raise SecretUnavailable(msg)
