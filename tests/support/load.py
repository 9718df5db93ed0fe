"""Bounded load against a live server: concurrent clients that record every response, standalone
worker processes, and the faults a load test injects (kill -9, dropped database connections)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from tests.conftest import PG_HOST, PG_PORT, PG_USER
from tests.support.live import STELLA


@dataclass(frozen=True)
class Sample:
    """One request as a client saw it; `status` 0 means no response (a transport error)."""

    method: str
    route: str  # the path template, e.g. /promotions/{id}/approve
    status: int
    seconds: float
    retry_after: str | None
    at: float  # seconds since the load started
    error: str = ""


@dataclass
class Recorder:
    """Thread-safe list of samples."""

    started: float = field(default_factory=time.monotonic)
    samples: list[Sample] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(
        self, client: httpx.Client, method: str, route: str, path: str, **kwargs
    ) -> httpx.Response | None:
        begin = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self._add(Sample(method, route, 0, time.monotonic() - begin, None, begin, repr(exc)))
            return None
        elapsed = time.monotonic() - begin
        error = response.text[:300] if response.status_code >= 500 else ""
        retry_after = response.headers.get("Retry-After")
        self._add(Sample(method, route, response.status_code, elapsed, retry_after, begin, error))
        return response

    def _add(self, sample: Sample) -> None:
        sample = Sample(**(sample.__dict__ | {"at": sample.at - self.started}))
        with self.lock:
            self.samples.append(sample)

    def statuses(self) -> Counter[int]:
        return Counter(s.status for s in self.samples)

    def summary(self) -> str:
        latencies = sorted(s.seconds for s in self.samples if s.status)
        lines = [
            f"requests: {len(self.samples)}",
            "statuses: " + ", ".join(f"{k}={v}" for k, v in sorted(self.statuses().items())),
        ]
        if latencies:
            lines.append(
                f"latency: p50={percentile(latencies, 50) * 1000:.0f} ms "
                f"p99={percentile(latencies, 99) * 1000:.0f} ms "
                f"max={latencies[-1] * 1000:.0f} ms"
            )
        unavailable = sorted({round(s.at, 1) for s in self.samples if s.status == 503})
        if unavailable:
            lines.append(f"503 at t= {unavailable} s")
        by_route = Counter((s.method, s.route, s.status) for s in self.samples)
        lines += [f"  {m} {r} -> {st}: {n}" for (m, r, st), n in sorted(by_route.items())]
        return "\n".join(lines)


def percentile(ordered: list[float], pct: float) -> float:
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


class WorkerProcesses:
    """Standalone `stella worker` processes on one database, each in its own process group."""

    def __init__(self, database_url: str, home: Path, extra_env: dict[str, str] | None = None):
        self.database_url = database_url
        self.home = home
        self.extra_env = extra_env or {}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = (
            os.environ
            | {
                "STELLA_DATABASE_URL": self.database_url,
                "STELLA_HOME": str(self.home),
                "STELLA_WORKER_LEASE_SECONDS": "3",
                "STELLA_WORKER_POLL_SECONDS": "0.1",
                "STELLA_LOG_LEVEL": "warning",
            }
            | self.extra_env
        )
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

    @staticmethod
    def kill(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill(process)


def terminate_backends(dbname: str) -> int:
    """Terminate every connection to `dbname` (but ours); returns how many were terminated."""
    with psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return sum(1 for (done,) in rows if done)


def tracebacks(log: Path, limit: int = 6000) -> str:
    """The server log's tracebacks (the last `limit` characters of them), for failure messages."""
    if not log.exists():
        return ""
    text = log.read_text(errors="replace")
    index = text.find("Traceback")
    return text[index:][-limit:] if index >= 0 else ""
