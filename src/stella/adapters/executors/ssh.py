"""Deploying to a Docker host reached over SSH, without an agent on it.

The tunnel (see `ssh_tunnel`) forwards the remote Docker socket to a private local socket; the
ordinary Docker or compose executor then runs against that socket, so image pulls, digest checks,
container replacement and rollback are exactly those of an agent. Two things differ and are
handed to the inner executor: the sticker is written on the remote host over SFTP, and HTTP
health probes are sent from the remote host's point of view through forwarded ports.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stella.adapters.executors.compose import ComposeExecutor
from stella.adapters.executors.docker_host import DockerExecutor
from stella.adapters.executors.journal import Journal
from stella.adapters.executors.ssh_tunnel import SshTarget, SshTunnel
from stella.domain.deployments import DeploymentOutcome, DeploymentTask, ObservedContainer
from stella.domain.errors import StellaError


def default_work_dir() -> Path:
    """Where compose lockfiles of ssh targets live unless told: `$STELLA_HOME/work/ssh-compose`.

    It must outlive the process (the last good lockfile is what a failed upgrade is rolled back
    to), so it is not a temporary folder.
    """
    return Path(os.environ.get("STELLA_HOME", ".stella")) / "work" / "ssh-compose"


class SshExecutor:
    """Executor for `ssh_remote` targets; `connection` holds host, port, user, identity_file,
    known_hosts (required), docker_socket, mode (docker | compose) and optionally passphrase
    (a secret reference for the identity file, resolved with `resolve_secret`). Compose mode
    keeps its lockfiles under `work_dir` (default: `default_work_dir()`)."""

    def __init__(
        self,
        connection: dict[str, Any],
        resolve_secret: Callable[[str], str],
        sticker_root: Path | None = None,
        *,
        work_dir: Path | None = None,
        connect_seconds: float = 15.0,
    ) -> None:
        self.target = SshTarget.parse(connection)
        self.resolve_secret = resolve_secret
        self.sticker_root = sticker_root
        self.work_dir = work_dir or default_work_dir()
        self.connect_seconds = connect_seconds

    def _tunnel(self) -> SshTunnel:
        return SshTunnel(self.target, self.resolve_secret, self.sticker_root, self.connect_seconds)

    def inventory(self) -> list[ObservedContainer]:
        with self._tunnel() as tunnel:
            return DockerExecutor(tunnel.docker_host).inventory()

    def deploy(
        self,
        task: DeploymentTask,
        log: Callable[[str], None],
        cancelled: threading.Event,
        resolve_secret: Callable[[str], str],
    ) -> DeploymentOutcome:
        started = time.monotonic()
        target = self.target
        try:
            with self._tunnel() as tunnel:
                connected = time.monotonic() - started
                line = (
                    f"connected to {target.user}@{target.address} in {connected:.2f}s; "
                    f"its {target.docker_socket} is forwarded to {tunnel.docker_host}"
                )
                log(line)
                outcome = self._inner(tunnel).deploy(task, log, cancelled, resolve_secret)
                if outcome.error:  # name the remote socket, not the tunnel's local end
                    remote = f"{target.address}:{target.docker_socket} (over ssh)"
                    outcome = dataclasses.replace(
                        outcome, error=outcome.error.replace(tunnel.docker_host, remote)
                    )
        except StellaError as exc:
            return Journal(log).outcome({}, exc.detail)
        timings = {
            **outcome.timings,
            "connect": round(connected, 3),
            "total": round(time.monotonic() - started, 3),
        }
        return dataclasses.replace(outcome, log=[line, *outcome.log], timings=timings)

    def _inner(self, tunnel: SshTunnel) -> DockerExecutor | ComposeExecutor:
        if self.target.mode == "compose":
            return ComposeExecutor(
                tunnel.docker_host,
                self.work_dir,
                write_sticker=tunnel.write_sticker,
                http_get=tunnel.http_get,
            )
        return DockerExecutor(
            tunnel.docker_host, write_sticker=tunnel.write_sticker, http_get=tunnel.http_get
        )
