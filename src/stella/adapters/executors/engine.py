"""Docker engine helpers shared by the executors: client, pull by digest, digest checks, inventory.

Images are always pulled as `repository@digest`, never by tag, so a tag moved after the release
was created cannot change what runs. The pulled image must then list exactly that
`repository@digest` among its `RepoDigests`; anything else fails the job before a container is
touched.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import docker
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from stella.adapters.executors.errors import DeploymentFailed, TargetUnreachable
from stella.adapters.executors.journal import Deadline, Journal
from stella.domain.deployments import ContainerSpec, ObservedContainer

API_TIMEOUT = 120  # seconds per Docker API call (a pull streams progress well within this)
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
MAX_PULL_EVENTS = 100_000  # progress messages of one pull; bounds the stream loop


def open_client(docker_host: str | None) -> docker.DockerClient:
    """A client for `docker_host` (`unix://…`, `tcp://…`), or from the environment when None."""
    socket_path = (docker_host or "").removeprefix("unix://")
    if docker_host and docker_host.startswith("unix://") and not os.path.exists(socket_path):
        # checked first: the SDK leaks its socket when the connect itself fails
        msg = f"cannot reach the Docker engine: socket {socket_path} does not exist"
        raise TargetUnreachable(msg)
    try:
        if docker_host is None:
            return docker.from_env(timeout=API_TIMEOUT)
        return docker.DockerClient(base_url=docker_host, timeout=API_TIMEOUT)
    except (DockerException, requests.RequestException) as exc:
        where = docker_host or "DOCKER_HOST"
        msg = f"cannot reach the Docker engine at {where}: {explain(exc)[:300]}"
        raise TargetUnreachable(msg) from None


def explain(exc: BaseException) -> str:
    """A one-line reason without URLs or tracebacks (masked later by the journal)."""
    text = str(exc)
    if isinstance(exc, APIError):  # also a requests.HTTPError: the engine did answer
        if isinstance(exc.explanation, str) and exc.explanation:
            text = exc.explanation
    elif isinstance(exc, requests.RequestException):
        return f"the Docker engine cannot be reached ({type(exc).__name__})"
    lines = text.strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def normalize_repository(repository: str) -> str:
    """`docker.io/library/nginx` and `nginx` name the same repository in RepoDigests."""
    name = repository.removeprefix("docker.io/").removeprefix("index.docker.io/")
    return name.removeprefix("library/") if name.count("/") == 1 else name


def served_digest(repo_digests: Iterable[str], repository: str) -> str | None:
    """The digest recorded for `repository` among an image's RepoDigests, if any."""
    wanted = normalize_repository(repository)
    for item in repo_digests:
        repo, _, digest = item.partition("@")
        if normalize_repository(repo) == wanted:
            return digest
    return None


def check_pinned(spec: ContainerSpec) -> None:
    if not _DIGEST_RE.match(spec.digest):
        msg = f"{spec.component} is not pinned by a sha256 digest ({spec.digest!r})"
        raise DeploymentFailed(msg)


def pull_by_digest(
    client: docker.DockerClient, spec: ContainerSpec, journal: Journal, deadline: Deadline
) -> None:
    """Pull `repository@digest`; errors in the progress stream count as failures."""
    check_pinned(spec)
    deadline.check(f"pulling {spec.image}")
    journal(f"{spec.component}: pulling {spec.image}")
    try:
        events = client.api.pull(spec.repository, tag=spec.digest, stream=True, decode=True)
        for count, event in enumerate(events):
            if isinstance(event, dict) and event.get("error"):
                msg = f"pulling {spec.image} failed: {event['error']}"
                raise DeploymentFailed(msg)
            if count >= MAX_PULL_EVENTS:
                msg = f"pulling {spec.image} produced too much progress output"
                raise DeploymentFailed(msg)
            if deadline.cancelled.is_set():
                deadline.check(f"pulling {spec.image}")
    except NotFound as exc:
        msg = f"image {spec.image} not found: {explain(exc)}"
        raise DeploymentFailed(msg) from None
    except (DockerException, requests.RequestException) as exc:
        msg = f"pulling {spec.image} failed: {explain(exc)}"
        raise DeploymentFailed(msg) from None


def verify_image(client: docker.DockerClient, spec: ContainerSpec) -> str:
    """Return the verified digest, or fail naming the expected and the served digest."""
    try:
        attrs = client.images.get(spec.image).attrs
    except ImageNotFound:
        msg = f"image {spec.image} is not present after the pull"
        raise DeploymentFailed(msg) from None
    except (DockerException, requests.RequestException) as exc:
        msg = f"inspecting {spec.image} failed: {explain(exc)}"
        raise DeploymentFailed(msg) from None
    repo_digests = list(attrs.get("RepoDigests") or [])
    wanted = f"{normalize_repository(spec.repository)}@{spec.digest}"
    normalized = {
        f"{normalize_repository(r)}@{d}" for r, _, d in (i.partition("@") for i in repo_digests)
    }
    if wanted not in normalized:
        served = served_digest(repo_digests, spec.repository) or "no digest for that repository"
        msg = (
            f"digest mismatch for {spec.component}: expected {spec.digest}, "
            f"registry served {served}"
        )
        raise DeploymentFailed(msg)
    return spec.digest


def find_container(client: docker.DockerClient, name: str) -> Container | None:
    """The container named exactly `name` (Docker's own lookup also matches id prefixes)."""
    candidates = client.containers.list(
        all=True, filters={"name": f"^/{re.escape(name)}$"}, ignore_removed=True
    )
    return next((c for c in candidates if c.name == name), None)


def inventory(docker_host: str | None) -> list[ObservedContainer]:
    """`observe` on a client of its own; an engine that cannot be read raises TargetUnreachable."""
    client = open_client(docker_host)
    try:
        return observe(client)
    except (DockerException, requests.RequestException) as exc:
        msg = f"listing containers failed: {explain(exc)}"
        raise TargetUnreachable(msg) from None
    finally:
        client.close()


def observe(client: docker.DockerClient) -> list[ObservedContainer]:
    """Every container on the engine, in all states, with the digests of its image."""
    digests_by_image: dict[str, list[str]] = {}
    observed: list[ObservedContainer] = []
    for container in client.containers.list(all=True, ignore_removed=True):
        attrs = container.attrs
        image_id = str(attrs.get("Image", ""))
        if image_id not in digests_by_image:
            try:
                image = client.images.get(image_id).attrs
                digests_by_image[image_id] = [str(d) for d in image.get("RepoDigests") or []]
            except NotFound:
                digests_by_image[image_id] = []
        config = attrs.get("Config") or {}
        observed.append(
            ObservedContainer(
                name=str(attrs.get("Name", "")).lstrip("/"),
                image=str(config.get("Image", "")),
                digests=digests_by_image[image_id],
                state=str((attrs.get("State") or {}).get("Status", "")),
                labels={str(k): str(v) for k, v in (config.get("Labels") or {}).items()},
            )
        )
    return sorted(observed, key=lambda c: c.name)


def container_logs(container: Container, lines: int = 20) -> list[str]:
    """The last lines a container printed (for failure reports; masked by the journal)."""
    try:
        raw = container.logs(tail=lines)
    except (DockerException, requests.RequestException):
        return []
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return text.splitlines()[-lines:]
