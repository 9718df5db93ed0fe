"""Errors of the executors.

A deployment never raises: its failures become a failed `DeploymentOutcome` whose error text is
masked. `DeploymentFailed` carries such a failure inside an executor up to that point. Inventory
and connection set-up have no outcome to report into, so they raise the Stella errors below.
"""

from __future__ import annotations

from stella.domain.errors import TerminalError, UpstreamUnavailable


class DeploymentFailed(Exception):
    """Internal: stops a deployment with a readable reason (masked before it is reported)."""


class ExecutorError(TerminalError):
    """A target that cannot be used as configured (unknown type, untrusted host key, ...)."""

    status = 422
    title = "Executor failed"


class TargetUnreachable(UpstreamUnavailable):
    """The target's Docker engine or SSH server cannot be reached; a retry may help."""
