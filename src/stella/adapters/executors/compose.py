"""Deploying a release as a docker compose project from its digest-pinned lockfile.

Each job writes the lockfile to `work_dir/<project>/<release_version>-<job_id[:8]>/` (never
rewritten: a retried job finds the same bytes, a different text under the same name is refused),
then runs `pull` and checks the pulled images' RepoDigests before `up -d --remove-orphans`
changes anything. After `up` every service's container must run the expected digest and become
healthy. `work_dir/<project>/current` names the last job that succeeded; when a new `up` fails,
that job's lockfile is brought up again (or, on a first deployment, the project is taken down),
so a failed deployment does not leave half a release running. Secrets: see `lockfile`.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker
import requests
from docker.errors import DockerException, NotFound
from docker.models.containers import Container

from stella.adapters.executors.base import EngineExecutor
from stella.adapters.executors.compose_cli import ComposeCli, detect_compose, process_env
from stella.adapters.executors.engine import (
    check_pinned,
    explain,
    open_client,
    served_digest,
    verify_image,
)
from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.executors.health import HttpGet, direct_http_get, wait_healthy
from stella.adapters.executors.journal import Deadline, Journal
from stella.adapters.executors.lockfile import lockfile_references, lockfile_services
from stella.adapters.executors.secret_env import resolve_reference
from stella.adapters.executors.sticker import LocalStickerWriter, StickerWriter
from stella.domain.deployments import (
    ContainerSpec,
    DeploymentTask,
)

LOCKFILE_NAME = "docker-compose.yml"
CURRENT_NAME = "current"
ROLLBACK_SECONDS = 300.0  # restoring is not cut short by the failed job's budget or cancellation
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
_PROJECT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class ComposeExecutor(EngineExecutor):
    """Runs deployment tasks as compose projects on the engine at `docker_host`."""

    def __init__(
        self,
        docker_host: str | None,
        work_dir: Path,
        sticker_root: Path | None = None,
        *,
        write_sticker: StickerWriter | None = None,
        http_get: HttpGet = direct_http_get,
        compose_command: list[str] | None = None,
    ) -> None:
        self.docker_host = docker_host
        self.work_dir = Path(work_dir)
        self.write_sticker = write_sticker or LocalStickerWriter(sticker_root)
        self.http_get = http_get
        self.compose_command = compose_command

    def describe(self, task: DeploymentTask) -> str:
        return f" as compose project {task.project}"

    def _deploy(
        self,
        task: DeploymentTask,
        journal: Journal,
        deadline: Deadline,
        resolve_secret: Callable[[str], str],
    ) -> dict[str, str]:
        _check_task(task)
        secrets = _resolve_lockfile_secrets(task.compose_lockfile, resolve_secret, journal)
        project_dir = self.work_dir / task.project
        job_dir = project_dir / f"{_safe(task.release_version)}-{_safe(task.job_id[:8])}"
        lockfile = _write_once(job_dir / LOCKFILE_NAME, task.compose_lockfile)
        journal(f"lockfile {lockfile}")
        env = process_env(self.docker_host, secrets)
        cli = ComposeCli(self.compose_command or detect_compose(env), task.project, env, journal)
        with journal.phase("pull"):
            cli.run(lockfile, ["pull"], deadline)
        client = open_client(self.docker_host)
        try:
            deployed: dict[str, str] = {}
            with journal.phase("verify"):
                for spec in task.containers:
                    deployed[spec.component] = verify_image(client, spec)
                    journal(f"{spec.component}: verified {spec.image}")
            previous = _current_lockfile(project_dir)
            _displace_strangers(client, task, journal)
            try:
                self._up(cli, client, task, lockfile, journal, deadline)
            except (DeploymentFailed, DockerException, requests.RequestException) as exc:
                reason = str(exc) if isinstance(exc, DeploymentFailed) else explain(exc)
                restored = _roll_back(cli, lockfile, previous, resolve_secret, journal)
                raise DeploymentFailed(reason + restored) from None
            except Exception:
                _roll_back(cli, lockfile, previous, resolve_secret, journal)
                raise
            _set_current(project_dir, job_dir, journal)
            return deployed
        finally:
            client.close()

    def _up(
        self,
        cli: ComposeCli,
        client: docker.DockerClient,
        task: DeploymentTask,
        lockfile: Path,
        journal: Journal,
        deadline: Deadline,
    ) -> None:
        with journal.phase("start"):
            cli.run(lockfile, ["up", "-d", "--remove-orphans"], deadline)
        with journal.phase("verify"):
            running = _project_containers(client, task.project, task.containers)
        with journal.phase("health"):
            for spec in task.containers:
                for container in running[spec.component]:
                    wait_healthy(container, spec, journal, deadline, self.http_get)
        where = self.write_sticker(task.sticker_path, task.sticker)
        journal(f"sticker written to {where}")


def _displace_strangers(
    client: docker.DockerClient, task: DeploymentTask, journal: Journal
) -> None:
    """A container that holds one of our names but is not this project's (someone ran it by
    hand: drift) would make `up` fail on the name. Stop it and keep it aside, renamed, so the
    deployment (or a rollback) can proceed and nothing is deleted."""
    for spec in task.containers:
        try:
            found = client.containers.get(spec.name)
        except NotFound:
            continue
        if found.labels.get("com.docker.compose.project") == task.project:
            continue
        aside = f"{spec.name}.stella-displaced-{int(time.time())}"
        found.stop(timeout=10)
        found.rename(aside)
        journal(
            f"{spec.name}: a container not made by this project held the name; "
            f"stopped and renamed it to {aside}"
        )


def _check_task(task: DeploymentTask) -> None:
    """The lockfile and the task must agree before anything is pulled."""
    if not _PROJECT_RE.match(task.project):
        msg = f"compose project name {task.project!r} must be lower-case letters, digits, - and _"
        raise DeploymentFailed(msg)
    services = lockfile_services(task.compose_lockfile)
    if not task.containers:
        msg = "the task has no containers to deploy"
        raise DeploymentFailed(msg)
    unexpected = sorted(set(services) - {spec.component for spec in task.containers})
    if unexpected:
        msg = f"the compose lockfile runs services the task does not name: {', '.join(unexpected)}"
        raise DeploymentFailed(msg)
    for spec in task.containers:
        check_pinned(spec)
        service = services.get(spec.component)
        if service is None or service.get("image") != spec.image:
            msg = f"the compose lockfile does not run {spec.image} as service {spec.component}"
            raise DeploymentFailed(msg)


def _resolve_lockfile_secrets(
    text: str, resolve_secret: Callable[[str], str], journal: Journal
) -> dict[str, str]:
    references = lockfile_references(lockfile_services(text))
    values = {}
    for name, reference in sorted(references.items()):
        values[name] = resolve_reference(reference, resolve_secret, journal, f"compose {name}")
        journal(f"environment {name} set from {reference}")
    return values


def _project_containers(
    client: docker.DockerClient, project: str, specs: list[ContainerSpec]
) -> dict[str, list[Container]]:
    """Each service's containers, every one running the expected digest."""
    found = client.containers.list(
        all=True, filters={"label": f"{PROJECT_LABEL}={project}"}, ignore_removed=True
    )
    by_service: dict[str, list[Container]] = {}
    for container in found:
        by_service.setdefault(container.labels.get(SERVICE_LABEL, ""), []).append(container)
    for spec in specs:
        containers = by_service.get(spec.component) or []
        if not containers:
            msg = f"compose started no container for service {spec.component}"
            raise DeploymentFailed(msg)
        for container in containers:
            image_id = str(container.attrs.get("Image", ""))
            digests = client.images.get(image_id).attrs.get("RepoDigests") or []
            actual = served_digest(digests, spec.repository)
            if actual != spec.digest:
                msg = (
                    f"digest mismatch for {spec.component}: expected {spec.digest}, container "
                    f"{container.name} runs {actual or image_id}"
                )
                raise DeploymentFailed(msg)
    return by_service


def _roll_back(
    cli: ComposeCli,
    failed: Path,
    previous: Path | None,
    resolve_secret: Callable[[str], str],
    journal: Journal,
) -> str:
    """Bring the last good lockfile up again (or the failed project down); return the suffix."""
    budget = Deadline(ROLLBACK_SECONDS, threading.Event())
    try:
        if previous is None or previous == failed:
            cli.run(failed, ["down", "--remove-orphans"], budget)
            return "; new containers removed, no previous compose deployment to restore"
        secrets = _resolve_lockfile_secrets(previous.read_text(), resolve_secret, journal)
        restore = ComposeCli(cli.command, cli.project, {**cli.env, **secrets}, journal)
        restore.run(previous, ["up", "-d", "--remove-orphans"], budget)
    except (DeploymentFailed, OSError) as exc:
        return f"; restoring the previous deployment failed: {exc}"
    return f"; previous deployment restored ({previous.parent.name})"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]", "_", text) or "_"


def _write_once(path: Path, text: str) -> Path:
    """Write the job's lockfile; an existing one must hold exactly the same text."""
    try:
        if path.exists():
            if path.read_text() != text:
                msg = f"{path} already exists with a different lockfile; job ids must be unique"
                raise DeploymentFailed(msg)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(path, text)
    except OSError as exc:
        msg = f"writing the lockfile {path} failed: {exc.strerror or type(exc).__name__}"
        raise DeploymentFailed(msg) from None
    return path


def _atomic_write(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _current_lockfile(project_dir: Path) -> Path | None:
    try:
        name = (project_dir / CURRENT_NAME).read_text().strip()
    except OSError:
        return None
    candidate = project_dir / name / LOCKFILE_NAME
    return candidate if name and "/" not in name and candidate.is_file() else None


def _set_current(project_dir: Path, job_dir: Path, journal: Journal) -> None:
    """Remember the job for the next rollback; the deployment itself has already succeeded."""
    try:
        _atomic_write(project_dir / CURRENT_NAME, job_dir.name + "\n")
    except OSError as exc:
        journal(f"warning: recording {job_dir.name} as current failed: {exc.strerror}")
