"""List-query latency with 100,000 releases, on SQLite and PostgreSQL.

For each database: a fresh migrated database gets one tenant (with its admin, through
`create_tenant`), 50 components and 100,000 releases with one release_components row each,
bulk-inserted through SQLAlchemy Core in batches (executemany). Ids are UUIDv7 from `new_id`,
stamped with increasing creation times, so the id order is the creation order. Then a real
`stella server` on that database answers, one client at a time:

* GET /releases?limit=50                   the first page
* GET /releases?limit=50&cursor=…          following next_cursor page after page
* GET /releases?limit=50&name=…            filtered by name (2,000 releases per name)
* GET /releases?limit=50&state=draft       filtered by a rare state (2% of releases)
* GET /releases/{id}                       one release by id (random ids)

Target from the issue: p99 of a list query < 50 ms at 100k releases.

Run: .venv/bin/python -m bench.bench_list (from the repository root; `make bench` does).
"""

from __future__ import annotations

import hashlib
import platform
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, insert, select, text
from tests.conftest import TestDatabase, create_database, drop_database, free_port
from tests.support.live import STELLA, start_server

from bench.common import (
    Call,
    Samples,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    run_concurrent,
    run_serial,
    summary,
    timed,
    warm_up,
    write_result,
)
from stella.adapters.db import tables as t
from stella.bootstrap import build_container, utc_now
from stella.config import Settings
from stella.domain.ids import new_id
from stella.services.auth import create_tenant

RELEASES = 100_000
NAMES = 50  # release names == component names; 2,000 releases each
BATCH = 5_000
REQUESTS = 300  # per query kind
CURSOR_HOPS = 400  # pages followed through next_cursor (20,000 releases deep)
THREADS = 4
CASE_BUDGET = 60.0  # seconds; a case stops early (and says so) when it runs out
TARGET_P99_MS = 50.0
DATABASES = ("sqlite", "postgresql")
REGISTRY_HOST = "127.0.0.1:5000"  # only written into rows; never contacted here
MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def _state(i: int) -> str:
    """2% draft, 8% deprecated, the rest active."""
    if i % 50 == 7:
        return "draft"
    if i % 50 in {3, 13, 23, 33}:
        return "deprecated"
    return "active"


def seed(engine: Engine, tenant_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, Any]:
    """Insert the components and RELEASES releases; returns timings and a sample of ids."""
    started = time.perf_counter()
    first = datetime.now(UTC) - timedelta(seconds=RELEASES + 60)
    names = [f"svc-{n:02d}" for n in range(NAMES)]
    component_ids: dict[str, uuid.UUID] = {}
    with engine.begin() as conn:
        rows = []
        for name in names:
            component_ids[name] = new_id()
            rows.append(
                {
                    "id": component_ids[name],
                    "tenant_id": tenant_id,
                    "name": name,
                    "repository": f"{REGISTRY_HOST}/bench/{name}",
                    "runtime": {},
                    "created_at": first,
                    "updated_at": first,
                }
            )
        conn.execute(insert(t.components), rows)
    ids: list[uuid.UUID] = []
    for start in range(0, RELEASES, BATCH):
        releases, parts = [], []
        for i in range(start, min(start + BATCH, RELEASES)):
            name = names[i % NAMES]
            created = first + timedelta(seconds=i)
            release_id = new_id(int(created.timestamp() * 1000))
            ids.append(release_id)
            n = i // NAMES
            version = f"1.{n // 1000}.{n % 1000}"
            releases.append(
                {
                    "id": release_id,
                    "tenant_id": tenant_id,
                    "name": name,
                    "version": version,
                    "source_ref": hashlib.sha1(str(i).encode(), usedforsecurity=False).hexdigest(),
                    "state": _state(i),
                    "created_at": created,
                    "created_by": user_id,
                    "created_by_name": "admin",
                    "updated_at": created,
                }
            )
            parts.append(
                {
                    "release_id": release_id,
                    "name": name,
                    "component_id": component_ids[name],
                    "repository": f"{REGISTRY_HOST}/bench/{name}",
                    "digest": "sha256:" + hashlib.sha256(str(i).encode()).hexdigest(),
                    "resolved_from_tag": version,
                    "media_type": MEDIA_TYPE,
                }
            )
        with engine.begin() as conn:
            conn.execute(insert(t.releases), releases)
            conn.execute(insert(t.release_components), parts)
    inserted = time.perf_counter() - started
    if engine.dialect.name == "postgresql":
        # autovacuum would vacuum and analyze the tables soon after a load like this, in the
        # middle of the measurements; do it now so that the figures are of the steady state
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM (ANALYZE) release.releases, release.release_components"))
    with engine.begin() as conn:
        count = conn.execute(select(func.count()).select_from(t.releases)).scalar_one()
    assert count == RELEASES, count
    return {
        "releases": count,
        "release_components": count,
        "components": NAMES,
        "insert_seconds": round(inserted, 1),
        "insert_rows_per_second": round(2 * RELEASES / inserted),
        "newest_id": str(ids[-1]),
        "sample_ids": [str(i) for i in random.Random(7).sample(ids, REQUESTS)],
    }


def database_size(database: TestDatabase) -> int:
    """Bytes on disk (SQLite: the file and its WAL; PostgreSQL: the database)."""
    if database.kind == "sqlite":
        path = Path(database.url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    with database.engine.connect() as conn:
        return int(conn.execute(text("select pg_database_size(current_database())")).scalar_one())


def _page_ok(response: httpx.Response, expect_more: bool = True) -> bool:
    if response.status_code != 200:
        return False
    body = response.json()
    return len(body["items"]) == 50 and (body["next_cursor"] is not None) == expect_more


def measure(http: httpx.Client, data: dict[str, Any]) -> list[tuple[str, str, Samples, int]]:
    """(query, example path, samples, clients) for every query kind."""
    out: list[tuple[str, str, Samples, int]] = []

    def first_page(_i: int) -> bool:
        response = http.get("/releases", params={"limit": 50})
        return _page_ok(response) and response.json()["items"][0]["id"] == data["newest_id"]

    warm_up(first_page, 0)
    out.append(
        (
            "list, first page",
            "/releases?limit=50",
            run_serial(first_page, REQUESTS, CASE_BUDGET),
            1,
        )
    )

    # Follow next_cursor page after page; each hop is measured on its own.
    hops = Samples()
    cursor = http.get("/releases", params={"limit": 50}).json()["next_cursor"]
    seen_last: list[str] = []
    hop_started = time.perf_counter()
    deadline = time.monotonic() + CASE_BUDGET

    def hop(_i: int) -> bool:
        nonlocal cursor
        response = http.get("/releases", params={"limit": 50, "cursor": cursor})
        if not _page_ok(response):
            return False
        body = response.json()
        ids = [item["id"] for item in body["items"]]
        ordered = ids == sorted(ids, reverse=True) and (not seen_last or seen_last[-1] > ids[0])
        seen_last[:] = ids[-1:]
        cursor = body["next_cursor"]
        return ordered

    for i in range(CURSOR_HOPS):
        if time.monotonic() > deadline:
            hops.truncated = True
            break
        timed(hop, i, hops)
        if hops.errors:
            break  # the cursor chain is broken; later hops would measure nothing useful
    hops.wall = time.perf_counter() - hop_started
    out.append(
        (
            f"list, next_cursor pages 2-{CURSOR_HOPS + 1} (rows 51-{(CURSOR_HOPS + 1) * 50})",
            "/releases?limit=50&cursor=…",
            hops,
            1,
        )
    )

    def by_name(i: int) -> bool:
        name = f"svc-{i % NAMES:02d}"
        response = http.get("/releases", params={"limit": 50, "name": name})
        return _page_ok(response) and {r["name"] for r in response.json()["items"]} == {name}

    warm_up(by_name, 0)
    out.append(
        (
            "list, filtered by name",
            "/releases?limit=50&name=svc-NN",
            run_serial(by_name, REQUESTS, CASE_BUDGET),
            1,
        )
    )

    def by_state(_i: int) -> bool:
        response = http.get("/releases", params={"limit": 50, "state": "draft"})
        return _page_ok(response) and {r["state"] for r in response.json()["items"]} == {"draft"}

    warm_up(by_state, 0)
    out.append(
        (
            "list, filtered by state (2% draft)",
            "/releases?limit=50&state=draft",
            run_serial(by_state, REQUESTS, CASE_BUDGET),
            1,
        )
    )

    sample = data["sample_ids"]

    def by_id(i: int) -> bool:
        response = http.get(f"/releases/{sample[i % len(sample)]}")
        return response.status_code == 200 and response.json()["id"] == sample[i % len(sample)]

    warm_up(by_id, 0)
    out.append(
        ("get one release by id", "/releases/{id}", run_serial(by_id, REQUESTS, CASE_BUDGET), 1)
    )
    return out


def bench_database(kind: str, tmp: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    database = create_database(kind, tmp)
    server = None
    clients: list[httpx.Client] = []
    try:
        version = database_version(database.engine)
        container = build_container(
            Settings(home=tmp / "seed-home", database_url=database.url), database.engine
        )
        issued = create_tenant(container.uow, "bench", "admin", utc_now)
        log(f"{kind}: seeding {RELEASES:,} releases ({version})")
        data = seed(database.engine, issued.user.tenant_id, issued.user.id)
        dataset = {
            "database": kind,
            "database_version": version,
            "database_settings": database_settings(database.engine),
            "size_bytes": database_size(database),
        } | {k: v for k, v in data.items() if k not in {"sample_ids", "newest_id"}}
        log(f"{kind}: inserted in {data['insert_seconds']} s, {dataset['size_bytes']:,} bytes")
        database.engine.dispose()

        server = start_server([STELLA, "server"], tmp / "home", free_port(), database.url)
        token = issued.token
        http = api_client(server.url, token)
        clients.append(http)
        results = []
        for query, path, samples, clients_n in measure(http, data):
            results.append(
                {"database": kind, "query": query, "path": path} | summary(samples, clients_n)
            )
            r = results[-1]
            log(
                f"{kind}: {query}: {r['ok']}/{r['requests']} ok, {r['throughput_rps']} req/s, "
                f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms"
            )

        def threaded(_thread: int) -> Call:
            own = api_client(server.url, token)
            clients.append(own)
            return lambda _i: _page_ok(own.get("/releases", params={"limit": 50}))

        many = run_concurrent(threaded, THREADS, REQUESTS // THREADS, CASE_BUDGET)
        results.append(
            {"database": kind, "query": "list, first page", "path": "/releases?limit=50"}
            | summary(many, THREADS)
        )
        r = results[-1]
        log(
            f"{kind}: first page, {THREADS} clients: {r['throughput_rps']} req/s, "
            f"p50 {r.get('p50_ms')} ms, p99 {r.get('p99_ms')} ms"
        )
        return dataset, results
    finally:
        for made in clients:
            made.close()
        if server is not None:
            server.stop()
        drop_database(database)


def main() -> None:
    exit_cleanly_on_sigterm()
    started = time.perf_counter()
    datasets, results = [], []
    for kind in DATABASES:
        with tempfile.TemporaryDirectory(prefix=f"stella-bench-{kind}-") as tmp:
            dataset, measured = bench_database(kind, Path(tmp))
        datasets.append(dataset)
        results.extend(measured)
    list_p99 = [
        r.get("p99_ms") for r in results if r["query"].startswith("list") and r["clients"] == 1
    ]
    met = all(p is not None and p < TARGET_P99_MS for p in list_p99)
    path = write_result(
        "list",
        {
            "benchmark": "release list queries through the HTTP API with 100,000 releases",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "releases": RELEASES,
            "requests_per_query": REQUESTS,
            "cursor_hops": CURSOR_HOPS,
            "concurrent_threads": THREADS,
            "target": {
                "p99_list_ms": TARGET_P99_MS,
                "met": met,
                "worst_p99_ms": max((p for p in list_p99 if p is not None), default=None),
            },
            "duration_seconds": round(time.perf_counter() - started, 1),
            "datasets": datasets,
            "results": results,
        },
    )
    log(f"target p99 < {TARGET_P99_MS:g} ms for list queries: {'met' if met else 'NOT met'}")
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
