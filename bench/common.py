"""Shared benchmark mechanics: bounded request loops, latency summaries, result files.

Every loop here is bounded twice: by a request count and by a wall-clock deadline. Every
request has its own timeout. Latencies are measured on the client, around the whole HTTP call.
"""

from __future__ import annotations

import json
import signal
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
REQUEST_TIMEOUT = 10.0  # seconds, per request
WARMUP = 20  # unmeasured requests before each measured case

# One measured call: gets the request number, returns True when the answer was the expected one.
Call = Callable[[int], bool]


@dataclass
class Samples:
    """Latencies (seconds) of the successful requests of one case, plus what went wrong."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    truncated: bool = False
    wall: float = 0.0

    def failed(self, what: str) -> None:
        self.errors += 1
        if len(self.error_examples) < 3:
            self.error_examples.append(what[:300])

    def merge(self, other: Samples) -> None:
        self.latencies.extend(other.latencies)
        self.errors += other.errors
        self.error_examples.extend(other.error_examples[: 3 - len(self.error_examples)])
        self.truncated = self.truncated or other.truncated


def summary(samples: Samples, clients: int) -> dict[str, Any]:
    """Count, throughput and latency percentiles (ms) of one case."""
    lat = sorted(samples.latencies)
    done = len(lat) + samples.errors
    result: dict[str, Any] = {
        "clients": clients,
        "requests": done,
        "ok": len(lat),
        "errors": samples.errors,
        "error_examples": samples.error_examples,
        "truncated_by_deadline": samples.truncated,
        "wall_seconds": round(samples.wall, 3),
        "throughput_rps": round(done / samples.wall, 1) if samples.wall > 0 else None,
    }
    if len(lat) >= 2:
        cuts = statistics.quantiles(lat, n=100, method="inclusive")
        result |= {
            "p50_ms": round(cuts[49] * 1000, 2),
            "p90_ms": round(cuts[89] * 1000, 2),
            "p99_ms": round(cuts[98] * 1000, 2),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2),
            "min_ms": round(lat[0] * 1000, 2),
            "max_ms": round(lat[-1] * 1000, 2),
        }
    return result


def timed(call: Call, i: int, samples: Samples) -> None:
    """Run one call, recording its latency when it succeeded and the error otherwise."""
    started = time.perf_counter()
    try:
        ok = call(i)
    except httpx.HTTPError as exc:
        samples.failed(f"{type(exc).__name__}: {exc}")
        return
    elapsed = time.perf_counter() - started
    if ok:
        samples.latencies.append(elapsed)
    else:
        samples.failed(f"request {i}: unexpected answer")


def run_serial(call: Call, count: int, budget: float, first: int = 0) -> Samples:
    """`count` calls one after the other, stopping early when `budget` seconds are spent."""
    samples = Samples()
    started = time.perf_counter()
    deadline = time.monotonic() + budget
    for i in range(first, first + count):
        if time.monotonic() > deadline:
            samples.truncated = True
            break
        timed(call, i, samples)
    samples.wall = time.perf_counter() - started
    return samples


def run_concurrent(
    make_call: Callable[[int], Call], threads: int, per_thread: int, budget: float
) -> Samples:
    """`threads` clients, each making `per_thread` measured calls (each thread gets its own
    call). Calls are numbered 0 … threads*per_thread-1; before the clock starts each thread
    makes WARMUP unmeasured calls numbered from threads*per_thread on, so that connections
    (HTTP keep-alive, the server's database pool) are open when measuring begins."""
    clock: dict[str, float] = {}

    def start_clock() -> None:  # run by one thread when all have warmed up
        clock["started"] = time.perf_counter()
        clock["deadline"] = time.monotonic() + budget

    barrier = threading.Barrier(threads, action=start_clock, timeout=budget)

    def worker(index: int) -> Samples:
        call = make_call(index)
        warm_up(call, threads * per_thread + index * WARMUP)
        own = Samples()
        barrier.wait()
        for i in range(index * per_thread, (index + 1) * per_thread):
            if time.monotonic() > clock["deadline"]:
                own.truncated = True
                break
            timed(call, i, own)
        return own

    merged = Samples()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        futures = [pool.submit(worker, n) for n in range(threads)]
        for future in futures:
            merged.merge(future.result(timeout=3 * budget))
    merged.wall = time.perf_counter() - clock["started"]
    return merged


def warm_up(call: Call, first: int, count: int = WARMUP) -> None:
    """A few unmeasured calls (connection set-up, caches, JIT-free but lazy imports)."""
    for i in range(first, first + count):
        call(i)


def api_client(base_url: str, token: str) -> httpx.Client:
    """A keep-alive client for the API of a loopback server."""
    require_loopback(base_url)
    return httpx.Client(
        base_url=base_url + "/api/v1",
        timeout=REQUEST_TIMEOUT,
        headers={"Authorization": f"Bearer {token}"},
    )


def require_loopback(url: str) -> None:
    """The benchmarks only ever talk to 127.0.0.1."""
    host = urlsplit(url if "//" in url else f"http://{url}").hostname or ""
    if not host.startswith("127."):
        msg = f"benchmarks only talk to 127.0.0.1, got {url}"
        raise SystemExit(msg)


def database_version(engine: Any) -> str:
    """`SQLite 3.x` or the PostgreSQL server's version line."""
    from sqlalchemy import text

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            return "SQLite " + str(conn.execute(text("select sqlite_version()")).scalar())
        full = str(conn.execute(text("select version()")).scalar())
        return full.split(" on ")[0]


def database_settings(engine: Any) -> str:
    """The durability settings that matter for write latency."""
    from sqlalchemy import text

    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            mode = conn.execute(text("pragma journal_mode")).scalar()
            sync = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}.get(
                int(conn.execute(text("pragma synchronous")).scalar() or 0), "?"
            )
            return f"journal_mode={mode}, synchronous={sync}"
        names = ("fsync", "synchronous_commit", "shared_buffers")
        values = [f"{n}={conn.execute(text(f'show {n}')).scalar()}" for n in names]
        return ", ".join(values)


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def exit_cleanly_on_sigterm() -> None:
    """`timeout` sends SIGTERM: turn it into SystemExit so `finally` blocks stop servers."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)
