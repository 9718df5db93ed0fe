"""Release creation through the HTTP API of a real `stella server`, on SQLite and PostgreSQL.

Two cases per database:

* digest already cached: components given as `repo@sha256:…` of an image pushed before; the
  server verified that digest once (warm-up) and answers later ones from its in-process
  VerifiedDigestCache, so a creation does no registry call;
* resolved against the local registry: components given as `repo:tag`; every creation sends a
  HEAD for the manifest to the loopback registry (tags are never cached).

Each case runs 300 requests from one client thread, then 300 more spread over 4 client
threads. For reference, the loopback registry's own HEAD latency is measured directly too.

Run: .venv/bin/python -m bench.bench_create (from the repository root; `make bench` does).
"""

from __future__ import annotations

import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import REGISTRY, REGISTRY_URL, create_database, drop_database, free_port
from tests.support.live import STELLA, start_server
from tests.support.oci import push_image

from bench.common import (
    Call,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    require_loopback,
    run_concurrent,
    run_serial,
    summary,
    warm_up,
    write_result,
)
from stella.adapters.registry.oci import MANIFEST_MEDIA_TYPES

REQUESTS = 300  # per case, single client; the same number again for the concurrent variant
THREADS = 4
REGISTRY_REFERENCE_REQUESTS = 100
CASE_BUDGET = 90.0  # seconds; a case stops early (and says so) when it runs out
DATABASES = ("sqlite", "postgresql")
CASES = (
    ("digest", "digest already cached"),
    ("tag", "resolved against the local registry"),
)


def registry_reference(repository: str) -> list[dict[str, Any]]:
    """HEAD manifest straight to the registry: with a kept-alive client and with a new client
    per request (what the server's OCI client does today)."""
    url = f"{REGISTRY_URL}/v2/{repository}/manifests/v1"
    headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
    results = []
    with httpx.Client(timeout=10) as pooled:

        def kept_alive(_i: int) -> bool:
            return pooled.head(url, headers=headers).status_code == 200

        def new_client(_i: int) -> bool:
            return httpx.request("HEAD", url, headers=headers, timeout=10).status_code == 200

        for label, call in (
            ("HEAD manifest, kept-alive httpx.Client", kept_alive),
            ("HEAD manifest, new httpx client per request (as the server does)", new_client),
        ):
            warm_up(call, 0, 5)
            samples = run_serial(call, REGISTRY_REFERENCE_REQUESTS, 60.0)
            results.append(
                {"database": "-", "case": label, "variant": "direct to the registry"}
                | summary(samples, 1)
            )
            log(f"registry reference: {label}: {_short(results[-1])}")
    return results


def _short(result: dict[str, Any]) -> str:
    return (
        f"{result['ok']}/{result['requests']} ok, {result['throughput_rps']} req/s, "
        f"p50 {result.get('p50_ms')} ms, p99 {result.get('p99_ms')} ms"
    )


def creation_call(http: httpx.Client, name: str, phase: int, reference: str, digest: str) -> Call:
    """POST /releases of `name` version `phase.0.i`; OK when created and pinned to `digest`."""

    def call(i: int) -> bool:
        body = {"name": name, "version": f"{phase}.0.{i}", "components": {"api": reference}}
        response = http.post("/releases", json=body)
        return response.status_code == 201 and response.json()["components"][0]["digest"] == digest

    return call


def _threaded_call(
    client: Callable[[], httpx.Client],
    name: str,
    phase: int,
    reference: str,
    digest: str,
    _thread: int,
) -> Call:
    """Each client thread gets its own connection."""
    return creation_call(client(), name, phase, reference, digest)


def bench_database(kind: str, tmp: Path, repository: str, digest: str) -> list[dict[str, Any]]:
    """Both cases, single and concurrent, against a fresh server on a fresh `kind` database."""
    database = create_database(kind, tmp, migrate=False)  # the server migrates it on start
    server = None
    clients: list[httpx.Client] = []
    results: list[dict[str, Any]] = []
    try:
        server = start_server([STELLA, "server"], tmp / "home", free_port(), database.url)
        version = database_version(database.engine)
        settings = database_settings(database.engine)
        log(f"{kind}: server on {server.url} ({version}; {settings})")
        token = server.token
        url = server.url

        def client() -> httpx.Client:
            made = api_client(url, token)
            clients.append(made)
            return made

        created = client().post(
            "/components", json={"name": "api", "repository": f"{REGISTRY}/{repository}"}
        )
        assert created.status_code == 201, created.text

        for case_no, (case, label) in enumerate(CASES, start=1):
            reference = (
                f"{REGISTRY}/{repository}@{digest}"
                if case == "digest"
                else f"{REGISTRY}/{repository}:v1"
            )
            name = f"bench-{case_no}"
            warm_up(creation_call(client(), name, 1, reference, digest), 0)
            single = run_serial(
                creation_call(client(), name, 2, reference, digest), REQUESTS, CASE_BUDGET
            )
            results.append(
                {"database": kind, "database_version": version, "database_settings": settings}
                | {"case": label}
                | {"variant": "1 client"}
                | summary(single, 1)
            )
            log(f"{kind}: {label}, 1 client: {_short(results[-1])}")

            many = run_concurrent(
                partial(_threaded_call, client, name, 3, reference, digest),
                THREADS,
                REQUESTS // THREADS,
                CASE_BUDGET,
            )
            results.append(
                {"database": kind, "database_version": version, "database_settings": settings}
                | {"case": label}
                | {"variant": f"{THREADS} clients"}
                | summary(many, THREADS)
            )
            log(f"{kind}: {label}, {THREADS} clients: {_short(results[-1])}")
    finally:
        for made in clients:
            made.close()
        if server is not None:
            server.stop()
        drop_database(database)
    return results


def main() -> None:
    exit_cleanly_on_sigterm()
    require_loopback(REGISTRY_URL)
    started = time.perf_counter()
    repository = f"bench/create-{uuid.uuid4().hex[:10]}"
    digest = push_image(REGISTRY_URL, repository, "v1", f"bench {repository}")
    log(f"pushed {REGISTRY}/{repository}:v1 = {digest}")
    results = registry_reference(repository)
    for kind in DATABASES:
        with tempfile.TemporaryDirectory(prefix=f"stella-bench-{kind}-") as tmp:
            results.extend(bench_database(kind, Path(tmp), repository, digest))
    path = write_result(
        "create",
        {
            "benchmark": "release creation through the HTTP API of a real stella server",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "requests_per_case": REQUESTS,
            "concurrent_threads": THREADS,
            "components_per_release": 1,
            "registry": REGISTRY_URL,
            "duration_seconds": round(time.perf_counter() - started, 1),
            "results": results,
        },
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
