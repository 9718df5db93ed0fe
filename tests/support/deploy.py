"""Deployment scenarios against real components: runnable images in the loopback registry, a
live server with a fast heartbeat, agents as real `stella agent run` processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import REGISTRY, create_database, drop_database, free_port, service_missing
from tests.support.live import STELLA, LiveServer, start_server

BASE_IMAGE = os.environ.get("TESTENV_BASE_IMAGE", "local/busybox:1")
DOCKER_HOST = os.environ.get("TESTENV_DOCKER_HOST", "unix:///tmp/stella-testenv/docker.sock")
SSH_KEY = os.environ.get("TESTENV_SSH_KEY", "/tmp/stella-testenv/ssh/client_ed25519")
SSH_KNOWN_HOSTS = os.environ.get("TESTENV_SSH_KNOWN_HOSTS", "/tmp/stella-testenv/ssh/known_hosts")
SSH_PORT = int(os.environ.get("TESTENV_SSH_PORT", "2222"))
FAST = {
    # 3 missed heartbeats = offline: 6 s keeps fault tests quick and a loaded machine calm
    "STELLA_AGENT_HEARTBEAT_SECONDS": "2",
    "STELLA_WORKER_POLL_SECONDS": "0.1",
    "STELLA_WORKER_LEASE_SECONDS": "5",
    "STELLA_DRIFT_INTERVAL_SECONDS": "2",
    "STELLA_SECRET_DIRS": str(Path(SSH_KEY).parent),
}


def docker_client() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=DOCKER_HOST, timeout=60)
        client.ping()
    except docker.errors.DockerException:
        service_missing(f"the test Docker engine at {DOCKER_HOST}")
        raise
    return client


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args],
        env=os.environ | {"DOCKER_HOST": DOCKER_HOST},
        capture_output=True,
        text=True,
        timeout=120,
        check=check,
    )


@dataclass(frozen=True)
class PushedImage:
    repository: str  # 127.0.0.1:5000/app/…
    tag: str
    digest: str
    content: str  # what GET / answers


def push_web_image(
    repository: str, tag: str, content: str, tmp: Path, pages: dict[str, str] | None = None
) -> PushedImage:
    """A busybox httpd image whose index.html says `content` (plus `pages`), pushed by tag."""
    folder = tmp / f"img-{tag}-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    (folder / "index.html").write_text(content)
    for name, text in (pages or {}).items():
        (folder / name).write_text(text)
    (folder / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nCOPY . /www/\n")
    reference = f"{REGISTRY}/{repository}:{tag}"
    docker_cli("build", "-q", "-t", reference, str(folder))
    docker_cli("push", reference)
    inspected = docker_client().images.get(reference).attrs["RepoDigests"]
    digest = next(d.split("@")[1] for d in inspected if d.startswith(f"{REGISTRY}/{repository}@"))
    return PushedImage(f"{REGISTRY}/{repository}", tag, digest, content)


def web_component(name: str, repository: str) -> dict:
    """A component serving /www on ${PORT} (each target sets its own port)."""
    return {
        "name": name,
        "repository": repository,
        "runtime": {
            "command": ["httpd", "-f", "-p", "127.0.0.1:${PORT}", "-h", "/www"],
            "environment": {"PORT": "18080"},
            "healthcheck": {
                "http": "http://127.0.0.1:${PORT}/",
                "interval": "200ms",
                "retries": 50,
            },
        },
    }


def http_text(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/", timeout=5).text


@dataclass
class RunningAgent:
    name: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


def join_token(live: LiveServer, environment: str, capabilities: str = "docker,compose") -> str:
    result = live.cli(
        "agent", "token", "create", "--env", environment, "--capabilities", capabilities, check=True
    )
    return result.stdout.strip()


def start_agent(
    live: LiveServer,
    name: str,
    environment: str,
    tmp: Path,
    capabilities: str = "docker,compose",
    token: str | None = None,
) -> RunningAgent:
    """`stella agent run` enrolled for `environment` (with a new join token unless given);
    returns once the server sees it online."""
    data_dir = tmp / f"agent-{name}"
    log = tmp / f"agent-{name}.log"
    token = token or join_token(live, environment, capabilities)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                STELLA,
                "agent",
                "run",
                "--server",
                live.url,
                "--join-token",
                token,
                "--name",
                name,
                "--data-dir",
                str(data_dir),
                "--docker-host",
                DOCKER_HOST,
            ],
            env=os.environ | {"STELLA_LOG_LEVEL": "info"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    agent = RunningAgent(name, process, data_dir, log)
    wait_for(lambda: agent_state(live, name) == "online", 30, f"agent {name} online", log)
    return agent


def agent_state(live: LiveServer, name: str) -> str | None:
    with live.api() as api:
        response = api.get(f"/agents/{name}")
    return response.json()["state"] if response.status_code == 200 else None


def wait_for(condition, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tail}")


def promotion_state(live: LiveServer, promotion_id: str) -> str:
    with live.api() as api:
        return api.get(f"/promotions/{promotion_id}").json()["state"]


def wait_settled(live: LiveServer, promotion_id: str, timeout: float = 90) -> str:
    """Wait until the promotion left deploying/approved; return its state."""
    final = {
        "deployed",
        "failed",
        "rolled_back",
        "blocked",
        "rejected",
        "cancelled",
        "awaiting_approval",
    }
    wait_for(
        lambda: promotion_state(live, promotion_id) in final,
        timeout,
        f"promotion {promotion_id} to settle",
        live.log,
    )
    return promotion_state(live, promotion_id)


def remove_containers(*names: str) -> None:
    client = docker_client()
    for name in names:
        for candidate in (name, f"{name}.stella-previous"):
            with contextlib.suppress(docker.errors.NotFound):
                client.containers.get(candidate).remove(force=True)


@contextlib.contextmanager
def deploy_server(
    kind: str, tmp: Path, extra_env: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """`stella server` with the FAST agent timings (and `extra_env`), on a fresh database of
    `kind` (its URL in `server.database_url`), stopped and dropped afterwards."""
    docker_client()
    database = create_database(kind, tmp)
    server = start_server(
        [STELLA, "server"],
        tmp / "home",
        free_port(),
        database.url,
        extra_env=FAST | (extra_env or {}),
    )
    server.database_url = database.url
    try:
        yield server
    finally:
        server.stop()
        drop_database(database)
