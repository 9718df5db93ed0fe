"""Write docs/benchmarks.md from the raw results in bench/results/ (create.json, list.json).

Run: .venv/bin/python -m bench.report (from the repository root; `make bench` does).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, ROOT

DOC = ROOT / "docs" / "benchmarks.md"


def _first(path: str, key: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            name, sep, value = line.partition(":" if path.startswith("/proc") else "=")
            if sep and name.strip() == key:
                return value.strip().strip('"')
    except OSError:
        return None
    return None


def machine() -> dict[str, str]:
    """CPU model, cores, memory, OS and Python of this machine, and the date (`date -u`)."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    logical = sum(1 for line in cpuinfo.splitlines() if line.startswith("processor"))
    mem_kb = (_first("/proc/meminfo", "MemTotal") or "0 kB").split()[0]
    # scripts/bench.sh records `date -u` when the run starts; otherwise: now
    date = os.environ.get("BENCH_DATE") or (
        subprocess.run(
            ["date", "-u"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    )
    return {
        "cpu": _first("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cores": f"{logical or os.cpu_count()} logical CPUs",
        "memory": f"{int(mem_kb) / 1024 / 1024:.1f} GiB",
        "os": f"{_first('/etc/os-release', 'PRETTY_NAME') or platform.system()}, "
        f"kernel {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": date,
    }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rps(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _requests(r: dict[str, Any]) -> str:
    text = str(r["requests"])
    if r["errors"]:
        text += f" ({r['errors']} failed)"
    if r["truncated_by_deadline"]:
        text += " (stopped at the time budget)"
    return text


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _databases(*docs: dict[str, Any] | None) -> list[str]:
    seen: dict[str, str] = {}
    for doc in docs:
        for item in (doc or {}).get("results", []) + (doc or {}).get("datasets", []):
            if item.get("database_version") and item["database"] not in seen:
                seen[item["database"]] = (
                    f"{item['database_version']} ({item.get('database_settings', '')})"
                )
    return [f"{kind}: {text}" for kind, text in seen.items()]


def creation_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Release creation",
        "",
        f"`POST /api/v1/releases` with one component per release, {doc['requests_per_case']} "
        "requests per row (after 20 unmeasured warm-up requests per client), against a fresh "
        "`stella server` process on a fresh database. *digest already cached*: the component is "
        "`repo@sha256:…` of an image pushed before, which the server verified once and then "
        "answers from its in-process `VerifiedDigestCache` (no registry call). *resolved against "
        "the local registry*: the component is `repo:tag`, so every creation sends one "
        "`HEAD /v2/…/manifests/<tag>` to the registry on 127.0.0.1:5000. "
        f"With {doc['concurrent_threads']} clients the same number of requests is spread over "
        f"{doc['concurrent_threads']} client threads, each with its own connection.",
        "",
        "| Database | Case | Clients | Requests | Throughput (req/s) | p50 (ms) | p99 (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [r for r in doc["results"] if r["database"] != "-"]
    lines += [
        f"| {r['database']} | {r['case']} | {r['clients']} | {_requests(r)} "
        f"| {_rps(r['throughput_rps'])} | {_ms(r.get('p50_ms'))} | {_ms(r.get('p99_ms'))} |"
        for r in rows
    ]
    reference = [r for r in doc["results"] if r["database"] == "-"]
    if reference:
        lines += [
            "",
            "For reference, the registry alone (the same `HEAD` sent straight from the benchmark "
            "process, one client):",
            "",
            "| Request | Requests | Throughput (req/s) | p50 (ms) | p99 (ms) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['case']} | {_requests(r)} | {_rps(r['throughput_rps'])} "
            f"| {_ms(r.get('p50_ms'))} | {_ms(r.get('p99_ms'))} |"
            for r in reference
        ]
    return [*lines, ""]


def list_section(doc: dict[str, Any]) -> list[str]:
    target = doc["target"]["p99_list_ms"]
    lines = [
        f"## List queries at {doc['releases']:,} releases",
        "",
        f"One tenant, {doc['releases']:,} releases (50 names, 2,000 versions each; 90% active, "
        "8% deprecated, 2% draft), one `release_components` row each, bulk-inserted with "
        "SQLAlchemy Core `executemany` into a freshly migrated database, ids from `new_id` "
        "(time-ordered UUIDv7). On PostgreSQL the two tables are `VACUUM (ANALYZE)`d after the "
        "load (what autovacuum would do shortly after); SQLite is used as the server leaves it. "
        f"Then a real `stella server` answers {doc['requests_per_query']} requests per query "
        f"(after 20 warm-up requests), one client; the cursor row follows `next_cursor` "
        f"{doc['cursor_hops']} times from the first page and measures every hop.",
        "",
        "| Database | Releases | Insert time (s) | Rows/s inserted | Size on disk (MB) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {d['database']} | {d['releases']:,} | {d['insert_seconds']} "
        f"| {d['insert_rows_per_second']:,} | {d['size_bytes'] / 1e6:.0f} |"
        for d in doc["datasets"]
    ]
    lines += [
        "",
        f"| Database | Query | Clients | Requests | Throughput (req/s) | p50 (ms) | p99 (ms) "
        f"| p99 < {target:g} ms |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        p99 = r.get("p99_ms")
        if not r["query"].startswith("list"):
            verdict = "n/a (not a list)"
        else:
            verdict = "-" if p99 is None else ("yes" if p99 < target else "**no**")
        lines.append(
            f"| {r['database']} | {r['query']} (`{r['path']}`) | {r['clients']} | {_requests(r)} "
            f"| {_rps(r['throughput_rps'])} | {_ms(r.get('p50_ms'))} | {_ms(p99)} | {verdict} |"
        )
    return [*lines, ""]


def conclusions(create: dict[str, Any] | None, lists: dict[str, Any] | None) -> list[str]:
    lines = ["## Conclusions", ""]
    if lists is not None:
        target = lists["target"]["p99_list_ms"]
        single = [
            r for r in lists["results"] if r["query"].startswith("list") and r["clients"] == 1
        ]
        worst = max(single, key=lambda r: r.get("p99_ms") or float("inf"))
        met = lists["target"]["met"] and all(r["errors"] == 0 for r in single)
        lines.append(
            f"- **Target p99 list query < {target:g} ms at {lists['releases']:,} releases: "
            f"{'met' if met else 'NOT met'}** on "
            f"{' and '.join(dict.fromkeys(r['database'] for r in single))} with one client "
            f"(worst p99 {_ms(worst.get('p99_ms'))} ms: {worst['database']}, {worst['query']})."
        )
        crowd = [r for r in lists["results"] if r["query"].startswith("list") and r["clients"] > 1]
        if crowd:
            figures = ", ".join(f"{r['database']} {_ms(r.get('p99_ms'))} ms" for r in crowd)
            lines.append(
                f"- With {crowd[0]['clients']} concurrent clients on the same machine the "
                f"first-page p99 is {figures} (not part of the target; client and server "
                "share the CPUs)."
            )
    if create is not None:
        rows = {
            (r["database"], r["case"], r["clients"]): r
            for r in create["results"]
            if r["database"] != "-"
        }
        for kind in dict.fromkeys(k[0] for k in rows):
            cached = rows.get((kind, "digest already cached", 1), {})
            tagged = rows.get((kind, "resolved against the local registry", 1), {})
            lines.append(
                f"- Release creation (no target stated in the issue), {kind}, one client: "
                f"{_rps(cached.get('throughput_rps'))} req/s with a cached digest "
                f"(p99 {_ms(cached.get('p99_ms'))} ms), "
                f"{_rps(tagged.get('throughput_rps'))} req/s resolving a tag "
                f"(p99 {_ms(tagged.get('p99_ms'))} ms)."
            )
        reference = [r for r in create["results"] if r["database"] == "-"]
        if len(reference) == 2:
            lines.append(
                f"- A tag resolution costs far more than the registry needs: a `HEAD` on a "
                f"kept-alive connection takes {_ms(reference[0].get('p50_ms'))} ms (p50), one "
                f"through a new HTTP client per request, as the server's OCI client makes "
                f"(`httpx.request` in `adapters/registry/oci.py`), "
                f"{_ms(reference[1].get('p50_ms'))} ms."
            )
    return [*lines, ""]


def _duration(*docs: dict[str, Any] | None) -> str:
    seconds = sum(doc["duration_seconds"] for doc in docs if doc is not None)
    return f"{seconds / 60:.1f} minutes"


def main() -> None:
    create, lists = _load("create"), _load("list")
    if create is None and lists is None:
        msg = f"no results in {RESULTS_DIR}; run `make bench`"
        raise SystemExit(msg)
    info = machine()
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`scripts/bench.sh` → `bench/`); the figures below are "
        "measured, not estimated. Raw results: `bench/results/*.json` (git-ignored).",
        "",
        "| | |",
        "|---|---|",
        f"| Date | {info['date']} |",
        f"| CPU | {info['cpu']} ({info['cores']}) |",
        f"| Memory | {info['memory']} |",
        f"| OS | {info['os']} |",
        f"| Python | {info['python']} |",
        *[f"| Database | {text} |" for text in _databases(create, lists)],
        "",
        "## How to run",
        "",
        "```sh",
        "make bench",
        "```",
        "",
        "As root it starts the loopback registry (127.0.0.1:5000) and PostgreSQL "
        "(127.0.0.1:5432) when they are absent, like `make test`; otherwise it uses the ones "
        "already running. Each benchmark creates its own databases and drops them again. "
        f"This run took {_duration(create, lists)} (benchmarks only, services already up).",
        "",
        "Latencies are measured in the client around each complete HTTP call (httpx, keep-alive, "
        "127.0.0.1), so they include HTTP, authentication, the database and JSON. Client, "
        "server, registry and PostgreSQL run on the same machine and share its CPUs. p50 and "
        "p99 are percentiles of the successful requests; throughput counts all requests over "
        "the wall time of the row. On a small shared VM like this one, consecutive runs "
        "differed by up to about 40% in p50 and p99: compare rows of one run with each other, "
        "and treat single-digit differences between runs as noise.",
        "",
    ]
    if create is not None:
        lines += creation_section(create)
    if lists is not None:
        lines += list_section(lists)
    lines += conclusions(create, lists)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines).rstrip() + "\n")
    print(f"[bench] wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
