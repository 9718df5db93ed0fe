"""Running docker compose as a bounded subprocess whose output becomes masked log lines.

`docker compose` (v2 plugin) is used when `docker compose version` works, else `docker-compose`
(v1). The process gets a minimal environment — PATH, HOME, Docker client settings, DOCKER_HOST
and the resolved secrets of the lockfile — so nothing else of the executor's environment can
reach a container through compose's pass-through variables. Every call is bounded by the job's
budget (and a per-command cap) and is killed on cancellation.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.journal import Deadline, Journal

COMMAND_CAP_SECONDS = 900.0  # one compose command (a pull of large images included)
VERSION_PROBE_SECONDS = 10.0
POLL_SECONDS = 0.25
_INHERITED = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)


def process_env(docker_host: str | None, secrets: Mapping[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env.setdefault("PATH", os.defpath)
    host = docker_host or os.environ.get("DOCKER_HOST")
    if host:
        env["DOCKER_HOST"] = host
    env.update(secrets)
    return env


def detect_compose(env: Mapping[str, str]) -> list[str]:
    """argv prefix of the compose implementation on this host: v2 plugin first, then v1."""
    docker_cli = shutil.which("docker", path=env.get("PATH"))
    if docker_cli:
        try:
            probe = subprocess.run(
                [docker_cli, "compose", "version"],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=VERSION_PROBE_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            probe = None
        if probe is not None and probe.returncode == 0:
            return [docker_cli, "compose"]
    legacy = shutil.which("docker-compose", path=env.get("PATH"))
    if legacy:
        return [legacy]
    msg = "neither `docker compose` (v2) nor `docker-compose` (v1) is installed on this host"
    raise DeploymentFailed(msg)


class ComposeCli:
    """One compose project driven through one lockfile at a time."""

    def __init__(
        self, command: list[str], project: str, env: Mapping[str, str], journal: Journal
    ) -> None:
        self.command = list(command)
        self.project = project
        self.env = dict(env)
        self.journal = journal

    def run(self, lockfile: Path, args: list[str], deadline: Deadline) -> None:
        """Run `compose -p PROJECT -f LOCKFILE ARGS`; raise DeploymentFailed unless it exits 0."""
        deadline.check(f"starting compose {args[0]}")
        argv = [*self.command, "--ansi", "never", "-p", self.project, "-f", str(lockfile), *args]
        self.journal(f"$ {' '.join(argv[len(self.command) - 1 :])}")
        started = time.monotonic()
        end = started + min(deadline.remaining(), COMMAND_CAP_SECONDS)
        with subprocess.Popen(
            argv,
            cwd=lockfile.parent,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as process:
            output, stopped = _communicate(process, deadline, end)
        lines = [line for line in output.splitlines() if line.strip()]
        for line in lines:
            self.journal(f"compose | {line}")
        if stopped:
            what = "cancelled" if deadline.cancelled.is_set() else "timed out"
            msg = f"compose {args[0]} {what} after {time.monotonic() - started:.1f}s"
            raise DeploymentFailed(msg)
        if process.returncode != 0:
            last = lines[-1].strip() if lines else "no output"
            msg = f"compose {args[0]} failed with exit code {process.returncode}: {last}"
            raise DeploymentFailed(msg)


def _communicate(
    process: subprocess.Popen[str], deadline: Deadline, end: float
) -> tuple[str, bool]:
    """Wait for the process until `end` or cancellation; return (output, was it stopped)."""
    polls = max(math.ceil((end - time.monotonic()) / POLL_SECONDS), 1)
    for _ in range(polls):
        try:
            output, _ = process.communicate(timeout=POLL_SECONDS)
        except subprocess.TimeoutExpired:
            if deadline.cancelled.is_set():
                break
        else:
            return output or "", False
    process.kill()
    output, _ = process.communicate()
    return output or "", True
