"""Deployment executors against the real test environment: the private Docker daemon, the loopback
registry, docker-compose v1 and the loopback sshd. No mocks.

Images: `local/busybox:1` pushed as `app/exec-<hex>:v1`, and a v2 built from it with another
`/www/index.html`; digests are read at run time. Containers run busybox httpd on host networking
on a random loopback port; each test removes what it created (containers, compose projects).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import asyncssh
import docker
import httpx
import pytest
import yaml

from stella.adapters.executors import (
    ComposeExecutor,
    DockerExecutor,
    ExecutorError,
    SshExecutor,
    TargetUnreachable,
    executor_for,
    render_compose_lockfile,
)
from stella.domain.deployments import (
    DEFAULT_STICKER_PATH,
    LABEL_COMPONENT,
    LABEL_DIGEST,
    LABEL_RELEASE,
    LABEL_TARGET,
    LABEL_VERSION,
    ContainerSpec,
    DeploymentOutcome,
    DeploymentTask,
    HealthProbe,
)
from tests.conftest import service_missing

DOCKER_HOST = os.environ.get("DOCKER_HOST", "unix:///tmp/stella-testenv/docker.sock")
REGISTRY = os.environ.get("TESTENV_REGISTRY", "127.0.0.1:5000")
BASE_IMAGE = os.environ.get("TESTENV_BASE_IMAGE", "local/busybox:1")
SSH_HOST = os.environ.get("TESTENV_SSH_HOST", "127.0.0.1")
SSH_PORT = int(os.environ.get("TESTENV_SSH_PORT", "2222"))
SSH_USER = os.environ.get("TESTENV_SSH_USER", "root")
SSH_KEY = os.environ.get("TESTENV_SSH_KEY", "/tmp/stella-testenv/ssh/client_ed25519")
SSH_KNOWN_HOSTS = os.environ.get("TESTENV_SSH_KNOWN_HOSTS", "/tmp/stella-testenv/ssh/known_hosts")
SECRET_NAME = "STELLA_TEST_EXEC_SECRET"
SECRET_VALUE = "s3cr3t-" + secrets.token_hex(8)
PROJECT_LABEL = "com.docker.compose.project"


# --- environment ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Images:
    repository: str
    v1: str  # digest
    v2: str
    v2_body: str


@pytest.fixture(scope="session")
def engine() -> Iterator[docker.DockerClient]:
    socket_path = DOCKER_HOST.removeprefix("unix://")
    if DOCKER_HOST.startswith("unix://") and not Path(socket_path).exists():
        service_missing(f"the test Docker daemon at {DOCKER_HOST}")
    client = docker.DockerClient(base_url=DOCKER_HOST, timeout=60)
    try:
        client.ping()
    except docker.errors.DockerException:
        client.close()
        service_missing(f"the test Docker daemon at {DOCKER_HOST}")
    yield client
    client.close()


def push_images(engine: docker.DockerClient, tmp: Path) -> Images:
    """v1 = the base image, v2 = the base image with another index.html; both pushed."""
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError:
        service_missing(f"the OCI registry at {REGISTRY}")
    repository = f"{REGISTRY}/app/exec-{secrets.token_hex(5)}"
    body = f"v2-{secrets.token_hex(4)}\n"
    (tmp / "index.html").write_text(body)
    (tmp / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY index.html /www/index.html\n")
    engine.images.get(BASE_IMAGE).tag(repository, "v1")
    engine.images.build(path=str(tmp), tag=f"{repository}:v2", rm=True)
    digests = {}
    for tag in ("v1", "v2"):
        for event in engine.api.push(repository, tag=tag, stream=True, decode=True):
            assert "error" not in event, event
        repo_digests = engine.images.get(f"{repository}:{tag}").attrs["RepoDigests"]
        digests[tag] = next(d for d in repo_digests if d.startswith(repository + "@"))
    return Images(repository, digests["v1"].split("@")[1], digests["v2"].split("@")[1], body)


@pytest.fixture(scope="session")
def images(engine: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory) -> Images:
    return push_images(engine, tmp_path_factory.mktemp("image-v2"))


def free_port() -> int:
    """A random loopback port in 18100-18999 that nothing listens on right now."""
    for _ in range(200):
        port = 18100 + secrets.randbelow(900)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18100-18999")


@dataclass
class Cleanup:
    engine: docker.DockerClient
    names: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)

    def name(self) -> str:
        name = f"t-{secrets.token_hex(5)}"
        self.names.append(name)
        return name

    def project(self) -> str:
        project = f"t{secrets.token_hex(5)}"
        self.projects.append(project)
        return project

    def run(self) -> None:
        doomed = [
            c
            for c in all_containers(self.engine)
            if any(c.name in {n, n + ".stella-previous"} for n in self.names)
            or c.labels.get(PROJECT_LABEL) in self.projects
        ]
        for container in doomed:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)


@pytest.fixture
def cleanup(engine: docker.DockerClient) -> Iterator[Cleanup]:
    tracker = Cleanup(engine)
    yield tracker
    tracker.run()


def http_spec(
    name: str,
    repository: str,
    digest: str,
    port: int,
    component: str = "api",
    **overrides: Any,
) -> ContainerSpec:
    values: dict[str, Any] = {
        "component": component,
        "name": name,
        "repository": repository,
        "digest": digest,
        "command": ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
        "health": HealthProbe(http=f"http://127.0.0.1:{port}/", interval_seconds=0.1, retries=50),
        "labels": {
            LABEL_RELEASE: "rel-1",
            LABEL_VERSION: "1.0.0",
            LABEL_COMPONENT: component,
            LABEL_DIGEST: digest,
            LABEL_TARGET: "target-1",
        },
    }
    values.update(overrides)
    return ContainerSpec(**values)


def make_task(
    specs: list[ContainerSpec],
    version: str = "1.0.0",
    project: str = "stella",
    lockfile: str = "",
    sticker_path: str = DEFAULT_STICKER_PATH,
    **overrides: Any,
) -> DeploymentTask:
    values: dict[str, Any] = {
        "job_id": uuid.uuid4().hex,
        "kind": "deploy",
        "target_id": "target-1",
        "target_name": "loopback",
        "target_type": "docker_host",
        "release_id": "rel-1",
        "release_name": "shop",
        "release_version": version,
        "promotion_id": None,
        "project": project,
        "containers": specs,
        "compose_lockfile": lockfile,
        "sticker_path": sticker_path,
        "sticker": {
            "release": "shop",
            "version": version,
            "components": {s.component: s.digest for s in specs},
        },
        "timeout_seconds": 60.0,
    }
    values.update(overrides)
    return DeploymentTask(**values)


def no_secrets(reference: str) -> str:
    raise AssertionError(f"unexpected secret reference {reference}")


def known_secret(reference: str) -> str:
    assert reference == f"env:{SECRET_NAME}", reference
    return SECRET_VALUE


def run(
    executor: Any,
    task: DeploymentTask,
    resolve: Callable[[str], str] = no_secrets,
    cancelled: threading.Event | None = None,
) -> tuple[DeploymentOutcome, list[str]]:
    lines: list[str] = []
    outcome = executor.deploy(task, lines.append, cancelled or threading.Event(), resolve)
    return outcome, lines


def body(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=3, trust_env=False).text


def all_containers(engine: docker.DockerClient, **filters: str) -> list[Any]:
    """Every container (other tests may remove theirs meanwhile, e.g. under xdist)."""
    return engine.containers.list(all=True, filters=filters or None, ignore_removed=True)


def container(engine: docker.DockerClient, name: str) -> Any:
    found = [c for c in all_containers(engine, name=f"^/{re.escape(name)}$") if c.name == name]
    return found[0] if found else None


def repo_digests(engine: docker.DockerClient, running: Any) -> list[str]:
    return list(engine.images.get(running.attrs["Image"]).attrs["RepoDigests"])


def ssh_connection(known_hosts: str = SSH_KNOWN_HOSTS, **extra: Any) -> dict[str, Any]:
    try:
        with socket.create_connection((SSH_HOST, SSH_PORT), timeout=2):
            pass
    except OSError:
        service_missing(f"sshd on {SSH_HOST}:{SSH_PORT}")
    if not Path(SSH_KEY).exists():
        service_missing(f"the test ssh key {SSH_KEY}")
    return {
        "host": SSH_HOST,
        "port": SSH_PORT,
        "user": SSH_USER,
        "identity_file": SSH_KEY,
        "known_hosts": known_hosts,
        "docker_socket": DOCKER_HOST.removeprefix("unix://"),
        **extra,
    }


# --- Docker host executor ------------------------------------------------------------------


def test_docker_deploy_then_replace_with_v2(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path)

    v1 = make_task([http_spec(name, images.repository, images.v1, port)])
    outcome, lines = run(executor, v1)
    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v1}
    assert {"pull", "verify", "start", "health", "total"} <= outcome.timings.keys()
    assert lines == outcome.log
    assert any("verified" in line for line in lines)
    first = container(engine, name)
    assert first.status == "running"
    assert first.labels[LABEL_DIGEST] == images.v1
    assert first.attrs["Config"]["Image"] == f"{images.repository}@{images.v1}"
    assert first.attrs["HostConfig"]["NetworkMode"] == "host"
    assert first.attrs["HostConfig"]["Init"] is True
    assert f"{images.repository}@{images.v1}" in repo_digests(engine, first)
    sticker = tmp_path / DEFAULT_STICKER_PATH.lstrip("/")
    assert json.loads(sticker.read_text()) == v1.sticker

    v2 = make_task([http_spec(name, images.repository, images.v2, port)], version="2.0.0")
    outcome, _ = run(executor, v2)
    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v2}
    assert body(port) == images.v2_body
    second = container(engine, name)
    assert second.id != first.id
    assert second.labels[LABEL_DIGEST] == images.v2
    assert f"{images.repository}@{images.v2}" in repo_digests(engine, second)
    assert container(engine, name + ".stella-previous") is None
    assert first.id not in {c.id for c in all_containers(engine)}
    assert json.loads(sticker.read_text()) == v2.sticker
    assert not [p for p in sticker.parent.iterdir() if p.name != sticker.name]  # no temp files


def test_a_moved_tag_does_not_change_what_is_deployed(
    engine: docker.DockerClient, cleanup: Cleanup, tmp_path: Path
) -> None:
    own = push_images(engine, tmp_path)  # this test moves a tag, so it has its own repository
    engine.images.get(f"{own.repository}:v2").tag(own.repository, "v1")
    for event in engine.api.push(own.repository, tag="v1", stream=True, decode=True):
        assert "error" not in event, event
    name, port = cleanup.name(), free_port()

    outcome, _ = run(
        DockerExecutor(DOCKER_HOST, sticker_root=tmp_path),
        make_task([http_spec(name, own.repository, own.v1, port)]),
    )

    assert outcome.succeeded, outcome.error
    running = container(engine, name)
    assert running.attrs["Config"]["Image"] == f"{own.repository}@{own.v1}"
    assert f"{own.repository}@{own.v1}" in repo_digests(engine, running)
    assert body(port) != own.v2_body


def test_a_digest_the_registry_does_not_have_fails_before_anything_is_stopped(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path / "a")
    outcome, _ = run(executor, make_task([http_spec(name, images.repository, images.v1, port)]))
    assert outcome.succeeded, outcome.error
    before = container(engine, name)

    missing = "sha256:" + secrets.token_hex(32)
    other_port = free_port()
    task = make_task(
        [
            http_spec(cleanup.name(), images.repository, images.v2, other_port, component="web"),
            http_spec(name, images.repository, missing, port),
        ]
    )
    outcome, _ = run(DockerExecutor(DOCKER_HOST, sticker_root=tmp_path / "b"), task)

    assert not outcome.succeeded
    assert outcome.deployed == {}
    assert f"{images.repository}@{missing}" in (outcome.error or "")
    assert "not found" in (outcome.error or "")
    assert "Traceback" not in (outcome.error or "")
    after = container(engine, name)
    assert after.id == before.id
    assert after.status == "running"
    assert container(engine, name + ".stella-previous") is None
    assert container(engine, task.containers[0].name) is None  # nothing of the job started
    assert not (tmp_path / "b").exists()  # no sticker


def test_a_cancelled_job_changes_nothing(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    cancelled = threading.Event()
    cancelled.set()
    name = cleanup.name()
    outcome, _ = run(
        DockerExecutor(DOCKER_HOST, sticker_root=tmp_path),
        make_task([http_spec(name, images.repository, images.v1, free_port())]),
        cancelled=cancelled,
    )
    assert not outcome.succeeded
    assert "cancelled" in (outcome.error or "")
    assert container(engine, name) is None


def test_a_never_healthy_container_is_replaced_by_the_previous_one(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path)
    outcome, _ = run(executor, make_task([http_spec(name, images.repository, images.v1, port)]))
    assert outcome.succeeded, outcome.error
    before = container(engine, name)
    sticker = tmp_path / DEFAULT_STICKER_PATH.lstrip("/")
    first_sticker = sticker.read_text()

    dead = HealthProbe(http=f"http://127.0.0.1:{free_port()}/", interval_seconds=0.2, retries=3)
    broken = http_spec(name, images.repository, images.v2, port, health=dead)
    started = time.monotonic()
    outcome, lines = run(executor, make_task([broken], version="2.0.0"))
    elapsed = time.monotonic() - started

    assert not outcome.succeeded
    assert f"container {name} did not become healthy within 3 tries" in (outcome.error or "")
    assert (outcome.error or "").endswith("previous container restored")
    assert elapsed < 15
    after = container(engine, name)
    assert after.id == before.id
    assert after.status == "running"
    assert body(port) != images.v2_body
    assert [c.name for c in all_containers(engine, name=name)] == [name]
    assert sticker.read_text() == first_sticker
    assert any("previous container restored" in line for line in lines)


def test_docker_healthcheck_volumes_and_restart_policy(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_text("mounted\n")
    url = f"http://127.0.0.1:{port}/"
    probe = HealthProbe(
        test=["wget", "-q", "-O", "/dev/null", url], interval_seconds=0.2, retries=10
    )
    spec = http_spec(
        name,
        images.repository,
        images.v1,
        port,
        health=probe,
        volumes=[f"{www}:/www:ro"],
        restart="unless-stopped",
    )
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path)
    outcome, lines = run(executor, make_task([spec]))

    assert outcome.succeeded, outcome.error
    assert any("healthy (Docker healthcheck)" in line for line in lines)
    running = container(engine, name)
    assert running.attrs["State"]["Health"]["Status"] == "healthy"
    assert running.attrs["Config"]["Healthcheck"]["Test"] == ["CMD", *probe.test]
    assert running.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert body(port) == "mounted\n"

    failing = HealthProbe(test=["CMD", "false"], interval_seconds=0.2, retries=2)
    outcome, _ = run(executor, make_task([replace(spec, digest=images.v2, health=failing)]))
    assert not outcome.succeeded
    assert "Docker: unhealthy" in (outcome.error or "")
    assert (outcome.error or "").endswith("previous container restored")
    assert container(engine, name).id == running.id


def test_cancelling_during_the_health_wait_restores_the_previous_container(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path)
    outcome, _ = run(executor, make_task([http_spec(name, images.repository, images.v1, port)]))
    assert outcome.succeeded, outcome.error
    before = container(engine, name)

    cancelled = threading.Event()
    timer = threading.Timer(0.5, cancelled.set)
    timer.start()
    dead = HealthProbe(http=f"http://127.0.0.1:{free_port()}/", interval_seconds=0.1, retries=600)
    started = time.monotonic()
    outcome, _ = run(
        executor,
        make_task([http_spec(name, images.repository, images.v2, port, health=dead)]),
        cancelled=cancelled,
    )
    timer.cancel()

    assert time.monotonic() - started < 10
    assert not outcome.succeeded
    assert (outcome.error or "").startswith(f"deployment cancelled while waiting for {name}")
    assert (outcome.error or "").endswith("previous container restored")
    assert container(engine, name).id == before.id
    assert container(engine, name).status == "running"


def test_a_previous_container_left_by_an_interrupted_job_is_taken_over(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    leftover = engine.containers.run(
        f"{images.repository}@{images.v1}",
        ["httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", "/www"],
        name=name + ".stella-previous",
        detach=True,
        network_mode="host",
        init=True,
    )
    spec = http_spec(name, images.repository, images.v2, port, health=None)
    outcome, lines = run(DockerExecutor(DOCKER_HOST, sticker_root=tmp_path), make_task([spec]))

    assert outcome.succeeded, outcome.error
    assert any("left from an interrupted deployment" in line for line in lines)
    assert any(f"{name}: running" in line for line in lines)
    assert container(engine, name + ".stella-previous") is None
    assert leftover.id not in {c.id for c in all_containers(engine)}
    assert body(port) == images.v2_body


def test_secret_environment_is_resolved_just_in_time_and_masked(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    environment = {"API_TOKEN": f"env:{SECRET_NAME}", "PLAIN": "visible"}
    spec = http_spec(name, images.repository, images.v1, port, environment=environment)
    outcome, lines = run(
        DockerExecutor(DOCKER_HOST, sticker_root=tmp_path), make_task([spec]), known_secret
    )

    assert outcome.succeeded, outcome.error
    env = container(engine, name).attrs["Config"]["Env"]
    assert f"API_TOKEN={SECRET_VALUE}" in env
    assert "PLAIN=visible" in env
    assert not [line for line in lines if SECRET_VALUE in line]
    assert any(f"API_TOKEN set from env:{SECRET_NAME}" in line for line in lines)

    # a container that prints the secret and dies: its output is reported, masked
    leaky = replace(
        spec,
        command=["sh", "-c", 'echo "token is $API_TOKEN" >&2; exit 3'],
        health=None,
    )
    outcome, lines = run(
        DockerExecutor(DOCKER_HOST, sticker_root=tmp_path), make_task([leaky]), known_secret
    )
    assert not outcome.succeeded
    assert "exited with code 3" in (outcome.error or "")
    assert "previous container restored" in (outcome.error or "")
    assert any("token is ***" in line for line in lines)
    assert not [line for line in [*lines, outcome.error or ""] if SECRET_VALUE in line]
    assert container(engine, name).status == "running"  # the first one is back

    # a Docker error that quotes the value, Go-escaped (runc rejects a NUL in a value)
    outcome, lines = run(
        DockerExecutor(DOCKER_HOST, sticker_root=tmp_path),
        make_task([replace(spec, name=cleanup.name())]),
        lambda reference: f'{known_secret(reference)}"\x00',
    )
    assert not outcome.succeeded
    assert 'API_TOKEN=***": unknown; new container removed' in (outcome.error or "")
    assert not [line for line in [*lines, outcome.error or ""] if SECRET_VALUE in line]

    # an invalid variable name is refused before anything is resolved or started
    bad_name = replace(spec, environment={"BAD=NAME": f"env:{SECRET_NAME}"})
    outcome, _ = run(DockerExecutor(DOCKER_HOST, sticker_root=tmp_path), make_task([bad_name]))
    assert outcome.error == "api: 'BAD=NAME' is not an environment variable name"


def test_inventory_lists_every_container_with_digests_and_labels(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = DockerExecutor(DOCKER_HOST, sticker_root=tmp_path)
    outcome, _ = run(executor, make_task([http_spec(name, images.repository, images.v1, port)]))
    assert outcome.succeeded, outcome.error
    stopped = cleanup.name()
    engine.containers.create(
        f"{images.repository}@{images.v2}", ["true"], name=stopped, network_mode="host"
    )

    observed = {c.name: c for c in executor.inventory()}

    seen = observed[name]
    assert seen.state == "running"
    assert seen.image == f"{images.repository}@{images.v1}"
    assert seen.digest_for(images.repository) == images.v1
    assert seen.labels[LABEL_DIGEST] == images.v1
    assert seen.labels[LABEL_TARGET] == "target-1"
    assert observed[stopped].state == "created"
    assert observed[stopped].digest_for(images.repository) == images.v2


# --- compose executor ----------------------------------------------------------------------


def compose_specs(
    images: Images, project: str, digest: str, ports: tuple[int, int], **api: Any
) -> list[ContainerSpec]:
    return [
        http_spec(
            f"{project}-api",
            images.repository,
            digest,
            ports[0],
            environment={"API_KEY": f"env:{SECRET_NAME}", "MODE": "a$b"},
            **api,
        ),
        http_spec(f"{project}-web", images.repository, digest, ports[1], component="web"),
    ]


def compose_task(specs: list[ContainerSpec], project: str, version: str) -> DeploymentTask:
    lockfile = render_compose_lockfile(project, specs)
    return make_task(
        specs, version=version, project=project, lockfile=lockfile, target_type="compose_host"
    )


def project_containers(engine: docker.DockerClient, project: str) -> dict[str, Any]:
    found = all_containers(engine, label=f"{PROJECT_LABEL}={project}")
    return {c.labels["com.docker.compose.service"]: c for c in found}


def test_compose_lockfile_is_deterministic_and_pinned(images: Images) -> None:
    specs = compose_specs(images, "shop", images.v1, (18001, 18002))
    text = render_compose_lockfile("shop", specs)
    shuffled = [replace(s, environment=dict(reversed(s.environment.items()))) for s in specs]
    assert render_compose_lockfile("shop", shuffled) == text

    document = yaml.safe_load(text)
    for service in document["services"].values():
        assert service["image"].startswith(images.repository + "@sha256:")
        assert service["network_mode"] == "host"
        assert service["init"] is True
    api = document["services"]["api"]
    assert api["environment"] == ["API_KEY", "MODE=a$$b"]
    assert api["x-stella-secrets"] == {"API_KEY": f"env:{SECRET_NAME}"}
    assert SECRET_VALUE not in text
    assert ":v1" not in text
    assert ":v2" not in text

    with pytest.raises(ValueError, match="not pinned"):
        render_compose_lockfile("shop", [replace(specs[0], digest="latest")])
    clash = replace(specs[1], environment={"API_KEY": "env:OTHER"})
    with pytest.raises(ValueError, match="one value per name"):
        render_compose_lockfile("shop", [specs[0], clash])


def test_compose_deploy_upgrade_and_restore(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    project = cleanup.project()
    ports = (free_port(), free_port())
    executor = ComposeExecutor(DOCKER_HOST, tmp_path / "compose", sticker_root=tmp_path)

    v1 = compose_task(compose_specs(images, project, images.v1, ports), project, "1.0.0")
    outcome, lines = run(executor, v1, known_secret)
    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v1, "web": images.v1}
    assert any("docker-compose" in line and "pull" in line for line in lines)
    lockfile = tmp_path / "compose" / project / f"1.0.0-{v1.job_id[:8]}" / "docker-compose.yml"
    assert lockfile.read_text() == v1.compose_lockfile
    running = project_containers(engine, project)
    assert set(running) == {"api", "web"}
    for service, spec in zip(("api", "web"), v1.containers, strict=True):
        assert running[service].name == spec.name
        assert running[service].status == "running"
        assert f"{images.repository}@{images.v1}" in repo_digests(engine, running[service])
        assert running[service].labels[LABEL_DIGEST] == images.v1
    api_env = running["api"].attrs["Config"]["Env"]
    assert f"API_KEY={SECRET_VALUE}" in api_env
    assert "MODE=a$b" in api_env
    assert not [line for line in lines if SECRET_VALUE in line]
    sticker = tmp_path / DEFAULT_STICKER_PATH.lstrip("/")
    assert json.loads(sticker.read_text()) == v1.sticker
    assert not engine.networks.list(names=[f"{project}_default"])

    v2 = compose_task(compose_specs(images, project, images.v2, ports), project, "2.0.0")
    outcome, _ = run(executor, v2, known_secret)
    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v2, "web": images.v2}
    running = project_containers(engine, project)
    assert set(running) == {"api", "web"}
    for service in ("api", "web"):
        assert f"{images.repository}@{images.v2}" in repo_digests(engine, running[service])
    assert body(ports[0]) == images.v2_body
    assert json.loads(sticker.read_text()) == v2.sticker

    dead = HealthProbe(http=f"http://127.0.0.1:{free_port()}/", interval_seconds=0.2, retries=3)
    broken = compose_task(
        compose_specs(images, project, images.v1, ports, health=dead), project, "3.0.0"
    )
    outcome, lines = run(executor, broken, known_secret)
    assert not outcome.succeeded
    assert "did not become healthy within 3 tries" in (outcome.error or "")
    assert f"previous deployment restored (2.0.0-{v2.job_id[:8]})" in (outcome.error or "")
    running = project_containers(engine, project)
    for service in ("api", "web"):
        assert running[service].status == "running"
        assert f"{images.repository}@{images.v2}" in repo_digests(engine, running[service])
    assert body(ports[0]) == images.v2_body
    assert json.loads(sticker.read_text()) == v2.sticker
    assert not [line for line in lines if SECRET_VALUE in line]


def test_compose_sets_aside_a_hand_made_container_holding_its_name(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    project = cleanup.project()
    ports = (free_port(), free_port())
    specs = compose_specs(images, project, images.v1, ports)
    stranger = engine.containers.run(
        f"{images.repository}@{images.v2}",
        ["httpd", "-f", "-p", f"127.0.0.1:{free_port()}", "-h", "/www"],
        name=specs[0].name,
        detach=True,
        network_mode="host",
        init=True,
    )
    try:
        executor = ComposeExecutor(DOCKER_HOST, tmp_path / "compose", sticker_root=tmp_path)
        outcome, lines = run(executor, compose_task(specs, project, "1.0.0"), known_secret)
        assert outcome.succeeded, outcome.error
        assert project_containers(engine, project)["api"].name == specs[0].name
        stranger.reload()
        assert stranger.status == "exited"
        assert stranger.name.startswith(f"{specs[0].name}.stella-displaced-")
        assert any("not made by this project" in line for line in lines)
    finally:
        stranger.remove(force=True)


def test_compose_refuses_a_missing_digest_before_up(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    project = cleanup.project()
    missing = "sha256:" + secrets.token_hex(32)
    task = compose_task(
        compose_specs(images, project, missing, (free_port(), free_port())), project, "1.0.0"
    )
    outcome, _ = run(
        ComposeExecutor(DOCKER_HOST, tmp_path, sticker_root=tmp_path), task, known_secret
    )
    assert not outcome.succeeded
    assert "compose pull failed" in (outcome.error or "")
    assert project_containers(engine, project) == {}


# --- SSH executor --------------------------------------------------------------------------


def test_ssh_deploy_writes_the_sticker_remotely(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    name, port = cleanup.name(), free_port()
    executor = SshExecutor(ssh_connection(), no_secrets, sticker_root=tmp_path / "remote")
    task = make_task(
        [http_spec(name, images.repository, images.v1, port)],
        target_type="ssh_remote",
        sticker_path="/srv/stella/sticker.json",
    )

    outcome, lines = run(executor, task)

    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v1}
    assert lines[0].startswith(f"connected to {SSH_USER}@{SSH_HOST}:{SSH_PORT}")
    assert {"connect", "pull", "health", "total"} <= outcome.timings.keys()
    assert any("engine unix:///tmp/stella-ssh-" in line for line in lines)  # the tunnel
    assert any(f"written to {SSH_HOST}:{SSH_PORT}:{tmp_path}" in line for line in lines)  # sftp
    sticker = tmp_path / "remote" / "srv" / "stella" / "sticker.json"
    assert json.loads(sticker.read_text()) == task.sticker
    assert f"{images.repository}@{images.v1}" in repo_digests(engine, container(engine, name))
    observed = {c.name: c for c in executor.inventory()}
    assert observed[name].digest_for(images.repository) == images.v1


def test_ssh_compose_mode_runs_compose_through_the_tunnel(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    project = cleanup.project()
    connection = ssh_connection(mode="compose")
    executor = SshExecutor(
        connection, no_secrets, sticker_root=tmp_path / "remote", work_dir=tmp_path / "compose"
    )
    specs = compose_specs(images, project, images.v2, (free_port(), free_port()))
    task = compose_task(specs, project, "2.0.0")

    outcome, lines = run(executor, task, known_secret)

    assert outcome.succeeded, outcome.error
    assert outcome.deployed == {"api": images.v2, "web": images.v2}
    assert any("engine unix:///tmp/stella-ssh-" in line for line in lines)  # the tunnel
    assert any("up -d --remove-orphans" in line for line in lines)
    assert set(project_containers(engine, project)) == {"api", "web"}
    sticker = tmp_path / "remote" / DEFAULT_STICKER_PATH.lstrip("/")
    assert json.loads(sticker.read_text()) == task.sticker
    assert not [line for line in lines if SECRET_VALUE in line]


def test_ssh_refuses_an_untrusted_host_key_and_reports_connection_problems(
    engine: docker.DockerClient, images: Images, cleanup: Cleanup, tmp_path: Path
) -> None:
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[{SSH_HOST}]:{SSH_PORT} {impostor}")
    executor = SshExecutor(ssh_connection(str(known_hosts)), no_secrets, sticker_root=tmp_path)
    name = cleanup.name()

    outcome, _ = run(
        executor, make_task([http_spec(name, images.repository, images.v1, free_port())])
    )

    assert not outcome.succeeded
    assert outcome.error == (
        f"host key of {SSH_HOST}:{SSH_PORT} is not trusted (known_hosts {known_hosts}); "
        "refusing to connect"
    )
    assert container(engine, name) is None
    with pytest.raises(ExecutorError, match="is not trusted"):
        executor.inventory()
    with pytest.raises(ExecutorError, match="known_hosts is required"):
        SshExecutor({**ssh_connection(), "known_hosts": ""}, no_secrets)

    absent = SshExecutor(ssh_connection(str(tmp_path / "absent")), no_secrets)
    outcome, _ = run(absent, make_task([http_spec(name, images.repository, images.v1, 1)]))
    assert outcome.error == (
        f"known_hosts file {tmp_path / 'absent'} does not exist; host keys are always checked"
    )
    closed = SshExecutor({**ssh_connection(), "port": free_port()}, no_secrets)
    outcome, _ = run(closed, make_task([http_spec(name, images.repository, images.v1, 1)]))
    assert (outcome.error or "").startswith(f"cannot connect to {SSH_HOST}:")
    assert container(engine, name) is None


def test_executor_for_picks_the_executor_by_target_type(tmp_path: Path) -> None:
    assert isinstance(executor_for("docker_host", DOCKER_HOST), DockerExecutor)
    assert isinstance(executor_for("compose_host", DOCKER_HOST, work_dir=tmp_path), ComposeExecutor)
    with pytest.raises(ExecutorError, match="no executor for target type"):
        executor_for("kubernetes", DOCKER_HOST)


def test_an_unreachable_engine_is_a_clean_failure(tmp_path: Path) -> None:
    absent = f"unix://{tmp_path}/docker.sock"
    task = make_task([http_spec("t-none", f"{REGISTRY}/app/none", "sha256:" + "a" * 64, 1)])
    outcome, lines = run(DockerExecutor(absent), task)
    assert (
        outcome.error
        == f"cannot reach the Docker engine: socket {tmp_path}/docker.sock does not exist"
    )
    assert lines[-1] == f"deployment failed: {outcome.error}"
    with pytest.raises(TargetUnreachable):
        ComposeExecutor(absent, tmp_path).inventory()
