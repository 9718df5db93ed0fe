"""Deployment executors: carry out one `DeploymentTask` on a target and report the outcome.

- `DockerExecutor` (docker_host targets): the Docker SDK, container by container, with rollback;
- `ComposeExecutor` (compose_host targets): docker compose with the digest-pinned lockfile;
- `SshExecutor` (ssh_remote targets): either of the two through an SSH-forwarded Docker socket.

All pull by digest only, verify RepoDigests before touching a container, resolve secret references
just in time and mask their values in every log line and error, wait for health within bounded
tries, and write the version sticker only after success. `deploy` never raises for a failed
deployment; it returns a failed `DeploymentOutcome`.
"""

from __future__ import annotations

from typing import Any

from stella.adapters.executors.compose import ComposeExecutor
from stella.adapters.executors.docker_host import DockerExecutor
from stella.adapters.executors.errors import ExecutorError, TargetUnreachable
from stella.adapters.executors.lockfile import render_compose_lockfile
from stella.adapters.executors.ssh import SshExecutor
from stella.services.deployment_ports import TaskExecutor

__all__ = [
    "ComposeExecutor",
    "DockerExecutor",
    "Executor",
    "ExecutorError",
    "SshExecutor",
    "TargetUnreachable",
    "executor_for",
    "render_compose_lockfile",
]


# the port the services define; every executor here implements it
Executor = TaskExecutor


def executor_for(task_or_target_type: str, docker_host: str | None, **kwargs: Any) -> Executor:
    """The executor for a target type: `docker_host`, `compose_host` (needs `work_dir=`) or
    `ssh_remote` (needs `connection=` and `resolve_secret=`; `docker_host` is unused)."""
    if task_or_target_type == "docker_host":
        return DockerExecutor(docker_host, **kwargs)
    if task_or_target_type == "compose_host":
        if "work_dir" not in kwargs:
            msg = "a compose_host executor needs a work_dir for its lockfiles"
            raise ExecutorError(msg)
        return ComposeExecutor(docker_host, **kwargs)
    if task_or_target_type == "ssh_remote":
        return SshExecutor(**kwargs)
    msg = (
        f"no executor for target type {task_or_target_type!r} "
        "(expected docker_host, compose_host or ssh_remote)"
    )
    raise ExecutorError(msg)
