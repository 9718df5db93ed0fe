"""API throughput: requests per second and p50/p99 latency of the main read and write
endpoints of real `stella server --no-worker` processes, on SQLite and PostgreSQL, with 1 and
with 4 API processes, and the cost of tracing.

Per database, one fresh database and five server processes started one after the other (the
first migrates it and creates the admin), all with the same `STELLA_SIGNING_KEY_DIR` and
`STELLA_DATA_DIR`: processes 0-3 with tracing off (`OTEL_TRACES_EXPORTER=none`), process 4
with tracing on (`OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT` = a tiny HTTP sink
in this process on 127.0.0.1 that answers 200 to `POST /v1/traces` and counts the spans).
With SQLite the processes share one database file (WAL): one writer at a time.

Estate: one component on the loopback registry's image, a clean scan of it, a `dev`
environment without targets or deployment on approval and with no gates configured, so it gets
the non-production defaults (previous_environment, security: both pass), SEED_RELEASES
releases (one promoted to dev).

Scenarios, each CLIENTS client threads for SCENARIO_SECONDS after WARMUP_PER_THREAD unmeasured
requests per thread (every thread keeps one keep-alive connection per process and sends its
requests round-robin over the scenario's processes):

* GET /api/v1/releases?limit=50
* GET /api/v1/promotions/{id}
* POST /api/v1/releases: one component given by digest (`repo@sha256:…`): no tag resolution;
  the server verifies a digest with the registry once and then answers from its in-process
  cache (each process verifies it once, during the warm-up)
* POST /api/v1/promotions: a release created by the previous scenario to `dev` (approved at
  once: both default gates pass); the scenario ends early if those releases run out

with 1 process (process 0) and with 4 (processes 0-3). Then tracing off (process 0) against
on (process 4), alternately, for GET /releases?limit=50 and POST /promotions (the request that
opens a span, `promotion.request`; reads open none) on releases created beforehand.

CPU time of the client (this process), of the server processes and of PostgreSQL's processes
is read from /proc before and after each scenario: the machine's CPUs are shared by all.

Run: .venv/bin/python -m bench.bench_api (from the repository root; `make bench` does).
`--database sqlite|postgresql` selects one database.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import (
    REGISTRY,
    REGISTRY_URL,
    TestDatabase,
    create_database,
    drop_database,
    free_port,
)
from tests.support.live import STELLA, LiveServer, start_server
from tests.support.oci import push_image

from bench.bench_workflows import source_commit
from bench.common import (
    Samples,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    require_loopback,
    summary,
    timed,
    write_result,
)

DATABASES = ("sqlite", "postgresql")
CLIENTS = 32  # client threads per scenario
SCENARIO_SECONDS = 10.0  # measured time per scenario
WARMUP_PER_THREAD = 3  # unmeasured requests per client thread before the clock starts
SCALE_OUT = 4  # API processes of the scaled-out scenarios
SEED_RELEASES = 60  # more than one page of 50
TRACING_POOL_SECONDS = 12.0  # unmeasured release creation for the tracing promotions
MODULE_BUDGET = 540.0  # seconds: the whole module stays under 10 minutes
SCENARIO_TIMEOUT = SCENARIO_SECONDS + 60.0  # a scenario's threads are waited for at most this

COMPONENT = "api"
DEV = {
    "name": "Dev",
    "slug": "dev",
    "promotion_order": 1,
    "deployment": {"deploy_on_approval": False},
}


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        msg = f"{what}: HTTP {response.status_code} {response.text[:500]}"
        raise RuntimeError(msg)
    return dict(response.json())


# --- the OTLP sink --------------------------------------------------------------------------


@dataclass
class SinkCounts:
    requests: int = 0
    bytes: int = 0
    spans: int = 0
    names: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"requests": self.requests, "bytes": self.bytes, "spans": self.spans} | {
                f"span {name}": n for name, n in self.names.items()
            }


def span_names(body: bytes) -> list[str]:
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
    except ImportError:  # pragma: no cover - the OTLP exporter brings it
        return []
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return [
        span.name
        for resource_spans in request.resource_spans
        for scope in resource_spans.scope_spans
        for span in scope.spans
    ]


@contextmanager
def otlp_sink() -> Iterator[tuple[str, SinkCounts]]:
    """An OTLP/HTTP endpoint on 127.0.0.1 that answers 200 to POST /v1/traces."""
    counts = SinkCounts()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = 200 if self.path == "/v1/traces" else 404
            if status == 200:
                names = span_names(body)
                with counts.lock:
                    counts.requests += 1
                    counts.bytes += len(body)
                    counts.spans += len(names)
                    counts.names.update(names)
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, name="otlp-sink", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- CPU accounting -------------------------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _postgres_cpu() -> dict[int, float]:
    """CPU seconds of each PostgreSQL process now alive."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = _proc_cpu(int(entry.name))
            except OSError:
                continue
    return found


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) seconds of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICKS, sum(values[:8]) / TICKS


def cpu_snapshot(servers: list[LiveServer]) -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = _machine_cpu()
    return {
        "client": usage.ru_utime + usage.ru_stime,
        "servers": sum(_proc_cpu(s.process.pid) for s in servers),
        "postgres": _postgres_cpu(),
        "machine_busy": busy,
        "machine_total": total,
    }


def cpu_used(before: dict[str, Any], after: dict[str, Any], wall: float) -> dict[str, Any]:
    """CPU seconds per second of wall time (1.0 = one CPU busy) of each party. PostgreSQL:
    the processes alive at the end (backends that exited meanwhile are not counted)."""
    old = before["postgres"]
    postgres = sum(cpu - old.get(pid, 0.0) for pid, cpu in after["postgres"].items())
    per = {k: (after[k] - before[k]) / wall for k in ("client", "servers") if wall > 0}
    per["postgres"] = postgres / wall if wall > 0 else 0.0
    total = after["machine_total"] - before["machine_total"]
    return {
        "client_cpus": round(per.get("client", 0.0), 2),
        "servers_cpus": round(per.get("servers", 0.0), 2),
        "postgres_cpus": round(per.get("postgres", 0.0), 2),
        "machine_busy_share": round((after["machine_busy"] - before["machine_busy"]) / total, 3)
        if total > 0
        else None,
    }


# --- the load -------------------------------------------------------------------------------

# A request of a scenario: gets the client for the process chosen, the thread and the request
# number; returns True when the answer was the expected one.
Request = Callable[[httpx.Client, int, int], bool]


@dataclass
class Outcome:
    samples: Samples
    exhausted: bool = False


def drive(
    urls: list[str], token: str, request: Request, servers: list[LiveServer], seconds: float
) -> dict[str, Any]:
    """CLIENTS threads, each with one keep-alive client per process, sending `request`
    round-robin over the processes for `seconds` after WARMUP_PER_THREAD unmeasured requests."""
    clock: dict[str, Any] = {}

    def start_clock() -> None:
        clock["cpu"] = cpu_snapshot(servers)
        clock["started"] = time.perf_counter()
        clock["deadline"] = time.monotonic() + seconds

    barrier = threading.Barrier(CLIENTS, action=start_clock, timeout=SCENARIO_TIMEOUT)
    exhausted = threading.Event()

    def worker(index: int) -> Samples:
        own = Samples()
        with ExitStack() as stack:
            clients = [stack.enter_context(api_client(url, token)) for url in urls]
            for k in range(WARMUP_PER_THREAD):
                with suppress(httpx.HTTPError, IndexError):
                    request(clients[(index + k) % len(clients)], index, -1 - k)
            barrier.wait()
            n = 0
            while time.monotonic() < clock["deadline"] and not exhausted.is_set():
                http = clients[(index + n) % len(clients)]
                try:
                    timed(lambda i, http=http: request(http, index, i), n, own)
                except IndexError:  # the pool of releases to promote is empty
                    exhausted.set()
                    break
                n += 1
        return own

    merged = Samples()
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        futures = [pool.submit(worker, n) for n in range(CLIENTS)]
        for future in futures:
            merged.merge(future.result(timeout=SCENARIO_TIMEOUT))
    merged.wall = time.perf_counter() - clock["started"]
    after = cpu_snapshot(servers)
    result = summary(merged, CLIENTS)
    result["truncated_by_deadline"] = False  # the deadline is the plan here, not a cut
    result["pool_exhausted"] = exhausted.is_set()
    result["cpu"] = cpu_used(clock["cpu"], after, merged.wall)
    return result


@dataclass
class Estate:
    reference: str  # repo@sha256:… of the component's image
    promotion_id: str
    pool: collections.deque[str] = field(default_factory=collections.deque)
    created: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def list_releases(_estate: Estate) -> Request:
    def call(http: httpx.Client, _thread: int, _i: int) -> bool:
        response = http.get("/releases", params={"limit": 50})
        return response.status_code == 200 and len(response.json()["items"]) == 50

    return call


def get_promotion(estate: Estate) -> Request:
    def call(http: httpx.Client, _thread: int, _i: int) -> bool:
        response = http.get(f"/promotions/{estate.promotion_id}")
        return response.status_code == 200 and response.json()["id"] == estate.promotion_id

    return call


def create_release(
    estate: Estate, name: str, keep: bool = True, idempotency_key: bool = False
) -> Request:
    """POST /releases; `keep`: the new release goes into the pool of releases to promote;
    `idempotency_key`: each request carries a new Idempotency-Key (what the CLI sends)."""

    def call(http: httpx.Client, thread: int, i: int) -> bool:
        version = f"1.{thread}.{i}" if i >= 0 else f"0.{thread}.{-i}"
        body = {"name": name, "version": version, "components": {COMPONENT: estate.reference}}
        headers = {"Idempotency-Key": str(uuid.uuid4())} if idempotency_key else None
        response = http.post("/releases", json=body, headers=headers)
        if response.status_code != 201:
            return False
        if keep:
            estate.pool.append(response.json()["id"])
        return True

    return call


def promote(estate: Estate, pool: collections.deque[str] | None = None) -> Request:
    """POST /promotions of the next release of the pool to dev: approved at once."""
    source = estate.pool if pool is None else pool

    def call(http: httpx.Client, _thread: int, _i: int) -> bool:
        release = source.popleft()  # IndexError when empty: the scenario ends
        body = {"release_id": release, "target_environment": "dev"}
        response = http.post("/promotions", json=body)
        return response.status_code == 201 and response.json()["state"] == "approved"

    return call


# --- the stack ------------------------------------------------------------------------------


@contextmanager
def live_stack(
    kind: str, sink_url: str
) -> Iterator[tuple[TestDatabase, list[LiveServer], LiveServer]]:
    """A fresh database, SCALE_OUT servers with tracing off and one with tracing on, sharing
    signing keys and data folder; all gone on the way out."""
    with tempfile.TemporaryDirectory(prefix=f"stella-bench-api-{kind}-") as tmp:
        workdir = Path(tmp)
        database = create_database(kind, workdir, migrate=False)  # the first server migrates
        shared = {
            "STELLA_SIGNING_KEY_DIR": str(workdir / "keys"),
            "STELLA_DATA_DIR": str(workdir / "data"),
            "OTEL_SERVICE_NAME": "stella-bench",
        }
        off = shared | {"OTEL_TRACES_EXPORTER": "none"}
        on = shared | {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": sink_url}
        servers: list[LiveServer] = []
        try:
            for n in range(SCALE_OUT + 1):
                servers.append(
                    start_server(
                        [STELLA, "server", "--no-worker"],
                        workdir / f"home-{n}",
                        free_port(),
                        database.url,
                        extra_env=off if n < SCALE_OUT else on,
                    )
                )
            # only the first process (it created the admin) wrote the admin's token; every
            # process accepts it: they share the database
            yield database, servers[:SCALE_OUT], servers[SCALE_OUT]
        finally:
            for server in servers:
                server.stop()
            drop_database(database)


def build_estate(server: LiveServer, repository: str, digest: str) -> Estate:
    reference = f"{REGISTRY}/{repository}@{digest}"
    with api_client(server.url, server.token) as admin:
        body = {"name": COMPONENT, "repository": f"{REGISTRY}/{repository}"}
        expect(admin.post("/components", json=body), 201, "component")
        expect(admin.post("/environments", json=DEV), 201, "environment dev")
        # an environment without gates gets the non-production defaults (previous_environment,
        # security): a clean scan lets the security gate pass
        expect(admin.post("/scans", json={"digest": digest, "findings": []}), 201, "scan")
        first = ""
        for n in range(SEED_RELEASES):
            body = {"name": "seed", "version": f"1.0.{n}", "components": {COMPONENT: reference}}
            release = expect(admin.post("/releases", json=body), 201, f"release 1.0.{n}")
            first = first or release["id"]
        body = {"release_id": first, "target_environment": "dev"}
        promotion = expect(admin.post("/promotions", json=body), 201, "promotion")
        if promotion["state"] != "approved":
            msg = f"the promotion to dev is {promotion['state']}, not approved"
            raise RuntimeError(msg)
    return Estate(reference, str(promotion["id"]))


def server_exits(servers: list[LiveServer]) -> list[dict[str, Any]]:
    gone = []
    for server in servers:
        code = server.process.poll()
        if code is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            log(f"{server.url} exited with status {code}; its log ends with:\n{tail}")
            gone.append({"url": server.url, "returncode": code, "log_tail": tail})
    return gone


def _line(kind: str, row: dict[str, Any]) -> str:
    cpu = row["cpu"]
    return (
        f"{kind}: {row['endpoint']}, {row['processes']} process(es)"
        + (f", tracing {row['tracing']}" if "tracing" in row else "")
        + f": {row['throughput_rps']} req/s, p50 {row.get('p50_ms')} ms, p99 "
        f"{row.get('p99_ms')} ms, {row['ok']}/{row['requests']} ok"
        + (" (releases to promote ran out)" if row["pool_exhausted"] else "")
        + f"; CPUs: client {cpu['client_cpus']}, servers {cpu['servers_cpus']}, postgres "
        f"{cpu['postgres_cpus']}, machine {cpu['machine_busy_share']}"
    )


def bench_database(
    kind: str, repository: str, digest: str, sink_url: str, sink: SinkCounts
) -> dict[str, Any]:
    with live_stack(kind, sink_url) as (database, servers, traced):
        labels = {
            "database": kind,
            "database_version": database_version(database.engine),
            "database_settings": database_settings(database.engine),
        }
        estate = build_estate(servers[0], repository, digest)
        token = servers[0].token
        everyone = [*servers, traced]
        rows: list[dict[str, Any]] = []
        for processes in (1, SCALE_OUT):
            chosen = servers[:processes]
            urls = [s.url for s in chosen]
            cases = (
                ("GET /releases?limit=50", "read", list_releases(estate)),
                ("GET /promotions/{id}", "read", get_promotion(estate)),
                ("POST /releases (component by digest)", "write", None),
                (
                    "POST /releases with Idempotency-Key",
                    "write",
                    create_release(estate, f"api-k{processes}", keep=False, idempotency_key=True),
                ),
                ("POST /promotions (to dev)", "write", promote(estate)),
            )
            for endpoint, mode, request in cases:
                if request is None:
                    request = create_release(estate, f"api-p{processes}")
                row = {"endpoint": endpoint, "kind": mode, "processes": processes}
                row |= drive(urls, token, request, everyone, SCENARIO_SECONDS)
                rows.append(row)
                log(_line(kind, row))
            estate.pool.clear()  # the 1-process releases are not promoted by 4 processes
        # tracing: releases to promote, made beforehand and split in two equal pools
        estate.pool.clear()
        urls = [s.url for s in servers]
        drive(urls, token, create_release(estate, "api-traced"), everyone, TRACING_POOL_SECONDS)
        made = list(estate.pool)
        half = len(made) // 2
        pools = {"off": collections.deque(made[:half]), "on": collections.deque(made[half:])}
        log(f"{kind}: {len(made)} releases made for the tracing promotions")
        tracing: list[dict[str, Any]] = []
        for endpoint, make in (
            ("GET /releases?limit=50", lambda _state: list_releases(estate)),
            ("POST /promotions (to dev)", lambda state: promote(estate, pools[state])),
        ):
            for state, server in (("off", servers[0]), ("on", traced)):
                before = sink.snapshot()
                row = {"endpoint": endpoint, "processes": 1, "tracing": state}
                row |= drive([server.url], token, make(state), everyone, SCENARIO_SECONDS)
                time.sleep(6.0 if state == "on" else 0.0)  # the batch exporter's 5 s delay
                after = sink.snapshot()
                row["sink"] = {k: after[k] - before.get(k, 0) for k in after}
                tracing.append(row)
                log(_line(kind, row) + f"; sink received {row['sink']}")
        exits = server_exits(everyone)
    return labels | {"scenarios": rows, "tracing": tracing, "server_exited": exits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=DATABASES, default=None)
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    require_loopback(REGISTRY_URL)
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = source_commit()
    repository = f"bench/api-{uuid.uuid4().hex[:10]}"
    digest = push_image(REGISTRY_URL, repository, "v1", f"bench {repository}")
    log(f"pushed {REGISTRY}/{repository}:v1 = {digest}")
    results = []
    with otlp_sink() as (sink_url, sink):
        for kind in [args.database] if args.database else DATABASES:
            if time.perf_counter() - started > MODULE_BUDGET / 2 and results:
                log(f"{kind}: skipped, the module's time budget is spent")
                continue
            results.append(bench_database(kind, repository, digest, sink_url, sink))
    path = write_result(
        "api",
        {
            "benchmark": "API throughput of real stella server processes",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "clients": CLIENTS,
            "scenario_seconds": SCENARIO_SECONDS,
            "warmup_per_thread": WARMUP_PER_THREAD,
            "scale_out": SCALE_OUT,
            "seed_releases": SEED_RELEASES,
            "duration_seconds": round(time.perf_counter() - started, 1),
            "results": results,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
