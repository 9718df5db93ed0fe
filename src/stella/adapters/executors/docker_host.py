"""Deploying a release's containers to one Docker engine with the Docker SDK.

Order of work, chosen so that a failure leaves the target as it was:
1. resolve secret references, pull every image by digest and verify its RepoDigests — nothing
   on the target has been touched yet, so any failure here just ends the job;
2. per container: rename the running one to `<name>.stella-previous` and stop it (host networking
   means old and new cannot both bind the port), create and start the new one, wait for health;
3. if any new container fails (or the job is cancelled or times out), every container replaced
   so far is removed and its previous one renamed back and restarted, in reverse order;
4. only when all are healthy is the sticker written and are the previous containers removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import requests
from docker.errors import DockerException
from docker.models.containers import Container

from stella.adapters.executors.base import EngineExecutor
from stella.adapters.executors.engine import (
    explain,
    find_container,
    open_client,
    pull_by_digest,
    verify_image,
)
from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.health import (
    HttpGet,
    direct_http_get,
    docker_healthcheck,
    wait_healthy,
)
from stella.adapters.executors.journal import Deadline, Journal
from stella.adapters.executors.secret_env import resolve_environment
from stella.adapters.executors.sticker import LocalStickerWriter, StickerWriter
from stella.domain.deployments import (
    ContainerSpec,
    DeploymentTask,
)

PREVIOUS_SUFFIX = ".stella-previous"
STOP_TIMEOUT = 10  # seconds Docker waits for a stopping container before killing it


@dataclass
class _Swap:
    """One container being replaced: what to undo if the deployment fails."""

    spec: ContainerSpec
    previous: Container | None = None
    previous_was_running: bool = False
    new: Container | None = None


class DockerExecutor(EngineExecutor):
    """Runs deployment tasks against the Docker engine at `docker_host` (None: DOCKER_HOST)."""

    def __init__(
        self,
        docker_host: str | None,
        sticker_root: Path | None = None,
        *,
        write_sticker: StickerWriter | None = None,
        http_get: HttpGet = direct_http_get,
    ) -> None:
        self.docker_host = docker_host
        self.write_sticker = write_sticker or LocalStickerWriter(sticker_root)
        self.http_get = http_get

    def describe(self, task: DeploymentTask) -> str:
        return f": {len(task.containers)} container(s)"

    def _deploy(
        self,
        task: DeploymentTask,
        journal: Journal,
        deadline: Deadline,
        resolve_secret: Callable[[str], str],
    ) -> dict[str, str]:
        _check_specs(task.containers)
        environments = {
            spec.name: resolve_environment(
                spec.environment, resolve_secret, journal, spec.component
            )
            for spec in task.containers
        }
        client = open_client(self.docker_host)
        try:
            deployed: dict[str, str] = {}
            for spec in task.containers:
                with journal.phase("pull"):
                    pull_by_digest(client, spec, journal, deadline)
                with journal.phase("verify"):
                    deployed[spec.component] = verify_image(client, spec)
                journal(f"{spec.component}: verified {spec.image}")
            swaps = self._replace_all(client, task, environments, journal, deadline)
            for swap in swaps:
                if swap.previous is not None:
                    _remove(swap.previous, journal, f"previous container of {swap.spec.name}")
            return deployed
        finally:
            client.close()

    def _replace_all(
        self,
        client: docker.DockerClient,
        task: DeploymentTask,
        environments: dict[str, dict[str, str]],
        journal: Journal,
        deadline: Deadline,
    ) -> list[_Swap]:
        """Replace every container and write the sticker, or undo everything and raise."""
        swaps: list[_Swap] = []
        try:
            for spec in task.containers:
                deadline.check(f"replacing {spec.name}")
                swap = _Swap(spec)
                swaps.append(swap)
                with journal.phase("start"):
                    _set_aside(client, swap, journal)
                    new = _start_new(client, swap, environments[spec.name], journal)
                with journal.phase("health"):
                    wait_healthy(new, spec, journal, deadline, self.http_get)
            where = self.write_sticker(task.sticker_path, task.sticker)
            journal(f"sticker written to {where}")
        except (DeploymentFailed, DockerException, requests.RequestException) as exc:
            reason = str(exc) if isinstance(exc, DeploymentFailed) else explain(exc)
            raise DeploymentFailed(reason + _roll_back(swaps, journal)) from None
        except BaseException:
            _roll_back(swaps, journal)  # an unexpected error must not leave the target half-done
            raise
        return swaps


def _check_specs(specs: list[ContainerSpec]) -> None:
    """Reject a task that could only fail half-way, before anything is pulled or stopped."""
    if not specs:
        msg = "the task has no containers to deploy"
        raise DeploymentFailed(msg)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        msg = "the task names the same container twice"
        raise DeploymentFailed(msg)
    for spec in specs:
        for name in spec.environment:
            if not name or "=" in name or "\x00" in name:
                msg = f"{spec.component}: {name!r} is not an environment variable name"
                raise DeploymentFailed(msg)
        port_bindings(spec.ports)
        if spec.restart:
            restart_policy(spec.restart)


def _set_aside(client: docker.DockerClient, swap: _Swap, journal: Journal) -> None:
    """Rename the current container to `<name>.stella-previous` and stop it."""
    name = swap.spec.name
    previous_name = name + PREVIOUS_SUFFIX
    current = find_container(client, name)
    leftover = find_container(client, previous_name)
    if leftover is not None and current is None:
        journal(f"{previous_name} is left from an interrupted deployment; it is the previous one")
        current = leftover
    elif leftover is not None:
        journal(f"removing {previous_name} left from an earlier deployment")
        leftover.remove(force=True)
    if current is None:
        journal(f"{name}: no existing container")
        return
    swap.previous = current
    swap.previous_was_running = current.status in {"running", "restarting"}
    if current.name != previous_name:
        current.rename(previous_name)
    journal(f"{name}: renamed the existing container to {previous_name}; stopping it")
    current.stop(timeout=STOP_TIMEOUT)


def _start_new(
    client: docker.DockerClient, swap: _Swap, environment: dict[str, str], journal: Journal
) -> Container:
    spec = swap.spec
    options: dict[str, Any] = {
        "name": spec.name,
        "command": spec.command or None,
        "environment": environment,
        "labels": dict(spec.labels),
        "network_mode": spec.network_mode or "host",
        "init": spec.init,
        "detach": True,
    }
    if spec.ports and options["network_mode"] != "host":
        options["ports"] = port_bindings(spec.ports)
    if spec.volumes:
        options["volumes"] = list(spec.volumes)
    if spec.restart:
        options["restart_policy"] = restart_policy(spec.restart)
    healthcheck = docker_healthcheck(spec.health)
    if healthcheck is not None:
        options["healthcheck"] = healthcheck
    new = client.containers.create(spec.image, **options)
    swap.new = new  # recorded before start, so a failing start is undone too
    new.start()
    journal(f"{spec.name}: started {spec.image}")
    return new


def _roll_back(swaps: list[_Swap], journal: Journal) -> str:
    """Undo `swaps` in reverse order; return the suffix for the error message."""
    restored: list[str] = []
    problems: list[str] = []
    for swap in reversed(swaps):
        name = swap.spec.name
        try:
            if swap.new is not None:
                swap.new.remove(force=True)
                journal(f"{name}: removed the new container")
            if swap.previous is not None:
                swap.previous.rename(name)
                if swap.previous_was_running:
                    swap.previous.start()
                journal(f"{name}: previous container restored")
                restored.append(name)
        except (DockerException, requests.RequestException) as exc:
            problems.append(f"restoring {name} failed: {explain(exc)}")
    suffix = ""
    if len(restored) == 1:
        suffix = "; previous container restored"
    elif restored:
        suffix = f"; previous containers restored ({', '.join(reversed(restored))})"
    elif not problems:
        suffix = "; new container removed, no previous container to restore"
    return suffix + "".join(f"; {p}" for p in problems)


def _remove(container: Container, journal: Journal, what: str) -> None:
    try:
        container.remove(force=True)
        journal(f"removed the {what}")
    except (DockerException, requests.RequestException) as exc:
        journal(f"warning: removing the {what} failed: {explain(exc)}")


def restart_policy(restart: str) -> dict[str, Any]:
    """Compose-style `restart` (`no`, `always`, `unless-stopped`, `on-failure[:N]`) for the SDK."""
    name, _, count = restart.partition(":")
    if name not in {"no", "always", "unless-stopped", "on-failure"}:
        msg = f"unknown restart policy {restart!r}"
        raise DeploymentFailed(msg)
    policy: dict[str, Any] = {"Name": "" if name == "no" else name}
    if name == "on-failure" and count.isdigit():
        policy["MaximumRetryCount"] = int(count)
    return policy


def port_bindings(ports: list[str]) -> dict[str, int | tuple[str, int] | None]:
    """`[ip:]host:container[/proto]` (or just `container`) as the SDK's `ports` mapping."""
    bindings: dict[str, int | tuple[str, int] | None] = {}
    for item in ports:
        spec, _, proto = item.partition("/")
        parts = spec.rsplit(":", 2)
        try:
            key = f"{int(parts[-1])}/{proto or 'tcp'}"
            if len(parts) == 1:
                bindings[key] = None
            elif len(parts) == 2:
                bindings[key] = int(parts[0])
            else:
                bindings[key] = (parts[0], int(parts[1]))
        except ValueError:
            msg = f"port mapping {item!r} is not [ip:]host:container[/protocol]"
            raise DeploymentFailed(msg) from None
    return bindings
