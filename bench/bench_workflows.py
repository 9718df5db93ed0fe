"""The workflow engine: scheduling overhead, throughput and recovery, on SQLite and PostgreSQL.

Every case runs real processes: a `stella server --no-worker` for the API and separate
`stella worker` processes (each in its own process group), on a fresh migrated database.

1. Scheduling overhead: one 1,000-step run of no-op steps (`wait` with `duration: 0s`),
   executed by ONE worker process (concurrency 4, poll 0.05 s), in two shapes: a DAG where
   each step depends on 0-3 of the 16 steps before it (seeded, so the same DAG every time)
   and a pure chain. Reported: time from run creation to run succeeded / 1,000, from the
   run's own timestamps (and, as a check, the client's wall clock), and the gaps between
   steps taken from the run's event log.
2. Throughput (PostgreSQL): 1,000 runs of a 3-step chain of no-op steps are created first,
   with no worker running; then 1 or 4 worker processes (concurrency 4 each) start, and
   the time until all runs succeeded gives runs/s and steps/s.
3. Recovery after a worker's death: a run whose only step is `script` `sleep 2`; worker A
   (lease 3 s) starts it, the benchmark SIGKILLs A's process group as soon as the event
   `step.started` appears and starts worker B (lease 3 s) at once; measured: from the kill
   to B's `step.started` (event time, same machine clock). Repeated REPEATS times.

Target from the issue: < 2 ms of scheduling overhead per step on SQLite and PostgreSQL.

Run: .venv/bin/python -m bench.bench_workflows (from the repository root; `make bench` does).
`--only overhead|throughput|recovery` and `--database sqlite|postgresql` select cases.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from tests.conftest import TestDatabase, create_database, drop_database, free_port
from tests.support.live import STELLA, LiveServer, start_server

from bench.common import (
    ROOT,
    Samples,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    run_serial,
    summary,
    write_result,
)
from stella.adapters.db import tables as t

DATABASES = ("sqlite", "postgresql")
TARGET_MS_PER_STEP = 2.0

STEPS = 1_000  # steps of the overhead run
DAG_SEED = 20261127
DAG_WINDOW = 16  # a DAG step depends on 0-3 of the DAG_WINDOW steps before it
OVERHEAD_BUDGET = 180.0  # seconds, per 1,000-step run

RUNS = 1_000  # runs of the throughput case
SMALL_STEPS = 3
CREATE_THREADS = 4
CREATE_BUDGET = 120.0  # seconds to create the RUNS runs
THROUGHPUT_BUDGET = 180.0  # seconds for the workers to finish them
THROUGHPUT_WORKERS = (1, 4)
THROUGHPUT_DATABASES = ("sqlite", "postgresql")

REPEATS = 5  # worker kills per database
KILL_LEASE_SECONDS = 3.0
SCRIPT_SECONDS = 2
RECOVERY_BUDGET = 60.0  # seconds, per kill

CONCURRENCY = 4  # steps at once per worker process
POLL_SECONDS = 0.05  # the workers' idle poll
GRACE_SECONDS = 5.0  # graceful stop of a worker
STATUS_POLL = 0.2  # how often the benchmark asks whether a run is done
EVENT_POLL = 0.05  # how often the benchmark reads new events while waiting for one
MAX_EVENT_PAGES = 50  # 500 events each
WORKER_START_TIMEOUT = 60.0
NOOP = {"type": "wait", "config": {"duration": "0s"}}


# --- processes ------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """A `stella worker` process in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    spawned: float  # time.time() when it was started

    def wait_ready(self, timeout: float = WORKER_START_TIMEOUT) -> float:
        """Wait for its `worker … started` line; returns the time.time() it was seen."""
        marker = f"worker {self.name} started".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if marker in self.log.read_bytes():
                return time.time()
            if self.process.poll() is not None:
                msg = f"worker {self.name} exited early: {self.tail()}"
                raise RuntimeError(msg)
            time.sleep(0.02)
        msg = f"worker {self.name} did not start in {timeout:g}s: {self.tail()}"
        raise RuntimeError(msg)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """SIGKILL the whole process group (what a crash or an OOM kill looks like)."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM (graceful: finish running steps for up to GRACE_SECONDS), then SIGKILL."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=GRACE_SECONDS + 10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_worker(
    database: TestDatabase,
    workdir: Path,
    name: str,
    lease_seconds: float = 30.0,
) -> WorkerProcess:
    """`stella worker --name NAME` on `database`, with the benchmark's worker settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STELLA_")} | {
        "STELLA_DATABASE_URL": database.url,
        "STELLA_HOME": str(workdir / "worker-home"),
        "STELLA_WORKER_CONCURRENCY": str(CONCURRENCY),
        "STELLA_WORKER_LEASE_SECONDS": f"{lease_seconds:g}",
        "STELLA_WORKER_POLL_SECONDS": f"{POLL_SECONDS:g}",
        "STELLA_WORKER_GRACE_SECONDS": f"{GRACE_SECONDS:g}",
    }
    path = workdir / f"worker-{name}.log"
    with path.open("wb") as out:
        process = subprocess.Popen(
            [STELLA, "worker", "--name", name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return WorkerProcess(name, process, path, time.time())


@contextmanager
def workers(
    database: TestDatabase, workdir: Path, names: list[str]
) -> Iterator[list[WorkerProcess]]:
    """Start worker processes; they are stopped (SIGTERM, then SIGKILL) on the way out."""
    started: list[WorkerProcess] = []
    try:
        for name in names:
            started.append(start_worker(database, workdir, name))
        yield started
    finally:
        for worker in started:
            worker.stop()


@dataclass
class Stack:
    """A fresh migrated database, a `stella server --no-worker` on it and an API client."""

    kind: str
    database: TestDatabase
    server: LiveServer
    api: httpx.Client
    workdir: Path
    version: str
    settings: str

    def labels(self) -> dict[str, str]:
        return {
            "database": self.kind,
            "database_version": self.version,
            "database_settings": self.settings,
        }


@contextmanager
def stack(kind: str) -> Iterator[Stack]:
    """Everything is stopped and the database dropped on the way out, also on errors."""
    with tempfile.TemporaryDirectory(prefix=f"stella-bench-wf-{kind}-") as tmp:
        workdir = Path(tmp)
        database = create_database(kind, workdir, migrate=True)  # workers need it migrated
        server = None
        api = None
        try:
            server = start_server(
                [STELLA, "server", "--no-worker"], workdir / "home", free_port(), database.url
            )
            api = api_client(server.url, server.token)
            yield Stack(
                kind,
                database,
                server,
                api,
                workdir,
                database_version(database.engine),
                database_settings(database.engine),
            )
        finally:
            if api is not None:
                api.close()
            if server is not None:
                server.stop()
            drop_database(database)


# --- API helpers ----------------------------------------------------------------------------


def save_workflow(api: httpx.Client, name: str, steps: list[dict[str, Any]]) -> None:
    response = api.post("/workflows", json={"name": name, "on_failure": "stop", "steps": steps})
    if response.status_code not in (200, 201):
        msg = f"saving workflow {name} failed: {response.status_code} {response.text[:500]}"
        raise RuntimeError(msg)


def start_run(api: httpx.Client, workflow: str) -> dict[str, Any]:
    response = api.post("/workflow-runs", json={"workflow": workflow, "inputs": {}})
    if response.status_code != 201:
        msg = f"starting a run of {workflow} failed: {response.status_code} {response.text[:500]}"
        raise RuntimeError(msg)
    return dict(response.json())


def wait_for_run(api: httpx.Client, run_id: str, budget: float) -> tuple[dict[str, Any], float]:
    """Poll the run every STATUS_POLL s until it is no longer running (at most `budget` s);
    returns it and the time.perf_counter() at which it was seen finished."""
    deadline = time.monotonic() + budget
    run: dict[str, Any] = {}
    for _ in range(int(budget / STATUS_POLL) + 1):
        run = api.get(f"/workflow-runs/{run_id}").json()
        if run["state"] not in ("running", "rolling_back"):
            return run, time.perf_counter()
        if time.monotonic() > deadline:
            break
        time.sleep(STATUS_POLL)
    msg = f"run {run_id} still {run.get('state')} after {budget:g}s"
    raise RuntimeError(msg)


class EventReader:
    """Reads a run's event log through the API, page after page, from where it left off."""

    def __init__(self, api: httpx.Client, run_id: str) -> None:
        self.api = api
        self.run_id = run_id
        self.cursor: str | None = None
        self.items: list[dict[str, Any]] = []

    def read_new(self) -> list[dict[str, Any]]:
        new: list[dict[str, Any]] = []
        for _ in range(MAX_EVENT_PAGES):
            params: dict[str, Any] = {"limit": 500}
            if self.cursor:
                params["cursor"] = self.cursor
            response = self.api.get(f"/workflow-runs/{self.run_id}/events", params=params)
            response.raise_for_status()
            page = response.json()
            new.extend(page["items"])
            if page["next_cursor"]:
                self.cursor = page["next_cursor"]
            if len(page["items"]) < 500:
                break
        self.items.extend(new)
        return new

    def wait_for(self, budget: float, type_: str, attempt: int | None = None) -> dict[str, Any]:
        """The first event of `type_` (and `attempt`), reading new events every EVENT_POLL s."""
        deadline = time.monotonic() + budget
        for _ in range(int(budget / EVENT_POLL) + 1):
            for event in [*self.items, *self.read_new()]:
                if event["type"] == type_ and attempt in (None, event["attempt"]):
                    return event
            if time.monotonic() > deadline:
                break
            time.sleep(EVENT_POLL)
        msg = f"no {type_} event (attempt {attempt}) in run {self.run_id} after {budget:g}s"
        raise RuntimeError(msg)


def _at(event: dict[str, Any]) -> float:
    """An event's `at` as seconds since the epoch."""
    return datetime.fromisoformat(event["at"]).timestamp()


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def distribution(values: list[float]) -> dict[str, Any]:
    """Count and percentiles (ms) of durations given in seconds."""
    ms = sorted(v * 1000 for v in values)
    if not ms:
        return {"count": 0}
    result: dict[str, Any] = {
        "count": len(ms),
        "mean_ms": round(statistics.fmean(ms), 3),
        "min_ms": round(ms[0], 3),
        "max_ms": round(ms[-1], 3),
    }
    if len(ms) >= 2:
        cuts = statistics.quantiles(ms, n=100, method="inclusive")
        result |= {
            "p50_ms": round(cuts[49], 3),
            "p90_ms": round(cuts[89], 3),
            "p99_ms": round(cuts[98], 3),
        }
    else:
        result |= {"p50_ms": round(ms[0], 3), "p90_ms": round(ms[0], 3), "p99_ms": round(ms[0], 3)}
    return result


# --- 1. scheduling overhead -----------------------------------------------------------------


def _step_id(i: int) -> str:
    return f"s{i:04d}"


def chain_steps(count: int) -> list[dict[str, Any]]:
    return [
        NOOP | {"id": _step_id(i), "depends_on": [_step_id(i - 1)] if i else []}
        for i in range(count)
    ]


def dag_steps(count: int) -> list[dict[str, Any]]:
    """Each step depends on 0-3 distinct steps among the DAG_WINDOW before it (seeded)."""
    rng = random.Random(DAG_SEED)  # a fixed shape, the same in every run
    steps = []
    for i in range(count):
        window = list(range(max(0, i - DAG_WINDOW), i))
        deps = sorted(rng.sample(window, min(len(window), rng.randint(0, 3))))
        steps.append(NOOP | {"id": _step_id(i), "depends_on": [_step_id(d) for d in deps]})
    return steps


def gaps(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Intervals between a run's step events (event times are the worker's clock):

    * succeeded_to_next_started: for every `step.started`, the time since the latest
      `step.succeeded` before it in the log (a chain: since its predecessor finished);
    * ready_to_started: for every step made ready by a finished dependency, the time from
      `step.ready` to `step.started` (includes waiting for a free slot in a DAG);
    * started_to_succeeded: `step.started` to `step.succeeded` of the same step: the claim's
      commit, handing the step to a slot, the no-op itself and the start of recording it.
    """
    ordered = sorted(events, key=lambda e: e["seq"])
    created = next((_at(e) for e in ordered if e["type"] == "run.created"), None)
    last_succeeded: float | None = None
    ready: dict[str, float] = {}
    started: dict[str, float] = {}
    out: dict[str, list[float]] = {
        "succeeded_to_next_started": [],
        "ready_to_started": [],
        "started_to_succeeded": [],
    }
    for event in ordered:
        kind, step = event["type"], event["step_id"]
        if kind == "step.ready" and last_succeeded is not None:
            ready[step] = _at(event)  # roots (ready at creation) are left out
        elif kind == "step.started":
            at = _at(event)
            started[step] = at
            if last_succeeded is not None:
                out["succeeded_to_next_started"].append(at - last_succeeded)
            if step in ready:
                out["ready_to_started"].append(at - ready[step])
        elif kind == "step.succeeded":
            last_succeeded = _at(event)
            if step in started:
                out["started_to_succeeded"].append(last_succeeded - started[step])
    result = {name: distribution(values) for name, values in out.items()}
    if created is not None and started:
        result["created_to_first_started"] = distribution([min(started.values()) - created])
    return result


def backwards(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Events whose `at` is earlier than that of an event before them in the log (seq)."""
    latest = float("-inf")
    behind: list[float] = []
    for event in sorted(events, key=lambda e: e["seq"]):
        at = _at(event)
        if at < latest:
            behind.append(latest - at)
        latest = max(latest, at)
    return {"events": len(behind), "max_ms": round(max(behind, default=0.0) * 1000, 3)}


def overhead_case(s: Stack, shape: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    name = f"bench-{shape}"
    save_workflow(s.api, name, steps)
    started = time.perf_counter()
    run = start_run(s.api, name)
    create_seconds = time.perf_counter() - started
    done, seen_at = wait_for_run(s.api, run["id"], OVERHEAD_BUDGET)
    client_wall = seen_at - started
    reader = EventReader(s.api, run["id"])
    events = reader.read_new()
    server_wall = _ts(done["finished_at"]) - _ts(done["created_at"])
    count = len(steps)
    result = s.labels() | {
        "shape": shape,
        "steps": count,
        "edges": sum(len(step["depends_on"]) for step in steps),
        "roots": sum(1 for step in steps if not step["depends_on"]),
        "worker_processes": 1,
        "concurrency": CONCURRENCY,
        "state": done["state"],
        "steps_done": done["steps_done"],
        "step_started_events": sum(1 for e in events if e["type"] == "step.started"),
        "events": len(events),
        "create_request_seconds": round(create_seconds, 3),
        "wall_seconds": round(server_wall, 3),
        "ms_per_step": round(server_wall * 1000 / count, 3),
        "client_wall_seconds": round(client_wall, 3),
        "client_ms_per_step": round(client_wall * 1000 / count, 3),
        "gaps": gaps(events),
        "events_out_of_time_order": backwards(events),
    }
    log(
        f"{s.kind}: {shape} of {count} steps: {done['state']} in {server_wall:.2f} s "
        f"= {result['ms_per_step']:.2f} ms/step (client wall {client_wall:.2f} s); "
        f"succeeded->next started p50 "
        f"{result['gaps']['succeeded_to_next_started'].get('p50_ms')} ms, "
        f"p99 {result['gaps']['succeeded_to_next_started'].get('p99_ms')} ms"
    )
    return result


def bench_overhead(kind: str) -> list[dict[str, Any]]:
    results = []
    with stack(kind) as s, workers(s.database, s.workdir, [f"overhead-{kind}"]) as (worker,):
        worker.wait_ready()
        # warm-up: the worker's connections, imports and first claims
        save_workflow(s.api, "bench-warmup", chain_steps(10))
        warm = start_run(s.api, "bench-warmup")
        wait_for_run(s.api, warm["id"], 60.0)
        for shape, steps in (("dag", dag_steps(STEPS)), ("chain", chain_steps(STEPS))):
            results.append(overhead_case(s, shape, steps))
        if worker.process.poll() is not None:
            msg = f"the worker died: {worker.tail()}"
            raise RuntimeError(msg)
    return results


# --- 2. throughput --------------------------------------------------------------------------


def create_runs(s: Stack, workflow: str, count: int) -> Samples:
    """`count` runs from CREATE_THREADS client threads (bounded by CREATE_BUDGET)."""
    per_thread = count // CREATE_THREADS
    clients = [api_client(s.server.url, s.server.token) for _ in range(CREATE_THREADS)]
    stop = threading.Event()  # set when the main thread is interrupted (SIGTERM)

    def thread(index: int) -> Samples:
        http = clients[index]

        def call(_i: int) -> bool:
            if stop.is_set():
                return False
            body = {"workflow": workflow, "inputs": {}}
            return http.post("/workflow-runs", json=body).status_code == 201

        return run_serial(call, per_thread, CREATE_BUDGET, first=index * per_thread)

    merged = Samples()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
            futures = [pool.submit(thread, n) for n in range(CREATE_THREADS)]
            try:
                for future in futures:
                    merged.merge(future.result(timeout=CREATE_BUDGET + 60))
            except BaseException:
                stop.set()
                raise
    finally:
        for client in clients:
            client.close()
    merged.wall = time.perf_counter() - started
    return merged


def run_counts(database: TestDatabase) -> dict[str, int]:
    r = t.workflow_runs
    with database.engine.connect() as conn:
        rows = conn.execute(select(r.c.state, func.count()).group_by(r.c.state)).all()
    return {str(state): int(n) for state, n in rows}


def processing_window(database: TestDatabase) -> tuple[float, float]:
    """(first step started, last run finished) as epoch seconds, from the database."""
    r, st = t.workflow_runs, t.workflow_run_steps
    with database.engine.connect() as conn:
        first = conn.execute(select(func.min(st.c.started_at))).scalar_one()
        last = conn.execute(select(func.max(r.c.finished_at))).scalar_one()
    return _epoch(first), _epoch(last)


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def started_events(database: TestDatabase) -> int:
    e = t.workflow_run_events
    with database.engine.connect() as conn:
        stmt = select(func.count()).where(e.c.type == "step.started")
        return int(conn.execute(stmt).scalar_one())


def throughput_case(kind: str, worker_count: int) -> dict[str, Any]:
    with stack(kind) as s:
        save_workflow(s.api, "bench-small", chain_steps(SMALL_STEPS))
        created = create_runs(s, "bench-small", RUNS)
        counts = run_counts(s.database)
        log(
            f"{kind}: created {counts.get('running', 0)} runs in {created.wall:.1f} s "
            f"({created.errors} failed)"
        )
        total = sum(counts.values())
        names = [f"tp{worker_count}-{n}" for n in range(worker_count)]
        spawned = time.perf_counter()
        with workers(s.database, s.workdir, names) as started:
            deadline = time.monotonic() + THROUGHPUT_BUDGET
            truncated = True
            for _ in range(int(THROUGHPUT_BUDGET / STATUS_POLL) + 1):
                counts = run_counts(s.database)
                if counts.get("running", 0) == 0:
                    truncated = False
                    break
                if time.monotonic() > deadline:
                    break
                if any(w.process.poll() is not None for w in started):
                    msg = f"a worker died: {[w.tail() for w in started]}"
                    raise RuntimeError(msg)
                time.sleep(STATUS_POLL)
            wall = time.perf_counter() - spawned
        first, last = processing_window(s.database)
        window = last - first
        succeeded = counts.get("succeeded", 0)
        result = s.labels() | {
            "workers": worker_count,
            "concurrency": CONCURRENCY,
            "runs": total,
            "steps_per_run": SMALL_STEPS,
            "create": summary(created, CREATE_THREADS),
            "succeeded": succeeded,
            "states": counts,
            "truncated_by_deadline": truncated,
            "step_started_events": started_events(s.database),
            "processing_seconds": round(window, 3),
            "wall_seconds_from_spawn": round(wall, 3),
            "runs_per_second": round(succeeded / window, 1) if window > 0 else None,
            "steps_per_second": round(succeeded * SMALL_STEPS / window, 1) if window > 0 else None,
        }
    log(
        f"{kind}: {worker_count} worker(s): {succeeded}/{total} runs succeeded in {window:.2f} s "
        f"= {result['runs_per_second']} runs/s, {result['steps_per_second']} steps/s "
        f"(wall from spawn {wall:.2f} s)"
    )
    return result


# --- 3. recovery after a worker's death -----------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Processes whose parent is `pid` (the script step's shell, in its own session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def reap_orphans(pids: list[int], timeout: float) -> None:
    """Wait for the killed worker's script processes to end by themselves; kill the rest."""
    deadline = time.monotonic() + timeout
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if Path(f"/proc/{pid}").exists():
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # start_new_session: its group id is its pid


def step_lease(database: TestDatabase, run_id: str) -> float | None:
    st = t.workflow_run_steps
    with database.engine.connect() as conn:
        stmt = select(st.c.lease_expires_at).where(st.c.run_id == uuid.UUID(run_id))
        value = conn.execute(stmt).scalar_one_or_none()
    return None if value is None else _epoch(value)


def recovery_once(s: Stack, attempt_no: int) -> dict[str, Any]:
    a = start_worker(s.database, s.workdir, f"a{attempt_no}", KILL_LEASE_SECONDS)
    b: WorkerProcess | None = None
    orphans: list[int] = []
    try:
        a.wait_ready()
        run = start_run(s.api, "bench-kill")
        reader = EventReader(s.api, run["id"])
        first = reader.wait_for(30.0, "step.started", attempt=1)
        orphans = children_of(a.process.pid)
        killed = time.time()
        a.kill()
        b = start_worker(s.database, s.workdir, f"b{attempt_no}", KILL_LEASE_SECONDS)
        survivors = [pid for pid in orphans if Path(f"/proc/{pid}").exists()]
        lease_expiry = step_lease(s.database, run["id"])
        b_ready = b.wait_ready()
        resumed = reader.wait_for(RECOVERY_BUDGET, "step.started", attempt=2)
        expired = next(e for e in reader.items if e["type"] == "step.lease_expired")
        done, _ = wait_for_run(s.api, run["id"], 30.0)
        reader.read_new()
    finally:
        a.kill()
        if b is not None:
            b.stop()
        reap_orphans(orphans, SCRIPT_SECONDS + 5)
    result = {
        "kill_after_step_started_s": round(killed - _at(first), 3),
        "kill_to_lease_expiry_s": None if lease_expiry is None else round(lease_expiry - killed, 3),
        "kill_to_worker_b_ready_s": round(b_ready - killed, 3),
        "kill_to_lease_expired_event_s": round(_at(expired) - killed, 3),
        "kill_to_resumed_s": round(_at(resumed) - killed, 3),
        "resumed_by": resumed["data"].get("worker"),
        "run_state": done["state"],
        "step_started_events": sum(1 for e in reader.items if e["type"] == "step.started"),
        "script_processes_of_a": len(orphans),
        "script_processes_surviving_the_kill": len(survivors),
    }
    log(
        f"{s.kind}: kill {attempt_no}: resumed {result['kill_to_resumed_s']:.2f} s after the "
        f"kill (lease expiry {result['kill_to_lease_expiry_s']} s, B ready "
        f"{result['kill_to_worker_b_ready_s']:.2f} s); run {done['state']}"
    )
    return result


def bench_recovery(kind: str) -> dict[str, Any]:
    with stack(kind) as s:
        step = {
            "id": "sleep",
            "type": "script",
            "config": {"command": f"sleep {SCRIPT_SECONDS}"},
            "depends_on": [],
        }
        save_workflow(s.api, "bench-kill", [step])
        samples = [recovery_once(s, n) for n in range(1, REPEATS + 1)]
        labels = s.labels()
    resumed = [x["kill_to_resumed_s"] for x in samples]
    return labels | {
        "lease_seconds": KILL_LEASE_SECONDS,
        "recover_every_seconds": max(0.2, min(5.0, KILL_LEASE_SECONDS / 2)),
        "poll_seconds": POLL_SECONDS,
        "script_seconds": SCRIPT_SECONDS,
        "repeats": len(samples),
        "p50_s": round(statistics.median(resumed), 3),
        "max_s": round(max(resumed), 3),
        "min_s": round(min(resumed), 3),
        "samples": samples,
    }


# --- main -----------------------------------------------------------------------------------


def source_commit() -> str:
    """The commit measured (with `+changes` when the working tree differs from it)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=ROOT,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=ROOT,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("overhead", "throughput", "recovery"), default=None)
    parser.add_argument("--database", choices=DATABASES, default=None)
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    kinds = [args.database] if args.database else list(DATABASES)
    wanted = {args.only} if args.only else {"overhead", "throughput", "recovery"}
    started = time.perf_counter()
    commit = source_commit()
    overhead: list[dict[str, Any]] = []
    throughput: list[dict[str, Any]] = []
    recovery: list[dict[str, Any]] = []
    for kind in kinds:
        if "overhead" in wanted:
            overhead.extend(bench_overhead(kind))
    for kind in kinds:
        if "throughput" in wanted and kind in THROUGHPUT_DATABASES:
            throughput.extend(throughput_case(kind, n) for n in THROUGHPUT_WORKERS)
    for kind in kinds:
        if "recovery" in wanted:
            recovery.append(bench_recovery(kind))
    worst = max((r["ms_per_step"] for r in overhead), default=None)
    met = bool(overhead) and all(
        r["state"] == "succeeded" and r["ms_per_step"] < TARGET_MS_PER_STEP for r in overhead
    )
    scaling = {}
    for kind in dict.fromkeys(r["database"] for r in throughput):
        by_workers = {r["workers"]: r for r in throughput if r["database"] == kind}
        low, high = min(by_workers), max(by_workers)
        if low != high and by_workers[low]["runs_per_second"]:
            scaling[kind] = {
                "workers": [low, high],
                "ratio": round(
                    (by_workers[high]["runs_per_second"] or 0) / by_workers[low]["runs_per_second"],
                    2,
                ),
            }
    path = write_result(
        "workflows",
        {
            "benchmark": "workflow engine: scheduling overhead, throughput, recovery",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            "worker": {
                "concurrency": CONCURRENCY,
                "poll_seconds": POLL_SECONDS,
                "grace_seconds": GRACE_SECONDS,
            },
            "overhead_steps": STEPS,
            "dag": {"seed": DAG_SEED, "window": DAG_WINDOW, "dependencies_per_step": "0-3"},
            "throughput_runs": RUNS,
            "target": {
                "ms_per_step": TARGET_MS_PER_STEP,
                "met": met,
                "worst_ms_per_step": worst,
            },
            "throughput_scaling": scaling,
            "duration_seconds": round(time.perf_counter() - started, 1),
            "overhead": overhead,
            "throughput": throughput,
            "recovery": recovery,
        },
    )
    if overhead:
        log(
            f"target < {TARGET_MS_PER_STEP:g} ms/step: {'met' if met else 'NOT met'} "
            f"(worst {worst} ms/step)"
        )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
