"""Deployments through real agents: orchestration overhead, an Ansible peer figure, fan-out,
100 deployments at once and the control plane's cost of 10,000 heartbeating agents.

Every case runs real processes against the test Docker engine (DOCKER_HOST of scripts/testenv,
private, loopback only) and the loopback registry: a `stella server` (API, embedded worker
and the mutual-TLS agent listener) on a fresh migrated database and `stella agent run`
processes enrolled with join tokens. The image is a busybox `httpd` serving one page, built
from TESTENV_BASE_IMAGE and pushed once; every deployment pins it by digest. Containers run
with `--network host --init`; every container this benchmark creates carries its run's name
prefix and is removed at the end.

1. Overhead: one environment (gates ["previous_environment"]), one docker_host target, one
   agent with `--heartbeat 1`. Per iteration a new release (same digest) is promoted through
   the API and the promotion polled every 20 ms until `deployed`; side by side, alternating
   the order, the same container is deployed directly with the docker CLI (`docker pull
   repo@digest`, `docker run -d`, GET / every 20 ms until 200) and with Ansible's
   `community.docker.docker_container` (then the same GET loop; Ansible comes from
   bench/requirements-ansible.txt in its own venv, created when missing). Before every
   deployment the container is removed and the image deleted (`docker rmi`), so all three
   pull. Where the time goes comes from the records: promotion events, the run and its step,
   the deployment job and the agent's phase timings. Server settings: PROFILES.
2. Fan-out: one release to FANOUT_TARGETS docker_host targets (own container prefix and PORT
   each), parallelism FANOUT_TARGETS, served by 1 and by 4 agents.
3. Many at once: one environment with MANY_TARGETS targets at parallelism MANY_TARGETS (one
   promotion, MANY_TARGETS deployment jobs at once), MANY_AGENTS agents; bounded by
   MANY_BUDGET.
4. Heartbeats: HB_AGENTS agents (rows inserted through the repositories, one certificate of
   the server's agent CA each) in HB_ENVIRONMENTS environments, each pinned to its own
   docker_host target; a separate client process sends their heartbeats over mutual TLS at
   HB_AGENTS / HB_INTERVAL per second, a new TLS connection per heartbeat (as a real agent
   does: uvicorn closes idle connections after 5 s, agents beat every 30 s), at most
   HB_IN_FLIGHT at a time, for HB_SECONDS; then at 1/HB_LOW_DIVISOR of that rate. Measured:
   the server process's CPU seconds (/proc/<pid>/stat; on PostgreSQL also its backends),
   heartbeat latency, agents the server declared offline. Then one agent's heartbeats one
   after the other (new connection each, or kept alive), the service calls alone in this
   process, and LP_AGENTS agents holding idle long polls (`tasks/next?wait=20`): the cost of
   agents that merely wait for work.

Run: .venv/bin/python -m bench.bench_deployments (from the repository root; `make bench`
does). `--only overhead|fanout|many|heartbeats` and `--database sqlite|postgresql` select
cases; `--iterations N` changes the overhead case's N.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import select as select_io
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from tests.conftest import TestDatabase, create_database, drop_database, free_port
from tests.support.deploy import BASE_IMAGE, DOCKER_HOST, push_web_image, web_component
from tests.support.live import STELLA, LiveServer, start_server

from bench.bench_workflows import source_commit
from bench.common import (
    RESULTS_DIR,
    ROOT,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    require_loopback,
    write_result,
)
from stella.api.agent_app import POLL_SECONDS as AGENT_POLL_SECONDS
from stella.services.deploy_step import POLL_SECONDS as DEPLOY_STEP_POLL_SECONDS

DATABASES = ("sqlite", "postgresql")
PARTS = ("overhead", "fanout", "many", "heartbeats")
TARGET_OVERHEAD_S = 0.5  # our target for orchestration overhead
SPEC_OVERHEAD_S = 10.0  # what the specification allows

# server settings (environment variables of `stella server`)
PROFILES: dict[str, dict[str, str]] = {
    # the product's defaults: worker poll 0.5 s, lease 30 s, so the worker's housekeeping
    # (which moves a promotion from deploying to deployed) runs every 5 s
    "defaults": {},
    # housekeeping every lease / 2 = 0.25 s; too short a lease under load (see "tuned")
    "fast": {"STELLA_WORKER_POLL_SECONDS": "0.05", "STELLA_WORKER_LEASE_SECONDS": "0.5"},
    # housekeeping every 1 s; with 0.5 s the deploy step lost its lease with 100 targets
    "tuned": {"STELLA_WORKER_POLL_SECONDS": "0.05", "STELLA_WORKER_LEASE_SECONDS": "2"},
}
PRODUCT_DEFAULTS = {"STELLA_WORKER_POLL_SECONDS": "0.5", "STELLA_WORKER_LEASE_SECONDS": "30"}
OVERHEAD_CASES = (("sqlite", "defaults"), ("sqlite", "fast"), ("postgresql", "fast"))
ITERATIONS = 10  # measured deployments per method and case (after one unmeasured each)
CLIENT_POLL = 0.02  # the benchmark polls the promotion / the page this often
DEPLOY_BUDGET = 120.0  # seconds for one deployment
AGENT_HEARTBEAT = "1"  # `stella agent run --heartbeat` in the overhead case

FANOUT_TARGETS = 20
FANOUT_AGENTS = (1, 4)
FANOUT_REPEATS = 2
FANOUT_DATABASES = ("sqlite", "postgresql")
FANOUT_BUDGET = 300.0

MANY_TARGETS = 100
MANY_AGENTS = 10
MANY_DATABASES = ("sqlite",)
MANY_BUDGET = 600.0  # give up after 10 minutes

HB_AGENTS = 10_000
HB_ENVIRONMENTS = 100
HB_INTERVAL = 30.0  # seconds between two heartbeats of one agent
HB_WARMUP = 10.0  # seconds sent but not measured
HB_SECONDS = 60.0  # measured
HB_IN_FLIGHT = 64  # client connections at once
HB_DATABASES = ("sqlite", "postgresql")
HB_LOW_DIVISOR = 30  # the low-rate phase: 1/30 of the agents (and of the rate)
HB_LOW_SECONDS = 30.0  # measured at the low rate
HB_SERIAL = 300  # heartbeats one after the other, one agent
LONG_POLL_DB_POLL = AGENT_POLL_SECONDS  # a waiting long poll looks this often without a wake-up
LP_AGENTS = (50, 200)  # waiting agents; the smaller count leaves the server unsaturated
LP_WAIT = 20  # the agents' long-poll wait (the agent's default)
LP_WARMUP = 5.0
LP_SECONDS = 20.0
CLIENT_SETUP_BUDGET = 180.0
IDLE_SECONDS = 10.0  # the idle server's CPU is measured this long before the load

ANSIBLE_VENV = Path(tempfile.gettempdir()) / "stella-bench-ansible"
ANSIBLE_REQUIREMENTS = ROOT / "bench" / "requirements-ansible.txt"
ANSIBLE_COLLECTION = "4.8.5"  # community.docker, bundled in the pinned `ansible` package
ANSIBLE_INSTALL_BUDGET = 600
GALAXY_TIMEOUT = 60

COMMAND_TIMEOUT = 120  # seconds, any docker / ansible command
FINAL_STATES = {
    "deployed",
    "failed",
    "rolled_back",
    "blocked",
    "rejected",
    "cancelled",
    "awaiting_approval",
}
RUN = uuid.uuid4().hex[:6]  # this benchmark run's container names start with PREFIX
PREFIX = f"bench-dep-{RUN}-"
TICK = os.sysconf("SC_CLK_TCK")
DIGEST = "sha256:" + "0" * 64
INVENTORY = [  # what a simulated agent reports: the one container on its host
    {
        "name": "web",
        "image": f"127.0.0.1:5000/app/web@{DIGEST}",
        "digests": [f"127.0.0.1:5000/app/web@{DIGEST}"],
        "state": "running",
        "labels": {"org.stellaops.release": "web", "org.stellaops.version": "1.0.0"},
    }
]


# --- small helpers --------------------------------------------------------------------------


def docker(*args: str, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> str:
    """The docker CLI against the test engine; returns stdout."""
    result = subprocess.run(
        ["docker", *args],
        env=os.environ | {"DOCKER_HOST": DOCKER_HOST},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        msg = f"docker {' '.join(args)} failed: {result.stderr.strip()[:500]}"
        raise RuntimeError(msg)
    return result.stdout


def image_present(reference: str) -> bool:
    return bool(docker("image", "ls", "-q", reference, check=False).strip())


def forget_image(reference: str) -> None:
    """Delete the image from the engine so that the next deployment pulls it."""
    docker("rmi", "-f", reference, check=False)
    if image_present(reference):
        msg = f"{reference} is still present after docker rmi"
        raise RuntimeError(msg)


def remove_containers(*names: str) -> None:
    """Remove these containers (and their `.stella-previous` leftovers), if they exist."""
    wanted = [n for name in names for n in (name, f"{name}.stella-previous")]
    if wanted:
        docker("rm", "-f", *wanted, check=False)


def remove_run_containers() -> int:
    """Every container of this benchmark run."""
    ids = docker("ps", "-aq", "--filter", f"name={PREFIX}", check=False).split()
    if ids:
        docker("rm", "-f", *ids, check=False)
    return len(ids)


def wait_http_200(port: int, budget: float = 30.0) -> int:
    """GET http://127.0.0.1:port/ every CLIENT_POLL s until 200; returns the number of tries."""
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + budget
    with httpx.Client(timeout=2, trust_env=False) as client:
        for attempt in range(1, int(budget / CLIENT_POLL) + 2):
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return attempt
            if time.monotonic() > deadline:
                break
            time.sleep(CLIENT_POLL)
    msg = f"{url} did not answer 200 within {budget:g}s"
    raise RuntimeError(msg)


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    for _ in range(count * 5):
        port = free_port()
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    msg = f"could not find {count} free ports"
    raise RuntimeError(msg)


def percentiles(values: list[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """Count, median, p90, p99, min, max and mean of `values` (times `scale`)."""
    data = sorted(v * scale for v in values)
    if not data:
        return {"count": 0}
    result: dict[str, Any] = {
        "count": len(data),
        "p50": round(statistics.median(data), digits),
        "min": round(data[0], digits),
        "max": round(data[-1], digits),
        "mean": round(statistics.fmean(data), digits),
    }
    if len(data) >= 2:
        cuts = statistics.quantiles(data, n=100, method="inclusive")
        result |= {"p90": round(cuts[89], digits), "p99": round(cuts[98], digits)}
    else:
        result |= {"p90": result["p50"], "p99": result["p50"]}
    return result


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        msg = f"{what}: HTTP {response.status_code} {response.text[:500]}"
        raise RuntimeError(msg)
    return dict(response.json())


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- processes ------------------------------------------------------------------------------


@dataclass
class Stack:
    """A fresh migrated database and a `stella server` (API, embedded worker, agent listener)."""

    kind: str
    database: TestDatabase
    server: LiveServer
    api: httpx.Client
    workdir: Path
    agent_port: int
    settings: dict[str, str]
    version: str
    db_settings: str
    agents: list[AgentProcess] = field(default_factory=list)

    def labels(self) -> dict[str, Any]:
        return {
            "database": self.kind,
            "database_version": self.version,
            "database_settings": self.db_settings,
        }


@dataclass
class AgentProcess:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def _clean_environment() -> None:
    """Settings come from this benchmark only, not from the calling shell."""
    for name in [n for n in os.environ if n.startswith("STELLA_")]:
        del os.environ[name]


@contextmanager
def stack(kind: str, settings: dict[str, str]) -> Iterator[Stack]:
    """Everything is stopped and the database dropped on the way out, also on errors."""
    with tempfile.TemporaryDirectory(prefix=f"stella-bench-dep-{kind}-") as tmp:
        workdir = Path(tmp)
        database = create_database(kind, workdir, migrate=True)
        server = None
        api = None
        s = None
        agent_port = free_port()
        try:
            server = start_server(
                [STELLA, "server"],
                workdir / "home",
                free_port(),
                database.url,
                extra_env=settings
                | {"STELLA_AGENT_LISTEN": f"127.0.0.1:{agent_port}", "STELLA_LOG_LEVEL": "warning"},
            )
            api = api_client(server.url, server.token)
            s = Stack(
                kind,
                database,
                server,
                api,
                workdir,
                agent_port,
                settings,
                database_version(database.engine),
                database_settings(database.engine),
            )
            yield s
        finally:
            for agent in s.agents if s else []:
                agent.stop()
            if api is not None:
                api.close()
            if server is not None:
                server.stop()
            drop_database(database)


def start_agents(
    s: Stack, environment: str, names: list[str], heartbeat: str | None = None
) -> list[AgentProcess]:
    """`stella agent run` per name, enrolled for `environment`; returns once all are online."""
    started = []
    for name in names:
        token = expect(
            s.api.post(
                "/agents/join-tokens",
                json={"environment": environment, "capabilities": ["docker"], "ttl": "1h"},
            ),
            201,
            "join token",
        )["token"]
        log_path = s.workdir / f"agent-{name}.log"
        argv = [
            STELLA,
            "agent",
            "run",
            "--server",
            s.server.url,
            "--join-token",
            token,
            "--name",
            name,
            "--data-dir",
            str(s.workdir / f"agent-{name}"),
            "--docker-host",
            DOCKER_HOST,
        ]
        if heartbeat is not None:
            argv += ["--heartbeat", heartbeat]
        with log_path.open("wb") as out:
            process = subprocess.Popen(
                argv,
                env=os.environ | {"STELLA_LOG_LEVEL": "warning"},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        agent = AgentProcess(name, process, log_path)
        s.agents.append(agent)
        started.append(agent)
    deadline = time.monotonic() + 60
    for agent in started:
        for _ in range(600):
            if agent.process.poll() is not None:
                msg = f"agent {agent.name} exited: {agent.log.read_text()[-1500:]}"
                raise RuntimeError(msg)
            answer = s.api.get(f"/agents/{agent.name}")
            if answer.status_code == 200 and answer.json()["state"] == "online":
                break
            if time.monotonic() > deadline:
                msg = f"agent {agent.name} not online after 60s: {agent.log.read_text()[-1500:]}"
                raise RuntimeError(msg)
            time.sleep(0.1)
    return started


def stop_agents(s: Stack, agents: list[AgentProcess]) -> None:
    for agent in agents:
        agent.stop()
        s.agents.remove(agent)


# --- the estate -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    repository: str
    digest: str

    @property
    def reference(self) -> str:
        return f"{self.repository}@{self.digest}"


def push_image(workdir: Path) -> Image:
    """The busybox httpd image, pushed by tag; the local tag is removed again so that only
    pulls by digest bring the image back."""
    pushed = push_web_image(f"app/bench-dep-{RUN}", "v1", f"bench {RUN}\n", workdir)
    docker("rmi", f"{pushed.repository}:{pushed.tag}", check=False)
    image = Image(pushed.repository, pushed.digest)
    forget_image(image.reference)
    return image


def create_environment(
    s: Stack, slug: str, parallelism: int = 5, gates: list[str] | None = None
) -> None:
    """An environment after all others (promotion orders are unique): a promotion into it
    with the `previous_environment` gate needs the release in the one before, so only the
    overhead case's first environment has that gate; the others only `freeze_window` (no
    windows: it passes; an empty list would mean the default gates)."""
    order = len(s.api.get("/environments", params={"limit": 500}).json()["items"]) + 1
    expect(
        s.api.post(
            "/environments",
            json={
                "name": slug,
                "slug": slug,
                "promotion_order": order,
                "gates": gates or ["freeze_window"],
                "deployment": {"parallelism": parallelism, "task_timeout_seconds": 300},
            },
        ),
        201,
        f"environment {slug}",
    )


def create_targets(s: Stack, environment: str, prefixes: list[str], ports: list[int]) -> None:
    for index, (prefix, port) in enumerate(zip(prefixes, ports, strict=True)):
        expect(
            s.api.post(
                "/targets",
                json={
                    "name": f"{environment}-{index:03d}",
                    "environment": environment,
                    "type": "docker_host",
                    "connection": {
                        "container_name_prefix": prefix,
                        "environment": {"PORT": str(port)},
                        "sticker_path": str(s.workdir / f"sticker-{environment}-{index}.json"),
                    },
                },
            ),
            201,
            f"target {environment}-{index}",
        )


def create_component(s: Stack, image: Image) -> dict[str, Any]:
    component = web_component("web", image.repository)
    expect(s.api.post("/components", json=component), 201, "component")
    return component


def create_release(s: Stack, version: str, image: Image) -> None:
    expect(
        s.api.post(
            "/releases",
            json={"name": "web", "version": version, "components": {"web": image.reference}},
        ),
        201,
        f"release {version}",
    )


def promote_and_wait(
    s: Stack, version: str, environment: str, budget: float = DEPLOY_BUDGET
) -> dict[str, Any]:
    """POST /promotions, then GET it every CLIENT_POLL s until it settles; client timings."""
    started_wall = time.time()
    started = time.perf_counter()
    response = s.api.post(
        "/promotions", json={"release_id": f"web@{version}", "target_environment": environment}
    )
    answered = time.perf_counter()
    promotion = expect(response, 201, f"promotion of {version}")
    deadline = time.monotonic() + budget
    polls = 0
    state = promotion["state"]
    while state not in FINAL_STATES and polls < budget / CLIENT_POLL + 10:
        if time.monotonic() > deadline:
            break
        time.sleep(CLIENT_POLL)
        polls += 1
        state = s.api.get(f"/promotions/{promotion['id']}").json()["state"]
    seen = time.perf_counter()
    return {
        "promotion_id": promotion["id"],
        "state": state,
        "seconds": seen - started,
        "post_seconds": answered - started,
        "started_wall": started_wall,
        "seen_wall": started_wall + (seen - started),
        "polls": polls,
    }


def records(s: Stack, promotion_id: str) -> dict[str, Any]:
    """What the control plane recorded: promotion events, the run with its steps, the jobs."""
    events = s.api.get(f"/promotions/{promotion_id}/events").json()["items"]
    run_id = None
    for event in events:
        found = re.search(r"run ([0-9a-f-]{36})", event.get("reason") or "")
        if event["to"] == "deploying" and found:
            run_id = found.group(1)
    run = s.api.get(f"/workflow-runs/{run_id}").json() if run_id else None
    jobs: list[dict[str, Any]] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"promotion": promotion_id, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = s.api.get("/deployments", params=params).json()
        jobs += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            break
    return {"events": events, "run": run, "jobs": jobs}


def breakdown(client: dict[str, Any], recorded: dict[str, Any]) -> dict[str, float | None]:
    """Where the seconds of one single-target deployment went, from the records (wall clock
    of this machine: server, worker, agent and benchmark share it)."""
    events = {e["to"]: _ts(e["at"]) for e in recorded["events"]}
    run = recorded["run"] or {}
    step = (run.get("steps") or [{}])[0]
    job = recorded["jobs"][0] if len(recorded["jobs"]) == 1 else {}
    timings = (job.get("result") or {}).get("timings") or {}
    t = {
        "post": client["started_wall"],
        "deploying": events.get("deploying"),
        "run_created": _ts(run.get("created_at")),
        "step_started": _ts(step.get("started_at")),
        "job_created": _ts(job.get("created_at")),
        "job_started": _ts(job.get("started_at")),
        "job_finished": _ts(job.get("finished_at")),
        "step_finished": _ts(step.get("finished_at")),
        "run_finished": _ts(run.get("finished_at")),
        "deployed": events.get("deployed"),
        "seen": client["seen_wall"],
    }

    def gap(a: str, b: str) -> float | None:
        return None if t[a] is None or t[b] is None else round(t[b] - t[a], 4)  # type: ignore[operator]

    executed = gap("job_started", "job_finished")
    phases = {k: timings.get(k) for k in ("pull", "verify", "start", "health")}
    return {
        "request_gates_and_run_start": gap("post", "deploying"),
        "worker_claims_deploy_step": gap("run_created", "step_started"),
        "deploy_step_creates_job": gap("step_started", "job_created"),
        "agent_claims_job": gap("job_created", "job_started"),
        "agent_pull": phases["pull"],
        "agent_verify": phases["verify"],
        "agent_start_container": phases["start"],
        "agent_health": phases["health"],
        "agent_other": (
            round(executed - timings["total"], 4)
            if executed is not None and "total" in timings
            else None
        ),
        "agent_total": timings.get("total"),
        "deploy_step_sees_result": gap("job_finished", "step_finished"),
        "run_finishes": gap("step_finished", "run_finished"),
        "promotion_settled": gap("run_finished", "deployed"),
        "client_sees_deployed": gap("deployed", "seen"),
    }


# --- direct and Ansible deployments ---------------------------------------------------------


def deploy_direct(image: Image, name: str, port: int) -> dict[str, Any]:
    """`docker pull repo@digest`, `docker run -d`, then GET / every CLIENT_POLL s until 200."""
    started = time.perf_counter()
    docker("pull", "-q", image.reference)
    pulled = time.perf_counter()
    docker(
        "run",
        "-d",
        "--init",
        "--network",
        "host",
        "--name",
        name,
        image.reference,
        "httpd",
        "-f",
        "-p",
        f"127.0.0.1:{port}",
        "-h",
        "/www",
    )
    running = time.perf_counter()
    tries = wait_http_200(port)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "pull": round(pulled - started, 4),
        "run": round(running - pulled, 4),
        "first_200": round(done - running, 4),
        "http_tries": tries,
    }


PLAYBOOK = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: deploy the web container
      community.docker.docker_container:
        docker_host: "{{ docker_host }}"
        name: "{{ container_name }}"
        image: "{{ image }}"
        command: ["httpd", "-f", "-p", "127.0.0.1:{{ port }}", "-h", "/www"]
        network_mode: host
        init: true
        pull: missing
        state: started
"""


@dataclass
class Ansible:
    """A pinned Ansible in its own venv (never the project's), or why there is none."""

    playbook: Path | None = None
    versions: dict[str, str] = field(default_factory=dict)
    not_measured: str | None = None
    install_seconds: float | None = None
    galaxy: str | None = None

    def env(self, workdir: Path) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")} | {
            "ANSIBLE_HOME": str(workdir / "ansible-home"),
            "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
            "ANSIBLE_PYTHON_INTERPRETER": str(ANSIBLE_VENV / "bin" / "python"),
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        }

    def deploy(self, workdir: Path, image: Image, name: str, port: int) -> dict[str, Any]:
        assert self.playbook is not None
        started = time.perf_counter()
        result = subprocess.run(
            [
                str(ANSIBLE_VENV / "bin" / "ansible-playbook"),
                "-i",
                "localhost,",
                str(self.playbook),
                "-e",
                json.dumps(
                    {
                        "docker_host": DOCKER_HOST,
                        "container_name": name,
                        "image": image.reference,
                        "port": port,
                    }
                ),
            ],
            env=self.env(workdir),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            cwd=workdir,
        )
        finished = time.perf_counter()
        if result.returncode != 0:
            msg = f"ansible-playbook failed: {(result.stdout + result.stderr)[-1500:]}"
            raise RuntimeError(msg)
        tries = wait_http_200(port)
        done = time.perf_counter()
        return {
            "seconds": done - started,
            "playbook": round(finished - started, 4),
            "first_200": round(done - finished, 4),
            "http_tries": tries,
        }


def _requirements_hash() -> str:
    return hashlib.sha256(ANSIBLE_REQUIREMENTS.read_bytes()).hexdigest()


def prepare_ansible(workdir: Path) -> Ansible:
    """Create the Ansible venv from bench/requirements-ansible.txt when it is missing or was
    made from other pins (bounded); check the bundled community.docker collection."""
    marker = ANSIBLE_VENV / ".requirements-sha256"
    ansible = Ansible()
    try:
        if not marker.exists() or marker.read_text().strip() != _requirements_hash():
            log(f"creating {ANSIBLE_VENV} from {ANSIBLE_REQUIREMENTS.relative_to(ROOT)}")
            shutil.rmtree(ANSIBLE_VENV, ignore_errors=True)
            started = time.perf_counter()
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run(
                [base, "-m", "venv", str(ANSIBLE_VENV)],
                check=True,
                timeout=120,
                capture_output=True,
            )
            installed = subprocess.run(
                [
                    str(ANSIBLE_VENV / "bin" / "pip"),
                    "install",
                    "--no-input",
                    "--quiet",
                    "-r",
                    str(ANSIBLE_REQUIREMENTS),
                ],
                capture_output=True,
                text=True,
                timeout=ANSIBLE_INSTALL_BUDGET,
                check=False,
            )
            if installed.returncode != 0:
                ansible.not_measured = (
                    "installing bench/requirements-ansible.txt failed: "
                    + (installed.stderr.strip().splitlines() or ["?"])[-1][:300]
                )
                return ansible
            marker.write_text(_requirements_hash())
            ansible.install_seconds = round(time.perf_counter() - started, 1)
        listed = subprocess.run(
            [
                str(ANSIBLE_VENV / "bin" / "ansible-galaxy"),
                "collection",
                "list",
                "community.docker",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=ansible.env(workdir),
        )
        found = re.search(r"community\.docker\s+(\S+)", listed.stdout)
        collection = found.group(1) if found else None
        if collection != ANSIBLE_COLLECTION:
            # not bundled in the expected version: try Ansible Galaxy, bounded
            galaxy = subprocess.run(
                [
                    str(ANSIBLE_VENV / "bin" / "ansible-galaxy"),
                    "collection",
                    "install",
                    f"community.docker:=={ANSIBLE_COLLECTION}",
                ],
                capture_output=True,
                text=True,
                timeout=GALAXY_TIMEOUT,
                check=False,
                env=ansible.env(workdir),
            )
            ansible.galaxy = "installed" if galaxy.returncode == 0 else "unreachable"
            if galaxy.returncode != 0:
                ansible.not_measured = (
                    f"community.docker {ANSIBLE_COLLECTION} is not bundled (found {collection}) "
                    "and Ansible Galaxy could not be reached"
                )
                return ansible
            collection = ANSIBLE_COLLECTION
        core = subprocess.run(
            [
                str(ANSIBLE_VENV / "bin" / "python"),
                "-c",
                "import ansible; print(ansible.__version__)",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        pins = dict(
            line.split("==", 1)
            for line in ANSIBLE_REQUIREMENTS.read_text().splitlines()
            if "==" in line and not line.startswith("#")
        )
        ansible.versions = {
            "ansible": pins.get("ansible", "?"),
            "ansible-core": core,
            "community.docker": str(collection),
        }
    except (OSError, subprocess.SubprocessError) as exc:
        ansible.not_measured = f"preparing Ansible failed: {type(exc).__name__}: {exc}"[:300]
        return ansible
    ansible.playbook = workdir / "deploy.yml"
    ansible.playbook.write_text(PLAYBOOK)
    return ansible


# --- case 1: overhead -----------------------------------------------------------------------


def bench_overhead(kind: str, profile: str, ansible: Ansible, iterations: int) -> dict[str, Any]:
    settings = PROFILES[profile]
    log(f"overhead, {kind}, {profile} server settings {settings or PRODUCT_DEFAULTS}")
    load_before = load_average()
    with stack(kind, settings) as s:
        image = push_image(s.workdir)
        direct_port, stella_port, ansible_port = free_ports(3)
        stella_prefix = f"{PREFIX}stella-{kind}-{profile}-"
        names = {
            "stella": f"{stella_prefix}web",
            "direct": f"{PREFIX}direct-{kind}-{profile}",
            "ansible": f"{PREFIX}ansible-{kind}-{profile}",
        }
        create_environment(s, "dev", gates=["previous_environment"])
        create_component(s, image)
        create_targets(s, "dev", [stella_prefix], [stella_port])
        start_agents(s, "dev", [f"agent-{RUN}"], heartbeat=AGENT_HEARTBEAT)
        methods: dict[str, Callable[[int], dict[str, Any]]] = {}

        def stella(i: int) -> dict[str, Any]:
            version = f"1.0.{i}"
            create_release(s, version, image)
            client = promote_and_wait(s, version, "dev")
            recorded = records(s, client["promotion_id"])
            if client["state"] != "deployed":  # counted, not measured
                log(f"  promotion of {version} ended {client['state']}")
            return {
                "state": client["state"],
                "error": (recorded["run"] or {}).get("error"),
                "seconds": client["seconds"],
                "post_seconds": round(client["post_seconds"], 4),
                "polls": client["polls"],
                "step_attempts": [
                    st["attempts"] for st in (recorded["run"] or {}).get("steps", [])
                ],
                "breakdown": breakdown(client, recorded),
            }

        methods["stella"] = stella
        methods["direct"] = lambda i: deploy_direct(image, names["direct"], direct_port)
        if ansible.playbook is not None:
            methods["ansible"] = lambda i: ansible.deploy(
                s.workdir, image, names["ansible"], ansible_port
            )
        order = list(methods)
        samples: dict[str, list[dict[str, Any]]] = {m: [] for m in order}
        for i in range(iterations + 1):  # iteration 0 is unmeasured (first workflow, caches)
            rotation = order[i % len(order) :] + order[: i % len(order)]
            for method in rotation:
                remove_containers(names[method])
                forget_image(image.reference)
                sample = methods[method](i) | {"iteration": i}
                if i > 0:
                    samples[method].append(sample)
                remove_containers(names[method])
        forget_image(image.reference)
        labels = s.labels()
        commit_settings = settings or PRODUCT_DEFAULTS
    result: dict[str, Any] = labels | {
        "load_average": {"before": load_before, "after": load_average()},
        "profile": profile,
        "server_settings": commit_settings,
        "iterations": iterations,
        "methods": {},
    }

    def deployed(row: dict[str, Any]) -> bool:
        return row.get("state", "deployed") == "deployed"

    for method, rows in samples.items():
        result["methods"][method] = {
            "seconds": percentiles([r["seconds"] for r in rows if deployed(r)]),
            "failed": sum(1 for r in rows if not deployed(r)),
            "samples": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                for r in rows
            ],
        }
    stella_rows = [r for r in samples["stella"] if deployed(r)]
    keys = list(stella_rows[0]["breakdown"]) if stella_rows else []
    result["methods"]["stella"]["breakdown_p50"] = {
        k: (
            round(statistics.median(vals), 4)
            if (vals := [r["breakdown"][k] for r in stella_rows if r["breakdown"][k] is not None])
            else None
        )
        for k in keys
    }
    direct = result["methods"]["direct"]["seconds"]
    stella_s = result["methods"]["stella"]["seconds"]
    by_iteration = {r["iteration"]: r for r in samples["direct"]}
    pairs = [r["seconds"] - by_iteration[r["iteration"]]["seconds"] for r in stella_rows]
    if not stella_rows:
        msg = f"no promotion deployed: {samples['stella'][:2]}"
        raise RuntimeError(msg[:3000])
    result["overhead_seconds"] = {
        "p50": round(stella_s["p50"] - direct["p50"], 3),
        "p90": round(stella_s["p90"] - direct["p90"], 3),
        "paired_p50": round(statistics.median(pairs), 3),
    }
    if "ansible" in samples:
        ans = result["methods"]["ansible"]["seconds"]
        result["ansible_minus_direct_seconds"] = {
            "p50": round(ans["p50"] - direct["p50"], 3),
            "p90": round(ans["p90"] - direct["p90"], 3),
        }
    over = result["overhead_seconds"]["p50"]
    failed = result["methods"]["stella"]["failed"]
    result["target"] = {
        "spec_seconds": SPEC_OVERHEAD_S,
        "ours_seconds": TARGET_OVERHEAD_S,
        "spec_met": over < SPEC_OVERHEAD_S and not failed,
        "ours_met": over < TARGET_OVERHEAD_S and not failed,
    }
    log(
        f"  stella p50 {stella_s['p50']:.3f}s, direct p50 {direct['p50']:.3f}s, "
        f"overhead p50 {over:.3f}s"
    )
    return result


# --- cases 2 and 3: many targets ------------------------------------------------------------


def job_figures(client: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-job latencies (s): from POST /promotions to the job's result, queueing, execution."""
    finished = [
        _ts(j["finished_at"]) - client["started_wall"]  # type: ignore[operator]
        for j in jobs
        if j["finished_at"]
    ]
    queued = [
        _ts(j["started_at"]) - _ts(j["created_at"])  # type: ignore[operator]
        for j in jobs
        if j["started_at"]
    ]
    executed = [
        _ts(j["finished_at"]) - _ts(j["started_at"])  # type: ignore[operator]
        for j in jobs
        if j["started_at"] and j["finished_at"]
    ]
    agent_total = [
        j["result"]["timings"]["total"]
        for j in jobs
        if (j.get("result") or {}).get("timings", {}).get("total") is not None
    ]
    first_created = min((_ts(j["created_at"]) for j in jobs), default=None)
    last_finished = max((_ts(j["finished_at"]) or 0 for j in jobs), default=None)
    errors: dict[str, int] = {}
    for j in jobs:
        if j["error"]:
            errors[j["error"][:200]] = errors.get(j["error"][:200], 0) + 1
    per_agent: dict[str, int] = {}
    for j in jobs:
        if j["agent_id"]:
            per_agent[j["agent_id"]] = per_agent.get(j["agent_id"], 0) + 1
    return {
        "jobs": len(jobs),
        "succeeded": sum(1 for j in jobs if j["state"] == "succeeded"),
        "states": {
            st: sum(1 for j in jobs if j["state"] == st) for st in {j["state"] for j in jobs}
        },
        "post_to_job_finished_s": percentiles(finished),
        "job_created_to_claimed_s": percentiles(queued),
        "job_claimed_to_finished_s": percentiles(executed),
        "agent_reported_total_s": percentiles(agent_total),
        "first_job_created_to_last_finished_s": (
            round(last_finished - first_created, 3)
            if first_created is not None and last_finished
            else None
        ),
        "jobs_per_agent": sorted(per_agent.values(), reverse=True),
        "job_errors": errors,
    }


def many_targets(
    s: Stack,
    image: Image,
    environment: str,
    targets: int,
    agents: int,
    repeats: int,
    budget: float,
    version_base: int,
) -> dict[str, Any]:
    """One environment of `targets` targets at parallelism `targets`, `agents` agents; each
    repeat promotes a new release after removing every container and the image."""
    prefixes = [f"{PREFIX}{environment}-{n:03d}-" for n in range(targets)]
    create_environment(s, environment, parallelism=targets)
    create_targets(s, environment, prefixes, free_ports(targets))
    started = start_agents(s, environment, [f"{environment}-agent-{n}" for n in range(agents)])
    runs = []
    try:
        for r in range(repeats):
            remove_containers(*(f"{p}web" for p in prefixes))
            forget_image(image.reference)
            version = f"{version_base}.0.{r}"
            create_release(s, version, image)
            log(f"  {environment}: {targets} targets, {agents} agent(s), repeat {r + 1}")
            client = promote_and_wait(s, version, environment, budget)
            recorded = records(s, client["promotion_id"])
            runs.append(
                {
                    "state": client["state"],
                    "seconds": round(client["seconds"], 3),
                    "post_seconds": round(client["post_seconds"], 3),
                    "gave_up": client["state"] not in FINAL_STATES,
                    "run_error": (recorded["run"] or {}).get("error"),
                    "step_attempts": [
                        st["attempts"] for st in (recorded["run"] or {}).get("steps", [])
                    ],
                    "run_created_to_finished_s": (
                        round(
                            _ts(recorded["run"]["finished_at"])  # type: ignore[operator]
                            - _ts(recorded["run"]["created_at"]),
                            3,
                        )
                        if recorded["run"] and recorded["run"]["finished_at"]
                        else None
                    ),
                }
                | job_figures(client, recorded["jobs"])
            )
            log(f"    {client['state']} in {client['seconds']:.2f}s")
    finally:
        remove_containers(*(f"{p}web" for p in prefixes))
        stop_agents(s, started)
    seconds = [r["seconds"] for r in runs if r["state"] == "deployed"]
    return {
        "targets": targets,
        "agents": agents,
        "parallelism": targets,
        "repeats": len(runs),
        "deployed_runs": len(seconds),
        "seconds": percentiles(seconds),
        "runs": runs,
    }


def bench_fanout(kind: str) -> dict[str, Any]:
    log(f"fan-out, {kind}: {FANOUT_TARGETS} targets, {FANOUT_AGENTS} agents")
    settings = PROFILES["tuned"]
    load_before = load_average()
    with stack(kind, settings) as s:
        image = push_image(s.workdir)
        create_component(s, image)
        rows = [
            many_targets(
                s,
                image,
                f"fan{agents}",
                FANOUT_TARGETS,
                agents,
                FANOUT_REPEATS,
                FANOUT_BUDGET,
                version_base=10 + agents,
            )
            for agents in FANOUT_AGENTS
        ]
        forget_image(image.reference)
        labels = s.labels()
    return labels | {
        "server_settings": settings,
        "rows": rows,
        "load_average": {"before": load_before, "after": load_average()},
    }


def bench_many(kind: str) -> dict[str, Any]:
    log(f"many at once, {kind}: {MANY_TARGETS} targets, {MANY_AGENTS} agents")
    settings = PROFILES["tuned"]
    load_before = load_average()
    with stack(kind, settings) as s:
        image = push_image(s.workdir)
        create_component(s, image)
        row = many_targets(
            s, image, "many", MANY_TARGETS, MANY_AGENTS, 1, MANY_BUDGET, version_base=100
        )
        forget_image(image.reference)
        labels = s.labels()
    return (
        labels
        | {
            "server_settings": settings,
            "shape": f"1 environment, {MANY_TARGETS} targets, parallelism {MANY_TARGETS}, "
            f"1 promotion",
            "budget_seconds": MANY_BUDGET,
            "load_average": {"before": load_before, "after": load_average()},
        }
        | row
    )


# --- case 4: heartbeats ---------------------------------------------------------------------


def postgres_backends(database: TestDatabase) -> list[int]:
    """The PostgreSQL backend pids serving this benchmark's database (not this process's)."""
    from sqlalchemy import text

    name = database.url.rsplit("/", 1)[1]
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "select pid from pg_stat_activity where datname = :name and pid <> pg_backend_pid()"
            ),
            {"name": name},
        ).all()
    return [int(r[0]) for r in rows]


class Backends:
    """CPU of the PostgreSQL backends serving the benchmark's database over a window, sampled
    (backends come and go with the server's connection pool): a backend present at the first
    sample counts from there, one that appears later counts from its start. A backend that
    ends between two samples loses its last ≤ 0.25 s. Nothing on SQLite."""

    def __init__(self, s: Stack) -> None:
        self.s = s
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.started = False

    def sample(self) -> None:
        if self.s.kind != "postgresql":
            return
        now = cpu_of(postgres_backends(self.s.database))
        for pid, cpu in now.items():
            if pid not in self.first:
                self.first[pid] = cpu if not self.started else 0.0
            self.last[pid] = cpu
        self.started = True

    def cpu(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def cpu_of(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = cpu_seconds(pid)
    return found


def enrol_simulated_agents(s: Stack, folder: Path) -> dict[str, Any]:
    """HB_AGENTS agents and as many pinned docker_host targets, inserted through the
    repositories, each agent with its own certificate from the server's agent CA."""
    from stella.adapters.db import tables as t
    from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
    from stella.adapters.pki import AgentCA, generate_agent_key_and_csr
    from stella.domain.deployments import Agent, AgentState
    from stella.domain.ids import new_id
    from stella.domain.targets import HealthStatus, Target, TargetState, TargetType

    started = time.perf_counter()
    for n in range(HB_ENVIRONMENTS):
        create_environment(s, f"hb{n:03d}")
    with s.database.engine.connect() as conn:
        rows = conn.execute(select(t.environments.c.id, t.environments.c.tenant_id)).all()
    environments = [(row.id, row.tenant_id) for row in rows]
    ca = AgentCA.load_or_create(s.server.home / "keys")
    key_pem, csr_pem = generate_agent_key_and_csr("simulated")
    folder.mkdir(parents=True)
    (folder / "key.pem").write_text(key_pem)
    (folder / "ca.pem").write_text(ca.ca_cert_pem)
    now = datetime.now(UTC)
    issued_started = time.perf_counter()
    agents = []
    for n in range(HB_AGENTS):
        agent_id = new_id()
        cert = ca.issue_client_certificate(csr_pem, agent_id, timedelta(days=1))
        (folder / f"{n}.pem").write_text(cert.cert_pem)
        env_id, tenant_id = environments[n % len(environments)]
        agents.append(
            Agent(
                id=agent_id,
                tenant_id=tenant_id,
                environment_id=env_id,
                name=f"sim-{n:05d}",
                version="bench",
                capabilities=["docker"],
                labels={},
                state=AgentState.ONLINE,
                last_heartbeat=now,
                cert_serial=cert.serial,
                cert_fingerprint=cert.fingerprint,
                health={},
                created_at=now,
                updated_at=now,
            )
        )
    issue_seconds = time.perf_counter() - issued_started
    with SqlAlchemyUnitOfWork(s.database.engine) as uow:
        for n, agent in enumerate(agents):
            uow.agents.add(agent)
            uow.targets.add(
                Target(
                    id=new_id(),
                    tenant_id=agent.tenant_id,
                    environment_id=agent.environment_id,
                    name=f"host-{n:05d}",
                    type=TargetType.DOCKER_HOST,
                    labels={},
                    connection={"container_name_prefix": f"h{n}-"},
                    agent_id=agent.id,
                    state=TargetState.ACTIVE,
                    health=HealthStatus.UNKNOWN,
                    created_at=now,
                    updated_at=now,
                )
            )
        uow.commit()
    return {
        "agents": HB_AGENTS,
        "environments": HB_ENVIRONMENTS,
        "targets_per_environment": HB_AGENTS // HB_ENVIRONMENTS,
        "certificates_issued_seconds": round(issue_seconds, 1),
        "setup_seconds": round(time.perf_counter() - started, 1),
    }


def _wait_ready(process: subprocess.Popen[bytes], client_log: Path) -> float:
    """The load client prints `ready <epoch seconds>` (its planned start) once set up."""
    assert process.stdout is not None
    deadline = time.monotonic() + CLIENT_SETUP_BUDGET
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select_io.select([process.stdout], [], [], 1.0)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            buffer += chunk
            for line in buffer.splitlines():
                if line.startswith(b"ready "):
                    return float(line.split()[1])
            if not chunk and process.poll() is not None:
                break
        elif process.poll() is not None:
            break
    msg = f"load client not ready: {client_log.read_text()[-2000:]}"
    raise RuntimeError(msg)


def run_load_client(
    s: Stack, config: dict[str, Any], on_ready: Callable[[], object] | None = None
) -> dict[str, Any]:
    """Start the load client process and measure the server's CPU (and PostgreSQL's backends
    serving this database) over [start + warm-up, start + warm-up + seconds], or, without
    `seconds`, from its start until it exits."""
    name = config["name"]
    path = s.workdir / f"client-{name}.json"
    out = s.workdir / f"client-{name}-result.json"
    path.write_text(json.dumps(config | {"result": str(out)}))
    client_log = s.workdir / f"client-{name}.log"
    with client_log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.bench_deployments", "--load-client", str(path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=ROOT,
            start_new_session=True,
        )
    budget = config.get("warmup", 0) + config.get("seconds", 0) + 180
    try:
        start_at = _wait_ready(process, client_log)
        if on_ready is not None:
            on_ready()
        pid = s.server.process.pid
        time.sleep(max(0.0, start_at + config.get("warmup", 0) - time.time()))
        backends = Backends(s)
        before = cpu_seconds(pid)
        client_before = cpu_seconds(process.pid)
        t0 = time.perf_counter()
        client_after = client_before
        end = t0 + config["seconds"] if "seconds" in config else t0 + budget
        for _ in range(int(budget * 4) + 4):  # sample every 0.25 s
            if time.perf_counter() >= end or (
                "seconds" not in config and process.poll() is not None
            ):
                break
            with contextlib.suppress(OSError):
                client_after = cpu_seconds(process.pid)
            backends.sample()
            time.sleep(min(0.25, max(0.0, end - time.perf_counter())))
        backends.sample()
        after = cpu_seconds(pid)
        pg_cpu = backends.cpu()
        pg_pids = list(backends.last)
        elapsed = time.perf_counter() - t0
        process.wait(timeout=budget)
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    if process.returncode != 0:
        msg = f"load client failed ({process.returncode}): {client_log.read_text()[-2000:]}"
        raise RuntimeError(msg)
    result = json.loads(out.read_text())
    server_cpu = after - before
    figures = result | {
        "window_seconds": round(elapsed, 2),
        "server_cpu_seconds": round(server_cpu, 2),
        "server_cpu_percent_of_one_core": round(100 * server_cpu / elapsed, 1),
        "client_cpu_percent_of_one_core": round(100 * (client_after - client_before) / elapsed, 1),
    }
    if s.kind == "postgresql":
        figures |= {
            "postgres_backends": len(pg_pids),
            "postgres_cpu_seconds": round(pg_cpu, 2),
            "postgres_cpu_percent_of_one_core": round(100 * pg_cpu / elapsed, 1),
        }
    ok = result.get("ok") or 0
    if ok:
        figures["server_cpu_ms_per_heartbeat"] = round(1000 * server_cpu / ok, 2)
        if s.kind == "postgresql":
            figures["postgres_cpu_ms_per_heartbeat"] = round(1000 * pg_cpu / ok, 2)
    return figures


def wait_idle(s: Stack, budget: float = 90.0) -> float:
    """Wait until the server uses < 10% of a core over a second (it may still be answering
    what a load client gave up on); returns the seconds waited."""
    started = time.perf_counter()
    pid = s.server.process.pid
    for _ in range(int(budget)):
        before = cpu_seconds(pid)
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.1:
            break
    return round(time.perf_counter() - started, 1)


def reset_heartbeats(s: Stack, marks: dict[str, datetime]) -> None:
    """Every simulated agent online with a heartbeat now: the load client is about to start,
    so an agent the server marks offline afterwards was silent for 90 s during the run, not
    during the set-up. The moment goes into `marks["reset"]`."""
    from sqlalchemy import update

    from stella.adapters.db import tables as t

    marks["reset"] = datetime.now(UTC)
    with s.database.engine.begin() as conn:
        conn.execute(
            update(t.agents)
            .where(t.agents.c.name.like("sim-%"))
            .values(state="online", last_heartbeat=marks["reset"])
        )


def never_answered(s: Stack, since: datetime) -> int:
    """Simulated agents with no heartbeat recorded since `since`."""
    from sqlalchemy import func

    from stella.adapters.db import tables as t

    with s.database.engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(t.agents)
                .where(t.agents.c.name.like("sim-%"), t.agents.c.last_heartbeat <= since)
            ).scalar_one()
        )


def agent_states(s: Stack) -> dict[str, int]:
    from stella.adapters.db import tables as t

    with s.database.engine.connect() as conn:
        rows = conn.execute(select(t.agents.c.state)).all()
    counted: dict[str, int] = {}
    for row in rows:
        counted[row.state] = counted.get(row.state, 0) + 1
    return counted


def heartbeat_service_cost(s: Stack, calls: int = 300) -> dict[str, Any]:
    """The service calls behind one heartbeat, in this process on the same database (no
    HTTP, no TLS): authenticate + heartbeat, for an agent in an environment of
    HB_AGENTS / HB_ENVIRONMENTS pinned targets and for one alone in its environment."""
    from stella.adapters.db import tables as t
    from stella.bootstrap import build_container, utc_now
    from stella.config import Settings
    from stella.domain.deployments import Agent, AgentState, ObservedContainer
    from stella.domain.ids import new_id
    from stella.domain.targets import HealthStatus, Target, TargetState, TargetType
    from stella.services import agents

    create_environment(s, "hb-solo")
    container = build_container(
        Settings(home=s.server.home, database_url=s.database.url), s.database.engine
    )
    with s.database.engine.connect() as conn:
        solo = conn.execute(
            select(t.environments.c.id, t.environments.c.tenant_id).where(
                t.environments.c.slug == "hb-solo"
            )
        ).one()
        crowded = conn.execute(
            select(t.agents.c.id, t.agents.c.cert_serial)
            .where(t.agents.c.name.like("sim-%"))
            .limit(calls)
        ).all()
    now = utc_now()
    lone = Agent(
        new_id(), solo.tenant_id, solo.id, "solo", "bench", ["docker"], {}, AgentState.ONLINE,
        now, "solo", "solo", {}, now, now,
    )  # fmt: skip
    with container.uow() as uow:
        uow.agents.add(lone)
        uow.targets.add(
            Target(
                new_id(), solo.tenant_id, solo.id, "solo-host", TargetType.DOCKER_HOST, {}, {},
                lone.id, TargetState.ACTIVE, HealthStatus.UNKNOWN, now, now,
            )
        )  # fmt: skip
        uow.commit()
    inventory = [ObservedContainer.from_json(c) for c in INVENTORY]

    def measure(ids: list[tuple[uuid.UUID, str]], with_inventory: bool) -> dict[str, Any]:
        durations = []
        cpu = time.process_time()
        for n in range(calls):
            agent_id, serial = ids[n % len(ids)]
            started = time.perf_counter()
            agents.heartbeat(  # authenticates in its own transaction, as the listener calls it
                container.uow,
                utc_now,
                agent_id,
                serial,
                "bench",
                {"status": "healthy"},
                inventory if with_inventory else None,
            )
            durations.append(time.perf_counter() - started)
        return {
            "calls": calls,
            "wall_ms": percentiles(durations, 1000, 2),
            "cpu_ms_per_call": round(1000 * (time.process_time() - cpu) / calls, 2),
        }

    crowd = [(row.id, row.cert_serial) for row in crowded]
    return {
        "note": "heartbeat (authenticates the agent in its transaction), as the listener calls it",
        f"{HB_AGENTS // HB_ENVIRONMENTS}_targets_in_environment": measure(crowd, True),
        f"{HB_AGENTS // HB_ENVIRONMENTS}_targets_in_environment_no_inventory": measure(
            crowd, False
        ),
        "1_target_in_environment": measure([(lone.id, lone.cert_serial)], True),
    }


def bench_heartbeats(kind: str, keep_alive: bool = True) -> dict[str, Any]:
    how = "kept-alive connections" if keep_alive else "a new TLS connection per heartbeat"
    log(f"heartbeats, {kind}: {HB_AGENTS:,} simulated agents every {HB_INTERVAL:g}s, {how}")
    settings: dict[str, str] = {}  # product defaults: heartbeat 30 s, offline after 90 s
    load_before = load_average()
    with stack(kind, settings) as s:
        certs = s.workdir / "certs"
        setup = enrol_simulated_agents(s, certs)
        log(f"  {HB_AGENTS:,} agents enrolled in {setup['setup_seconds']}s")
        common = {"host": "127.0.0.1", "port": s.agent_port, "certs": str(certs)}
        idle_before = cpu_seconds(s.server.process.pid)
        time.sleep(IDLE_SECONDS)
        idle_rate = (cpu_seconds(s.server.process.pid) - idle_before) / IDLE_SECONDS
        phases: dict[str, Any] = {}
        marks: dict[str, datetime] = {}
        for name, agents_count, seconds, warmup in (
            ("full_rate", HB_AGENTS, HB_SECONDS, HB_WARMUP),
            ("low_rate", HB_AGENTS // HB_LOW_DIVISOR, HB_LOW_SECONDS, HB_WARMUP / 2),
        ):
            log(f"  {name}: {agents_count / HB_INTERVAL:.0f} heartbeats/s for {seconds:g}s")
            phases[name] = run_load_client(
                s,
                common
                | {
                    "name": name,
                    "mode": "heartbeat",
                    "agents": agents_count,
                    "rate": agents_count / HB_INTERVAL,
                    "warmup": warmup,
                    "seconds": seconds,
                    "in_flight": HB_IN_FLIGHT,
                    "keep_alive": keep_alive,
                },
                on_ready=lambda: reset_heartbeats(s, marks),  # the sweep stays out of it
            )
            phases[name]["heartbeats_reset_at_start"] = True
            if name == "full_rate":
                phases[name]["agents_without_an_answered_heartbeat"] = never_answered(
                    s, marks["reset"]
                )
            phases[name]["agent_states_after"] = agent_states(s)
            ok = phases[name]["ok"]
            if ok:  # the server's own background work (housekeeping) does not count
                net = (
                    phases[name]["server_cpu_seconds"] - idle_rate * phases[name]["window_seconds"]
                )
                phases[name]["server_cpu_ms_per_heartbeat_net_of_idle"] = round(1000 * net / ok, 2)
            log(
                f"    {phases[name]['achieved_per_second']}/s answered, server CPU "
                f"{phases[name]['server_cpu_percent_of_one_core']}% of one core, p99 "
                f"{phases[name]['latency_ms'].get('p99')} ms"
            )
            phases[name]["server_idle_after_seconds"] = wait_idle(s)
        for name, keep_alive in (("serial_new_connection", False), ("serial_keep_alive", True)):
            phases[name] = run_load_client(
                s,
                common
                | {
                    "name": name,
                    "mode": "serial",
                    "agents": 1,
                    "count": HB_SERIAL,
                    "keep_alive": keep_alive,
                },
            )
        polls = []
        for count in LP_AGENTS:
            log(f"  idle long polls: {count} agents for {LP_SECONDS:g}s")
            polls.append(
                run_load_client(
                    s,
                    common
                    | {
                        "name": f"longpoll-{count}",
                        "mode": "longpoll",
                        "agents": count,
                        "wait": LP_WAIT,
                        "warmup": LP_WARMUP,
                        "seconds": LP_SECONDS,
                    },
                )
            )
            time.sleep(LP_WAIT)  # the listener polls for an abandoned request until `wait`
            wait_idle(s)
        service = heartbeat_service_cost(s)
        labels = s.labels()
    full = phases["full_rate"]
    low = phases["low_rate"]
    extrapolated = None
    if low.get("server_cpu_ms_per_heartbeat_net_of_idle"):
        extrapolated = round(
            low["server_cpu_ms_per_heartbeat_net_of_idle"] * HB_AGENTS / HB_INTERVAL / 1000, 2
        )
    return labels | {
        "server_settings": PRODUCT_DEFAULTS | {"STELLA_AGENT_HEARTBEAT_SECONDS": "30"},
        "connections": "keep-alive" if keep_alive else "new per heartbeat",
        "setup": setup,
        "server_idle_cpu_percent_before": round(100 * idle_rate, 1),
        "heartbeats": full,
        "low_rate": low | {"divisor": HB_LOW_DIVISOR},
        "serial": {k: phases[k] for k in ("serial_new_connection", "serial_keep_alive")},
        "cores_needed_at_full_rate_from_low_rate": extrapolated,
        "service_in_process": service,
        "long_polls": [
            x
            | {
                "server_cpu_seconds_per_agent_per_second": round(
                    x["server_cpu_seconds"] / x["window_seconds"] / x["agents"], 6
                ),
                "extrapolated_cores_for_10000_idle_agents": round(
                    x["server_cpu_seconds"] / x["window_seconds"] / x["agents"] * HB_AGENTS, 1
                ),
                "claim_transactions_per_second_per_agent": round(1 / LONG_POLL_DB_POLL, 1),
            }
            for x in polls
        ],
        "load_average": {"before": load_before, "after": load_average()},
        "full_rate_met": bool(
            full["achieved_per_second"] >= 0.95 * full["rate_per_second"]
            and full["server_cpu_percent_of_one_core"] < 100
        ),
    }


# --- the load client (a separate process) ---------------------------------------------------


def _contexts(folder: Path, count: int) -> list[ssl.SSLContext]:
    ca = (folder / "ca.pem").read_text()
    key = folder / "key.pem"
    contexts = []
    for n in range(count):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=ca)
        context.load_cert_chain(folder / f"{n}.pem", key)
        contexts.append(context)
    return contexts


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response (Content-Length or no body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


def _request(path: str, body: bytes, keep_alive: bool) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: {'keep-alive' if keep_alive else 'close'}"
        "\r\n\r\n"
    ).encode() + body


async def _heartbeats(config: dict[str, Any], contexts: list[ssl.SSLContext]) -> dict[str, Any]:
    host, port, rate = config["host"], config["port"], config["rate"]
    warmup, seconds, agents = config["warmup"], config["seconds"], config["agents"]
    total = int(rate * (warmup + seconds))
    body = json.dumps(
        {"version": "bench", "health": {"status": "healthy"}, "inventory": INVENTORY}
    ).encode()
    keep_alive = bool(config.get("keep_alive"))
    request = _request("/agent/v1/heartbeat", body, keep_alive=keep_alive)
    # keep-alive: each agent's connection stays open between its heartbeats, as `stella agent`
    # keeps it (one TLS handshake per agent, not per heartbeat); taken out while in use
    idle: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    handshakes = 0
    gate = asyncio.Semaphore(config["in_flight"])
    measured: list[float] = []
    lateness: list[float] = []
    errors: dict[str, int] = {}
    statuses: dict[int, int] = {}
    backlog_limit = config["in_flight"] * 20
    pending: set[asyncio.Task[None]] = set()
    dropped = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0
    print(f"ready {time.time() + 1.0}", flush=True)

    async def connect(k: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        nonlocal handshakes
        handshakes += 1
        return await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=contexts[k % agents], server_hostname=host),
            timeout=10,
        )

    async def exchange(k: int) -> int:
        reused = idle.pop(k % agents, None) if keep_alive else None
        if reused is not None and (reused[0].at_eof() or reused[1].is_closing()):
            reused[1].close()
            reused = None
        reader, writer = reused or await connect(k)
        kept = False
        try:
            writer.write(request)
            status, _ = await asyncio.wait_for(_read_response(reader), timeout=10)
            kept = keep_alive
            return status
        finally:
            if kept:
                idle[k % agents] = (reader, writer)
            else:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

    async def one(k: int, due: float) -> None:
        async with gate:
            begun = loop.time()
            inside = warmup <= due - start < warmup + seconds
            try:
                status = await exchange(k)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                if inside:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            if inside:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    measured.append(loop.time() - begun)
                    lateness.append(begun - due)
                else:
                    errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1

    for k in range(total):
        due = start + k / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pending = {p for p in pending if not p.done()}
        if len(pending) >= backlog_limit:
            if warmup <= due - start < warmup + seconds:
                dropped += 1
            continue
        pending.add(asyncio.create_task(one(k, due)))
    if pending:
        await asyncio.wait(pending, timeout=30)
    for _, writer in idle.values():
        writer.close()
    sent = int(rate * seconds)
    return {
        "rate_per_second": round(rate, 1),
        "scheduled": sent,
        "ok": len(measured),
        "errors": errors,
        "statuses": {str(k): v for k, v in statuses.items()},
        "dropped_client_backlog": dropped,
        "achieved_per_second": round(len(measured) / seconds, 1),
        "latency_ms": percentiles(measured, 1000, 2),
        "start_lateness_ms": percentiles(lateness, 1000, 2),
        "in_flight_limit": config["in_flight"],
        "new_tls_connection_per_heartbeat": not keep_alive,
        "tls_handshakes": handshakes,
    }


async def _long_polls(config: dict[str, Any], contexts: list[ssl.SSLContext]) -> dict[str, Any]:
    host, port = config["host"], config["port"]
    request = _request(f"/agent/v1/tasks/next?wait={config['wait']}", b"", keep_alive=True)
    loop = asyncio.get_running_loop()
    start = loop.time() + 1.0
    end = start + config["warmup"] + config["seconds"]
    answers: dict[str, int] = {}
    print(f"ready {time.time() + 1.0}", flush=True)

    async def agent(n: int) -> None:
        await asyncio.sleep(max(0.0, start - loop.time()) + n * 0.005)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=contexts[n], server_hostname=host),
                timeout=10,
            )
        except (OSError, TimeoutError) as exc:
            answers[type(exc).__name__] = answers.get(type(exc).__name__, 0) + 1
            return
        try:
            for _ in range(100):
                if loop.time() >= end:
                    break
                writer.write(request)
                status, _ = await asyncio.wait_for(
                    _read_response(reader), timeout=max(0.1, end - loop.time())
                )
                answers[str(status)] = answers.get(str(status), 0) + 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass  # the window ended while the long poll waited: expected
        finally:
            writer.close()

    await asyncio.gather(*(agent(n) for n in range(config["agents"])))
    return {"agents": config["agents"], "wait_seconds": config["wait"], "answers": answers}


async def _serial(config: dict[str, Any], contexts: list[ssl.SSLContext]) -> dict[str, Any]:
    """`count` heartbeats of one agent one after the other: each on a new TLS connection, or
    all on one kept-alive connection."""
    host, port, keep_alive = config["host"], config["port"], config["keep_alive"]
    body = json.dumps(
        {"version": "bench", "health": {"status": "healthy"}, "inventory": INVENTORY}
    ).encode()
    request = _request("/agent/v1/heartbeat", body, keep_alive=keep_alive)
    loop = asyncio.get_running_loop()
    print(f"ready {time.time() + 0.5}", flush=True)
    await asyncio.sleep(0.5)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for _ in range(config["count"]):
        started = loop.time()
        if connection is None:
            connection = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=contexts[0], server_hostname=host), 10
            )
        reader, writer = connection
        writer.write(request)
        status, _ = await asyncio.wait_for(_read_response(reader), timeout=10)
        if not keep_alive:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            connection = None
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status == 200:
            latencies.append(loop.time() - started)
    if connection is not None:
        connection[1].close()
    return {
        "keep_alive": keep_alive,
        "count": config["count"],
        "ok": len(latencies),
        "statuses": statuses,
        "latency_ms": percentiles(latencies, 1000, 2),
    }


def load_client(config_path: str) -> None:
    """The load generator process: loads the certificates, then heartbeats or long polls."""
    config = json.loads(Path(config_path).read_text())
    require_loopback(f"{config['host']}:{config['port']}")
    started = time.perf_counter()
    contexts = _contexts(Path(config["certs"]), config["agents"])
    prepared = time.perf_counter() - started
    runner = {"heartbeat": _heartbeats, "longpoll": _long_polls, "serial": _serial}[config["mode"]]
    result = asyncio.run(runner(config, contexts))
    result["client_setup_seconds"] = round(prepared, 1)
    Path(config["result"]).write_text(json.dumps(result))


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("overhead", "fanout", "many", "heartbeats"))
    parser.add_argument("--database", choices=DATABASES, default=None)
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument(
        "--heartbeat-connections",
        choices=("keep-alive", "new"),
        default="keep-alive",
        help="heartbeats case: each simulated agent keeps its connection (as `stella agent` "
        "does) or opens a new TLS connection per heartbeat (as agents did before)",
    )
    parser.add_argument(
        "--skip-ansible", action="store_true", help="overhead case: no Ansible column"
    )
    parser.add_argument("--load-client", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_client:
        load_client(args.load_client)
        return
    exit_cleanly_on_sigterm()
    _clean_environment()
    wanted = {args.only} if args.only else {"overhead", "fanout", "many", "heartbeats"}
    kinds = [args.database] if args.database else list(DATABASES)
    started = time.perf_counter()
    commit = source_commit()
    result: dict[str, Any] = {
        "benchmark": "deployments: overhead, Ansible, fan-out, many at once, heartbeats",
        "python": platform.python_version(),
        "commit": commit,
        "logical_cpus": os.cpu_count(),
        "docker_engine": docker("version", "--format", "{{.Server.Version}}").strip(),
        "base_image": BASE_IMAGE,
        "client_poll_seconds": CLIENT_POLL,
        "agent_constants": {
            "listener_long_poll_db_poll_seconds": AGENT_POLL_SECONDS,
            "deploy_step_poll_seconds": DEPLOY_STEP_POLL_SECONDS,
            # waiters are woken by job events (in-process; PostgreSQL NOTIFY across processes);
            # the intervals above are the fallback looks
            "job_wakeups": True,
            "component_health_interval": web_component("web", "x")["runtime"]["healthcheck"][
                "interval"
            ],
        },
        "overhead": [],
        "fanout": [],
        "many": [],
        "heartbeats": [],
        "not_measured": [],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="stella-bench-ansible-") as tmp:
            if "overhead" in wanted:
                ansible = Ansible() if args.skip_ansible else prepare_ansible(Path(tmp))
                if args.skip_ansible:
                    ansible.not_measured = "skipped (--skip-ansible)"
                result["ansible"] = {
                    "versions": ansible.versions,
                    "install_seconds": ansible.install_seconds,
                    "galaxy": ansible.galaxy,
                    "not_measured": ansible.not_measured,
                    "venv": str(ANSIBLE_VENV),
                }
                if ansible.not_measured:
                    result["not_measured"].append(f"Ansible: {ansible.not_measured}")
                for kind, profile in OVERHEAD_CASES:
                    if kind in kinds:
                        result["overhead"].append(
                            bench_overhead(kind, profile, ansible, args.iterations)
                        )
        for kind in kinds:
            if "fanout" in wanted and kind in FANOUT_DATABASES:
                result["fanout"].append(bench_fanout(kind))
        for kind in kinds:
            if "many" in wanted and kind in MANY_DATABASES:
                result["many"].append(bench_many(kind))
        for kind in kinds:
            if "heartbeats" in wanted and kind in HB_DATABASES:
                result["heartbeats"].append(
                    bench_heartbeats(kind, args.heartbeat_connections == "keep-alive")
                )
    finally:
        removed = remove_run_containers()
        if removed:
            log(f"removed {removed} leftover container(s)")
    finished = datetime.now(UTC).isoformat(timespec="seconds")
    duration = round(time.perf_counter() - started, 1)
    result["finished_at"] = finished
    result["duration_seconds"] = duration
    result["parts"] = {
        part: {"commit": commit, "finished_at": finished, "duration_seconds": duration}
        for part in sorted(wanted)
    }
    if args.only or args.database:
        result = merge_into_previous(result, wanted, kinds)
    path = write_result("deployments", result)
    log(f"wrote {path}")


def merge_into_previous(
    result: dict[str, Any], wanted: set[str], kinds: list[str]
) -> dict[str, Any]:
    """A partial run (`--only`, `--database`) replaces its own rows in the previous
    deployments.json and keeps the others, so that one case can be measured again alone."""
    path = RESULTS_DIR / "deployments.json"
    if not path.exists():
        return result
    merged = json.loads(path.read_text())
    for part in PARTS:
        if part in wanted:
            kept = [r for r in merged.get(part, []) if r["database"] not in kinds]
            merged[part] = kept + result[part]
    if "overhead" in wanted:
        merged["ansible"] = result.get("ansible")
    merged["not_measured"] = sorted(
        set(merged.get("not_measured", [])) | set(result["not_measured"])
    )
    parts = merged.get("parts") or {
        part: {
            "commit": merged.get("commit"),
            "finished_at": merged.get("finished_at"),
            "duration_seconds": merged.get("duration_seconds"),
        }
        for part in PARTS
    }
    for part, entry in result["parts"].items():
        parts[part] = entry | {"databases": kinds}
    merged["parts"] = parts
    merged["commit"] = result["commit"]
    merged["finished_at"] = result["finished_at"]
    runs = {(e["finished_at"], e["duration_seconds"]) for e in parts.values()}
    merged["duration_seconds"] = round(sum(d or 0 for _, d in runs), 1)
    return merged


if __name__ == "__main__":
    main()
