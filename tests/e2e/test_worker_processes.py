"""Real `stella worker` processes: killed mid-step, racing on PostgreSQL, stopped gracefully."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import create_database, drop_database, free_port
from tests.support.live import STELLA, start_server
from tests.support.waiting import wait_until
from tests.support.workflows import events, wait_for_run


class Workers:
    """Starts `stella worker` processes on one database and stops them all at the end."""

    def __init__(self, database_url: str, home: Path) -> None:
        self.database_url = database_url
        self.home = home
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, lease: float = 1.5, grace: float = 30, concurrency: int = 4):
        env = os.environ | {
            "STELLA_DATABASE_URL": self.database_url,
            "STELLA_HOME": str(self.home),
            "STELLA_WORKER_LEASE_SECONDS": str(lease),
            "STELLA_WORKER_POLL_SECONDS": "0.05",
            "STELLA_WORKER_GRACE_SECONDS": str(grace),
            "STELLA_WORKER_CONCURRENCY": str(concurrency),
            "STELLA_LOG_LEVEL": "warning",
        }
        with (self.home.parent / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [STELLA, "worker", "--name", name],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(request, tmp_path):
    """An API server without an embedded worker, and a way to start worker processes."""
    yield from _cluster(request.param, tmp_path)


@pytest.fixture
def postgres_cluster(tmp_path):
    """The same on PostgreSQL only: racing workers is what SKIP LOCKED is for."""
    yield from _cluster("postgresql", tmp_path)


def _cluster(kind, tmp_path):
    database = create_database(kind, tmp_path, migrate=False)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp_path / "home", free_port(), database.url
    )
    workers = Workers(database.url, tmp_path / "home")
    with server.api() as api:
        yield database.kind, api, workers
    workers.stop_all()
    server.stop()
    drop_database(database)


class Api:
    """Adapts an httpx client to the helpers' `api.get(path)` shape."""

    def __init__(self, client):
        self.client = client

    def get(self, path, **kwargs):
        return self.client.get(path, **kwargs)


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_a_killed_worker_loses_nothing_and_no_step_succeeds_twice(cluster, tmp_path):
    _, api, workers = cluster
    trail = tmp_path / "trail"
    api.post(
        "/workflows",
        json={
            "name": "resumable",
            "steps": [
                {
                    "id": "slow",
                    "type": "script",
                    "config": {
                        "command": f'echo "$STELLA_IDEMPOTENCY_KEY $STELLA_ATTEMPT $$" >> {trail}; '
                        "sleep 2"
                    },
                },
                {
                    "id": "after",
                    "type": "wait",
                    "depends_on": ["slow"],
                    "config": {"duration": "0s"},
                },
            ],
        },
    )
    first = workers.start("worker-a")
    run_id = api.post("/workflow-runs", json={"workflow": "resumable"}).json()["id"]
    wait_until(lambda: trail.exists() and trail.read_text().count("\n") == 1, "attempt 1", 30)
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    orphan = int(trail.read_text().split()[2])
    wait_until(lambda: not alive(orphan), "the killed worker's step process to be killed too", 5)
    workers.start("worker-b")
    run = wait_for_run(Api(api), run_id, timeout=60)
    assert run["state"] == "succeeded", run
    assert time.monotonic() - killed_at < 30
    slow = next(s for s in run["steps"] if s["id"] == "slow")
    assert slow["attempts"] == 2
    keys = [line.split() for line in trail.read_text().splitlines()]
    assert [k[1] for k in keys] == ["1", "2"]  # attempt 1 was killed before attempt 2 began
    assert keys[0][0] == keys[1][0]  # the same idempotency key: the re-execution is detectable
    log = events(Api(api), run_id)
    kinds = Counter((e["type"], e["step_id"]) for e in log)
    assert kinds[("step.succeeded", "slow")] == 1
    assert kinds[("step.lease_expired", "slow")] == 1
    starters = [
        e["data"]["worker"] for e in log if e["type"] == "step.started" and e["step_id"] == "slow"
    ]
    assert starters == ["worker-a", "worker-b"]


def test_two_workers_racing_run_every_step_exactly_once(postgres_cluster, tmp_path):
    _, api, workers = postgres_cluster
    ledger = tmp_path / "ledger"
    command = f'echo "$STELLA_RUN_ID $STELLA_STEP_ID $STELLA_ATTEMPT" >> {ledger}'
    api.post(
        "/workflows",
        json={
            "name": "race",
            "steps": [
                {"id": "a", "type": "script", "config": {"command": command}},
                {"id": "b", "type": "script", "depends_on": ["a"], "config": {"command": command}},
                {"id": "c", "type": "script", "depends_on": ["a"], "config": {"command": command}},
            ],
        },
    )
    run_ids = {
        api.post("/workflow-runs", json={"workflow": "race"}).json()["id"] for _ in range(200)
    }
    assert len(run_ids) == 200
    workers.start("racer-1", lease=30)
    workers.start("racer-2", lease=30)

    def all_done() -> bool:
        page = api.get("/workflow-runs", params={"state": "succeeded", "limit": 500}).json()
        return len(page["items"]) == 200

    wait_until(all_done, "200 runs to succeed", 240)
    lines = ledger.read_text().splitlines()
    assert len(lines) == 600
    executions = Counter(tuple(line.split()) for line in lines)
    assert set(executions.values()) == {1}
    assert {attempt for (_, _, attempt) in executions} == {"1"}
    assert {run for (run, _, _) in executions} == run_ids
    sample = events(Api(api), next(iter(run_ids)))
    assert all(e["type"] != "step.result_discarded" for e in sample)
    worker_names = set()
    for run_id in run_ids:
        worker_names |= {
            e["data"].get("worker") for e in events(Api(api), run_id) if e["type"] == "step.started"
        }
    assert worker_names == {"racer-1", "racer-2"}


def test_sigterm_lets_the_running_step_finish(cluster, tmp_path):
    _, api, workers = cluster
    api.post(
        "/workflows",
        json={
            "name": "finishing",
            "steps": [
                {
                    "id": "a",
                    "type": "script",
                    "config": {"command": f"touch {tmp_path}/started; sleep 1"},
                }
            ],
        },
    )
    worker = workers.start("graceful", grace=30)
    run_id = api.post("/workflow-runs", json={"workflow": "finishing"}).json()["id"]
    wait_until(lambda: (tmp_path / "started").exists(), "the step to start", 30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    run = api.get(f"/workflow-runs/{run_id}").json()
    assert run["state"] == "succeeded"
    assert run["steps"][0]["attempts"] == 1


def test_sigterm_past_the_grace_period_releases_the_step_to_another_worker(cluster, tmp_path):
    _, api, workers = cluster
    trail = tmp_path / "trail"
    api.post(
        "/workflows",
        json={
            "name": "handover",
            "steps": [
                {
                    "id": "a",
                    "type": "script",
                    "config": {
                        "command": f"echo $STELLA_ATTEMPT >> {trail}; "
                        "[ $STELLA_ATTEMPT -gt 1 ] || sleep 30"
                    },
                }
            ],
        },
    )
    worker = workers.start("impatient", grace=0.3)
    run_id = api.post("/workflow-runs", json={"workflow": "handover"}).json()["id"]
    wait_until(lambda: trail.exists(), "the step to start", 30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    workers.start("successor")
    run = wait_for_run(Api(api), run_id, timeout=60)
    assert run["state"] == "succeeded"
    assert trail.read_text().split() == ["1", "2"]
    assert "step.released" in [e["type"] for e in events(Api(api), run_id)]
