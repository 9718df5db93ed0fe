"""Environment values that are secret references, resolved just in time.

A `ContainerSpec.environment` value is either a plain value or a reference (`env:NAME`,
`file:/path`, `vault:…`) as accepted by `parse_secret_ref`. References are resolved only inside
the executor, immediately before the container is created, and each resolved value is registered
with the journal so it is masked in everything the executor reports (the resolver,
`stella.adapters.secrets.resolve_secret`, registers it for the log lines of the process).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.journal import Journal
from stella.domain.secrets import parse_secret_ref


def is_secret_ref(value: str) -> bool:
    try:
        parse_secret_ref(value)
    except ValueError:
        return False
    return True


def resolve_reference(
    reference: str, resolve_secret: Callable[[str], str], journal: Journal, where: str
) -> str:
    """The value behind `reference`; a failure names the reference, never a value."""
    try:
        value = resolve_secret(reference)
    except Exception as exc:  # noqa: BLE001 - any resolver failure ends the job the same way
        detail = getattr(exc, "detail", None) or type(exc).__name__
        msg = f"secret reference {reference} for {where} cannot be resolved: {detail}"
        raise DeploymentFailed(msg) from None
    journal.secret(value)  # every log line of this process: `resolve_secret` registered it
    return value


def resolve_environment(
    environment: Mapping[str, str],
    resolve_secret: Callable[[str], str],
    journal: Journal,
    component: str,
) -> dict[str, str]:
    """Plain values as they are, references replaced by their values (registered for masking)."""
    resolved: dict[str, str] = {}
    for name, value in sorted(environment.items()):
        if is_secret_ref(value):
            resolved[name] = resolve_reference(
                value, resolve_secret, journal, f"{component}.{name}"
            )
            journal(f"{component}: environment {name} set from {value}")
        else:
            resolved[name] = value
    return resolved
