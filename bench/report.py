"""Write docs/benchmarks.md from the raw results in bench/results/ (create.json, list.json,
workflows.json, gates.json, deployments.json, evidence.json, security_matching.json,
security_reevaluation.json, api.json, masking.json).

A benchmark whose raw results are missing keeps its section (and its conclusions) as the
previous docs/benchmarks.md has them, marked as kept, so that one benchmark can be run and
reported alone.

Run: .venv/bin/python -m bench.report (from the repository root; `make bench` does).
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
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


def _gap(gaps: dict[str, Any], name: str) -> str:
    figures = gaps.get(name, {})
    return f"{_ms(figures.get('p50_ms'))} / {_ms(figures.get('p99_ms'))}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def workflow_section(doc: dict[str, Any]) -> list[str]:
    worker = doc["worker"]
    target = doc["target"]["ms_per_step"]
    lines = [
        "## Workflow engine",
        "",
        "Real processes on a fresh migrated database per case: `stella server --no-worker` "
        "serves the API, separate `stella worker` processes run the steps (each with "
        f"`STELLA_WORKER_CONCURRENCY={worker['concurrency']}` and "
        f"`STELLA_WORKER_POLL_SECONDS={worker['poll_seconds']:g}`). No-op steps are `wait` "
        'with `{"duration": "0s"}`. Source measured: commit '
        f"`{doc.get('commit', 'unknown')}`. The API server, the workers, PostgreSQL and the "
        f"benchmark client share the machine's {doc.get('logical_cpus', '?')} logical CPUs.",
        "",
        f"### Scheduling overhead: one run of {doc['overhead_steps']:,} no-op steps, "
        "one worker process",
        "",
        "*dag*: each step depends on 0-3 of the "
        f"{doc['dag']['window']} steps before it (seeded, the same DAG every time); *chain*: "
        "each step depends on the one before. *Run time* is from the run's `created_at` to "
        "its `finished_at`; ms/step = run time / steps; *client wall* is the same from "
        "the benchmark's side (from sending the request that creates the run until a poll "
        "every 0.2 s sees it finished). Gaps come from the run's event "
        "log (`at` is the worker's clock), p50 / p99 in ms: *succeeded → next started*: for "
        "every `step.started`, the time since the latest `step.succeeded` before it; "
        "*started → succeeded*: the same step from claim to result (the claim's commit, the "
        "hand-over to a slot, the no-op, the start of recording it); *ready → started*: a "
        "step made ready by a finished dependency until it starts (in a DAG this includes "
        "waiting for a free slot).",
        "",
        f"| Database | Shape | Steps (edges, roots) | Run time (s) | Client wall (s) | ms/step "
        f"| < {target:g} ms | succeeded → next started | started → succeeded "
        "| ready → started |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in doc["overhead"]:
        ok = r["state"] == "succeeded" and r["ms_per_step"] < target
        verdict = "yes" if ok else "**no**"
        if r["state"] != "succeeded":
            verdict += f" (run {r['state']})"
        lines.append(
            f"| {r['database']} | {r['shape']} | {r['steps']:,} ({r['edges']:,}, "
            f"{r['roots']}) | {_s(r['wall_seconds'])} | {_s(r['client_wall_seconds'])} "
            f"| {r['ms_per_step']:.2f} | {verdict} "
            f"| {_gap(r['gaps'], 'succeeded_to_next_started')} "
            f"| {_gap(r['gaps'], 'started_to_succeeded')} "
            f"| {_gap(r['gaps'], 'ready_to_started')} |"
        )
    shifted = [r for r in doc["overhead"] if r.get("events_out_of_time_order", {}).get("events")]
    if shifted:
        worst = max(shifted, key=lambda r: r["events_out_of_time_order"]["max_ms"])
        lines += [
            "",
            "Event times are not always in log order: "
            + ", ".join(
                f"{r['database']} {r['shape']} {r['events_out_of_time_order']['events']}"
                for r in shifted
            )
            + " event(s) carry an `at` earlier than an event logged before them (at most "
            f"{_ms(worst['events_out_of_time_order']['max_ms'])} ms). `claim_step` reads the "
            "clock before it gets the run's lock, and that reading becomes the `step.started` "
            "time, the step's `started_at` and the base of its lease expiry; the gaps above "
            "are computed from these times as they are (so a gap can be negative).",
        ]
    if doc["throughput"]:
        lines += [
            "",
            f"### Throughput: {doc['throughput_runs']:,} runs of a 3-step chain of no-op steps",
            "",
            "All runs are created first (4 client threads, no worker running); then the "
            "worker processes start. *Processing time* is from the first step's `started_at` "
            "to the last run's `finished_at` (worker start-up excluded; the wall time from "
            "starting the processes is given too). Every step ran exactly once when "
            "*step.started events* is 3 per run. Only "
            f"{doc.get('logical_cpus', '?')} logical CPUs: with 4 processes (16 slots) the "
            "workers, the database and each other compete for them.",
            "",
            "| Database | Worker processes | Runs succeeded | Creating them (s) | Processing "
            "time (s) | Wall from start (s) | Runs/s | Steps/s | vs 1 process "
            "| step.started events |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = {r["database"]: r for r in doc["throughput"] if r["workers"] == 1}
        for r in doc["throughput"]:
            one = base.get(r["database"])
            ratio = (
                f"{r['runs_per_second'] / one['runs_per_second']:.2f}x"
                if one and one["runs_per_second"] and r["runs_per_second"]
                else "-"
            )
            done = f"{r['succeeded']:,} of {r['runs']:,}"
            if r["truncated_by_deadline"]:
                done += " (stopped at the time budget)"
            lines.append(
                f"| {r['database']} | {r['workers']} | {done} "
                f"| {_s(r['create']['wall_seconds'])} | {_s(r['processing_seconds'])} "
                f"| {_s(r['wall_seconds_from_spawn'])} | {_rps(r['runs_per_second'])} "
                f"| {_rps(r['steps_per_second'])} | {ratio} | {r['step_started_events']:,} |"
            )
    if doc["recovery"]:
        first = doc["recovery"][0]
        lines += [
            "",
            "### Recovery after a worker is killed",
            "",
            f"A run whose only step is `script` `sleep {first['script_seconds']}`. Worker A "
            f"(`STELLA_WORKER_LEASE_SECONDS={first['lease_seconds']:g}`) starts it; as soon as "
            "the event `step.started` appears, A's process group gets SIGKILL and worker B "
            "(same settings) is started at once. *Resumed* is B's `step.started` (attempt 2) "
            "minus the moment of the kill; *lease left* is the step's `lease_expires_at` at "
            "the kill (all times from the same machine clock); seconds, "
            f"{first['repeats']} kills per database.",
            "",
            "| Database | Lease (s) | Kills | Lease left at the kill (p50) | B ready (p50) "
            "| `step.lease_expired` (p50) | Resumed p50 | Resumed max | Runs succeeded "
            "| A's script still running after the kill |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["recovery"]:
            samples = r["samples"]

            def median(key: str, rows: list[dict[str, Any]] = samples) -> str:
                values = [x[key] for x in rows if x.get(key) is not None]
                return _s(statistics.median(values)) if values else "-"

            succeeded = sum(1 for x in samples if x["run_state"] == "succeeded")
            survived = sum(1 for x in samples if x.get("script_processes_surviving_the_kill"))
            lines.append(
                f"| {r['database']} | {r['lease_seconds']:g} | {r['repeats']} "
                f"| {median('kill_to_lease_expiry_s')} | {median('kill_to_worker_b_ready_s')} "
                f"| {median('kill_to_lease_expired_event_s')} | {_s(r['p50_s'])} "
                f"| {_s(r['max_s'])} | {succeeded} of {len(samples)} "
                f"| {survived} of {len(samples)} |"
            )
        lines += [
            "",
            "A dead worker's step is found by another worker's periodic recovery "
            f"(every lease / 2, clamped to 0.2-5 s: {first['recover_every_seconds']:g} s here) "
            "once its lease has expired, so the time to resume is bounded by about the lease "
            "plus that interval plus the poll, not by anything the survivor can speed up: "
            f"{first['lease_seconds']:g} + {first['recover_every_seconds']:g} s here, "
            "30 + 5 s with the default `STELLA_WORKER_LEASE_SECONDS=30`.",
        ]
    return [*lines, ""]


def _p(figures: dict[str, Any] | None) -> str:
    """`p50 / p99` (ms) of a distribution or a summary."""
    figures = figures or {}
    return f"{_ms(figures.get('p50_ms'))} / {_ms(figures.get('p99_ms'))}"


def _met(r: dict[str, Any], target: float) -> str:
    p99 = r.get("p99_ms")
    ok = p99 is not None and p99 < target and not r["errors"] and not r["truncated_by_deadline"]
    return "yes" if ok else "**no**"


def gates_section(doc: dict[str, Any]) -> list[str]:
    target = doc["target"]
    policy = doc["policy"]
    n = doc["promotions"]
    lines = [
        "## Promotion gates",
        "",
        "`POST /api/v1/promotions/{id}/reevaluate` on production promotions, against a fresh "
        "`stella server --no-worker` on a fresh database. The production environment has all "
        f"six gates ({', '.join(f'`{g}`' for g in doc['gates'])}), two freeze windows (an "
        "absolute one in 2099 and an expired weekly RRULE one), one healthy target, 2 "
        "required approvals with separation of duties and one Rego policy of "
        f"{policy['rules']} distinct `deny` rules ({policy['bytes']:,} bytes) over the "
        "documented input (release, components, verdicts, approvals, promotion, target, "
        "source, gate results, `now`: name and digest deny lists, semantic versions, "
        "registries, approval rules, past blackout periods, clock skew). No rule fires, so "
        "every gate but `approval` passes and each promotion stays `awaiting_approval` with 1 "
        "of 2 approvals: every re-evaluation runs all six gates and appends an evaluation. A "
        "request counts as successful only when the answer shows exactly that. Setup: "
        f"{n + 2} releases, each promoted to dev, to stage (approved) and to prod (one "
        "approval), through the API.",
        "",
        f"*1 client*: one promotion, {doc['single_requests']} requests one after the other "
        f"(after 20 unmeasured). *{n} concurrent*: {n} client threads, one per promotion, "
        "each with its own connection; in each round a barrier releases them together and "
        f"each sends one re-evaluation; {doc['rounds']} measured rounds after one unmeasured. "
        f"Only {doc.get('logical_cpus', '?')} logical CPUs for the benchmark's {n} threads, "
        "the server and the database"
        + (
            f"; the 1-minute load average was {load['before'][0]:.1f} before and "
            f"{load['after'][0]:.1f} after this benchmark (other processes count too)."
            if (load := doc.get("load_average"))
            else "."
        ),
        "",
        "| Database | Case | Requests | Throughput (req/s) | p50 (ms) | p90 (ms) | p99 (ms) "
        "| max (ms) | Target p99 | Met |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        for key, label, goal in (
            ("single", "1 client", target["p99_single_ms"]),
            ("concurrent", f"{n} concurrent", target["p99_concurrent_ms"]),
        ):
            row = r[key]
            lines.append(
                f"| {r['database']} | {label} | {_requests(row)} | {_rps(row['throughput_rps'])} "
                f"| {_ms(row.get('p50_ms'))} | {_ms(row.get('p90_ms'))} "
                f"| {_ms(row.get('p99_ms'))} | {_ms(row.get('max_ms'))} | < {goal:g} ms "
                f"| {_met(row, goal)} |"
            )
    lines += [
        "",
        "Wall time of each concurrent round (all "
        f"{n} answers): "
        + "; ".join(
            f"{r['database']} {', '.join(f'{w:.0f}' for w in r['concurrent']['round_wall_ms'])} ms"
            for r in doc["results"]
        )
        + ".",
        "",
        "### Where the time goes",
        "",
        "The same work measured in layers, p50 / p99 in ms. The HTTP row is the 1-client case "
        "above. The others run in the benchmark process (time.perf_counter), one call after "
        "the other: the service function `reevaluate` on the same database (no HTTP, "
        f"{doc['service_calls']} calls): lock and read the promotion, gather the context, "
        "evaluate, insert evaluation, event and audit event, commit, read the promotion "
        "again; its reads alone (`find` + `build_context` in a read-only unit of work, "
        f"{doc['read_calls']} calls); `gates.evaluate` on the context the server recorded "
        f"(`GET /promotions/{{id}}/evaluations/{{seq}}`), {doc['gate_iterations']:,} calls "
        "with one `RegoPolicyEvaluator` (compiled once, before measuring); the Rego `deny` query "
        "alone; and single gates. Each layer is measured on its own, at another moment than "
        "the others, so the differences between rows are approximate.",
        "",
        "| Layer | " + " | ".join(r["database"] for r in doc["results"]) + " |",
        "|---|" + "---:|" * len(doc["results"]),
    ]
    layers = [
        ("HTTP `POST …/reevaluate`, 1 client", lambda r: r["single"]),
        ("service `reevaluate`, in process", lambda r: r["in_process"].get("service_reevaluate")),
        (
            "reads: `find` + `build_context`",
            lambda r: r["in_process"].get("find_and_build_context"),
        ),
        ("`gates.evaluate`, all six gates", lambda r: r["in_process"]["gates_evaluate"]),
        (
            f"Rego `deny` alone ({policy['rules']} rules)",
            lambda r: r["in_process"]["policy_deny"],
        ),
        (
            "`freeze_window` gate alone",
            lambda r: r["in_process"]["other_gates"]["freeze_window"],
        ),
    ]
    for label, pick in layers:
        lines.append(f"| {label} | " + " | ".join(_p(pick(r)) for r in doc["results"]) + " |")
    notes = []
    for r in doc["results"]:
        ip = r["in_process"]
        listing = r.get("evaluations_listing", {})
        notes.append(
            f"- {r['database']}: the first evaluation (compiling the policy) took "
            f"{_ms(ip['first_evaluation_with_compile_ms'])} ms; replaying the recorded "
            f"context gave {'the same' if ip['replay_identical'] else '**different**'} "
            f"results; each evaluation stores a {ip['context_bytes']:,}-byte context (the "
            f"Rego source included; the policy input is {ip['policy_input_bytes']:,} bytes); "
            f"on a deliberately violating input the policy returns "
            f"{ip['deny_messages_on_violating_input']} deny messages (the rules do run)."
            + (
                f" After the 1-client case, `GET /promotions/{{id}}/evaluations` returned "
                f"{listing['evaluations']} evaluations ({listing['response_bytes'] / 1e6:.2f} MB, "
                f"not paginated) in {_ms(listing['ms'])} ms"
                + (
                    f", and `GET …/evaluations/{{seq}}` the latest one with its context "
                    f"({listing['latest_with_context_bytes'] / 1e3:.0f} kB) in "
                    f"{_ms(listing['latest_with_context_ms'])} ms"
                    if "latest_with_context_ms" in listing
                    else ""
                )
                + "."
                if listing
                else ""
            )
        )
    for r in doc["results"]:
        if r.get("server_exited"):
            notes.append(
                f"- **{r['database']}: the server exited during the benchmark** (status "
                f"{r['server_exited']['returncode']}); requests after that failed. The end of "
                "its log is in `bench/results/gates.json`."
            )
    lines += ["", *notes]
    return [*lines, ""]


def gates_conclusions(doc: dict[str, Any]) -> list[str]:
    target = doc["target"]
    n = doc["promotions"]

    def figures(key: str) -> str:
        return ", ".join(
            f"{r['database']} p99 {_ms(r[key].get('p99_ms'))} ms" for r in doc["results"]
        )

    lines = [
        f"- **Target gate evaluation p99 < {target['p99_single_ms']:g} ms (1 client): "
        f"{'met' if target['single_met'] else 'NOT met'}** ({figures('single')}; "
        f"{doc['policy']['rules']}-rule policy, all six gates).",
        f"- **Target p99 < {target['p99_concurrent_ms']:g} ms with {n} concurrent "
        f"promotions: {'met' if target['concurrent_met'] else 'NOT met'}** "
        f"({figures('concurrent')}).",
    ]
    for r in doc["results"]:
        ip = r["in_process"]
        service = (ip.get("service_reevaluate") or {}).get("p50_ms")
        reads = (ip.get("find_and_build_context") or {}).get("p50_ms")
        evaluate = ip["gates_evaluate"].get("p50_ms")
        rego = ip["policy_deny"].get("p50_ms")
        http = r["single"].get("p50_ms")
        rounds = r["concurrent"]["round_wall_ms"]
        if None in (service, reads, evaluate, rego, http) or not rounds:
            continue
        per_request = statistics.fmean(rounds) / n
        lines.append(
            f"- {r['database']}, p50: of {_ms(http)} ms per request, the gate functions take "
            f"{_ms(evaluate)} ms (Rego {_ms(rego)} ms of it); the service call takes "
            f"{_ms(service)} ms in process, of which {_ms(reads)} ms are the reads that "
            f"gather the context and about {_ms(service - reads - evaluate)} ms the writes, "
            f"the commit and reading the promotion again; HTTP, authentication and JSON add "
            f"about {_ms(max(http - service, 0.0))} ms. With {n} requests at once the server "
            "answers "
            f"one every {_ms(per_request)} ms on average (a round takes "
            f"{statistics.fmean(rounds):.0f} ms), so the last answers of a round wait for "
            "almost all the others: the p99 is the round's length, not one evaluation's."
        )
    return lines


def conclusions(
    create: dict[str, Any] | None,
    lists: dict[str, Any] | None,
    flows: dict[str, Any] | None = None,
    gate_doc: dict[str, Any] | None = None,
) -> list[str]:
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
                f"- For reference, a registry `HEAD` on a kept-alive connection takes "
                f"{_ms(reference[0].get('p50_ms'))} ms (p50) and one through a new HTTP client "
                f"{_ms(reference[1].get('p50_ms'))} ms; the server's OCI connectors share one "
                f"pooled client, so they pay the first figure."
            )
    if flows is not None:
        lines += workflow_conclusions(flows)
    if gate_doc is not None:
        lines += gates_conclusions(gate_doc)
    return [*lines, ""]


def workflow_conclusions(doc: dict[str, Any]) -> list[str]:
    lines = []
    target = doc["target"]
    if doc["overhead"]:
        figures = ", ".join(
            f"{r['database']} {r['shape']} {r['ms_per_step']:.1f}" for r in doc["overhead"]
        )
        met = target["met"]
        lines.append(
            f"- **Target scheduling overhead < {target['ms_per_step']:g} ms/step: "
            f"{'met' if met else 'NOT met'}** ({figures} ms/step for "
            f"{doc['overhead_steps']:,} no-op steps, one worker process)."
        )
    for kind, scaling in doc.get("throughput_scaling", {}).items():
        rows = {r["workers"]: r for r in doc["throughput"] if r["database"] == kind}
        low, high = scaling["workers"]
        lines.append(
            f"- Throughput, {kind}, {doc['throughput_runs']:,} runs of 3 no-op steps: "
            f"{_rps(rows[low]['runs_per_second'])} runs/s "
            f"({_rps(rows[low]['steps_per_second'])} steps/s) with {low} worker process, "
            f"{_rps(rows[high]['runs_per_second'])} runs/s "
            f"({_rps(rows[high]['steps_per_second'])} steps/s) with {high}: "
            f"x{scaling['ratio']:.2f} on {doc.get('logical_cpus', '?')} logical CPUs shared "
            "with the database and the API server."
        )
    for r in doc["recovery"]:
        lines.append(
            f"- Recovery, {r['database']}: a killed worker's step resumed on another worker "
            f"after {_s(r['p50_s'])} s (p50; max {_s(r['max_s'])} s) with a "
            f"{r['lease_seconds']:g} s lease: the lease dominates."
        )
    if any(
        x.get("script_processes_surviving_the_kill") for r in doc["recovery"] for x in r["samples"]
    ):
        lines.append(
            "- SIGKILL of a worker's process group does not stop its `script` steps: they run "
            "in their own session (so that a timeout can kill their group), outlive the "
            "worker and overlap with the retry on the next worker."
        )
    return lines


def _sec(figures: dict[str, Any] | None, key: str = "p50") -> str:
    value = (figures or {}).get(key)
    return "-" if value is None else f"{value:.2f}"


def _settings(settings: dict[str, str]) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in settings.items()) or "product defaults"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _commits(doc: dict[str, Any]) -> str:
    """`commit X`, or which parts were measured on which commit after partial runs."""
    parts = doc.get("parts") or {}
    by_commit: dict[str, list[str]] = {}
    for part, entry in parts.items():
        by_commit.setdefault(str(entry.get("commit")), []).append(part)
    if len(by_commit) <= 1:
        return f"commit `{doc.get('commit', 'unknown')}`"
    return "; ".join(f"commit `{c}` ({', '.join(p)})" for c, p in by_commit.items())


BREAKDOWN_LABELS = {
    "request_gates_and_run_start": "`POST /promotions`: gates, workflow run started",
    "worker_claims_deploy_step": "worker claims the deploy step (worker poll)",
    "deploy_step_creates_job": "deploy step renders the task, creates the job",
    "agent_claims_job": "agent's long poll claims the job (woken, or listener polls)",
    "agent_pull": "agent: pull by digest",
    "agent_verify": "agent: verify RepoDigests",
    "agent_start_container": "agent: create and start the container",
    "agent_health": "agent: health check answers",
    "agent_other": "agent: task hand-over and result delivery",
    "deploy_step_sees_result": "deploy step sees the result (woken, or its poll)",
    "run_finishes": "step result → run finished",
    "promotion_settled": "run finished → promotion `deployed` (worker housekeeping)",
    "client_sees_deployed": "benchmark sees `deployed` (its 20 ms poll)",
}


# parts of the deployments benchmark and the previous report's sub-section each one writes
DEPLOYMENT_PARTS = {
    "overhead": "### Orchestration overhead",
    "fanout": "### Fan-out",
    "many": "### 100 deployments at once",
    "heartbeats": "### Control-plane cost of",
}


def deployments_section(doc: dict[str, Any]) -> list[str]:
    constants = doc.get("agent_constants", {})
    lines = [
        "## Deployments",
        "",
        "Real processes against the test Docker engine (a private `dockerd`, "
        f"{doc.get('docker_engine', '?')}) and the loopback registry: `stella server` (API, "
        "embedded worker, mutual-TLS agent listener) on a fresh migrated database and "
        "`stella agent run` processes enrolled with join tokens. The image is a busybox "
        f"`httpd` (from `{doc.get('base_image', '?')}`) serving one page, pushed once; "
        "releases pin it by digest; containers run with `--network host --init`. Source "
        f"measured: {_commits(doc)}. Server, worker, agents, Docker, "
        f"the registry, PostgreSQL and the benchmark share {doc.get('logical_cpus', '?')} "
        "logical CPUs.",
        "",
    ]
    if doc["overhead"]:
        first = doc["overhead"][0]
        lines += [
            "### Orchestration overhead: one container, promotion to `deployed`",
            "",
            'One environment with gates `["previous_environment"]` (the first environment: the '
            "gate passes), one `docker_host` target, one agent with `--heartbeat "
            "1`. *Stella*: a new release (same digest) per iteration, `POST /promotions`, then "
            f"`GET` the promotion every {doc['client_poll_seconds'] * 1000:.0f} ms until it is "
            "`deployed` (the component's health check, `GET /` every "
            f"{constants.get('component_health_interval', '?')}, is part of the deployment). "
            "*docker CLI*: `docker pull repo@digest`, `docker run -d --init --network host`, "
            f"then `GET /` every {doc['client_poll_seconds'] * 1000:.0f} ms until 200. *Ansible*: "
            "`ansible-playbook` with one `community.docker.docker_container` task (same image "
            "by digest, `network_mode: host`, `init: true`, `pull: missing`), then the same "
            "`GET` loop. Before every deployment the container is removed and the image "
            "deleted with `docker rmi`, so **all three pull** the image (the busybox base "
            "layer stays in the engine as the base image; the pull fetches the manifest, the "
            "config and the one-file top layer). The methods alternate (rotating order), "
            f"{first['iterations']} measured deployments each after one unmeasured; seconds.",
            "",
            "| Database | Server settings | Method | p50 (s) | p90 (s) | min (s) | max (s) "
            "| Failed |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
        names = {"stella": "Stella (promotion)", "direct": "docker CLI", "ansible": "Ansible"}
        for r in doc["overhead"]:
            for method, label in names.items():
                m = r["methods"].get(method)
                if m is None:
                    continue
                fig = m["seconds"]
                lines.append(
                    f"| {r['database']} | {r['profile']}: {_settings(r['server_settings'])} "
                    f"| {label} | {_sec(fig)} | {_sec(fig, 'p90')} | {_sec(fig, 'min')} "
                    f"| {_sec(fig, 'max')} | {m.get('failed', 0)} |"
                )
        lines += [
            "",
            "| Database | Server settings | Overhead p50 (s) | Overhead p90 (s) "
            "| Paired p50 (s) | < 10 s (spec) | < 0.5 s (ours) | Ansible - docker CLI p50 (s) |",
            "|---|---|---:|---:|---:|---|---|---:|",
        ]
        for r in doc["overhead"]:
            o = r["overhead_seconds"]
            lines.append(
                f"| {r['database']} | {r['profile']} | {o['p50']:.2f} | {o['p90']:.2f} "
                f"| {o['paired_p50']:.2f} | {'yes' if r['target']['spec_met'] else '**no**'} "
                f"| {'yes' if r['target']['ours_met'] else '**no**'} "
                f"| {_sec(r.get('ansible_minus_direct_seconds'))} |"
            )
        lines += [
            "",
            "*Overhead* = Stella minus docker CLI (p50 of each, p90 of each); *paired* = the "
            "median of the per-iteration differences.",
        ]
        ansible = doc.get("ansible") or {}
        if ansible.get("versions"):
            v = ansible["versions"]
            lines += [
                "",
                f"Ansible: `ansible=={v.get('ansible')}` (ansible-core {v.get('ansible-core')}, "
                f"community.docker {v.get('community.docker')} as bundled), pinned in "
                "`bench/requirements-ansible.txt` and installed by the benchmark into its own "
                f"venv (`{ansible.get('venv')}`), `ansible-playbook -i localhost, ` with a local "
                "connection; its time includes starting `ansible-playbook` (Python, the "
                "collection, the module run).",
            ]
        elif ansible.get("not_measured"):
            lines += ["", f"Ansible: not measured: {ansible['not_measured']}."]
        lines += [
            "",
            "#### Where the time goes (p50 of each segment, seconds)",
            "",
            "From the records on one machine clock: the promotion's events, the workflow run "
            "and its step, the deployment job (created, claimed, finished) and the agent's "
            "own phase timings. "
            + (
                "A long-polling agent is woken when a job becomes pending in its environment, "
                "the deploy step when one of its jobs ends (in-process events; PostgreSQL "
                "NOTIFY across processes); without a wake-up the listener looks for a job every "
                f"{constants.get('listener_long_poll_db_poll_seconds', '?')} s and the deploy "
                f"step at its jobs every {constants.get('deploy_step_poll_seconds', '?')} s. "
                if constants.get("job_wakeups")
                else "Fixed intervals in the code: the agent listener checks for a job every "
                f"{constants.get('listener_long_poll_db_poll_seconds', '?')} s while an agent "
                "long-polls; the deploy step checks its jobs every "
                f"{constants.get('deploy_step_poll_seconds', '?')} s; "
            )
            + "The worker moves a finished run's promotion to `deployed` on its next poll.",
            "",
            "| Segment | "
            + " | ".join(f"{r['database']}, {r['profile']}" for r in doc["overhead"])
            + " |",
            "|---|" + "---:|" * len(doc["overhead"]),
        ]
        for key, label in BREAKDOWN_LABELS.items():
            values = []
            for r in doc["overhead"]:
                value = r["methods"]["stella"].get("breakdown_p50", {}).get(key)
                values.append("-" if value is None else f"{value:.3f}")
            lines.append(f"| {label} | " + " | ".join(values) + " |")
        lost = [
            f"{r['database']} {r['profile']}"
            for r in doc["overhead"]
            if any(
                max(x.get("step_attempts") or [1]) > 1 for x in r["methods"]["stella"]["samples"]
            )
        ]
        if lost:
            lines += [
                "",
                f"In {', '.join(lost)} a deploy step ran more than once (its lease was lost).",
            ]
        lines.append("")
    lines += doc.get("kept", {}).get("overhead", [])
    lines += doc.get("kept", {}).get("fanout", [])
    if doc["fanout"]:
        lines += [
            f"### Fan-out: one release to {doc['fanout'][0]['rows'][0]['targets']} targets",
            "",
            "One environment of docker_host targets (each its own container name prefix and "
            "`PORT`), parallelism = targets, one promotion; wall time from `POST /promotions` "
            "to `deployed`. Before each run all containers are removed and the image deleted. "
            "An agent runs one task at a time. Server: "
            f"{_settings(doc['fanout'][0]['server_settings'])}; agents heartbeat every 30 s.",
            "",
            "| Database | Agents | Runs | Wall p50 (s) | Wall per run (s) | Job claimed → "
            "finished p50 (s) | Job waited for an agent p50 / max (s) | Jobs per agent |",
            "|---|---:|---:|---:|---|---:|---:|---|",
        ]
        for r in doc["fanout"]:
            for row in r["rows"]:
                runs = row["runs"]
                lines.append(
                    f"| {r['database']} | {row['agents']} | {row['deployed_runs']} of "
                    f"{row['repeats']} deployed | {_sec(row['seconds'])} "
                    f"| {', '.join(format(x['seconds'], '.2f') for x in runs)} "
                    f"| {_sec(runs[-1]['job_claimed_to_finished_s'])} "
                    f"| {_sec(runs[-1]['job_created_to_claimed_s'])} / "
                    f"{_sec(runs[-1]['job_created_to_claimed_s'], 'max')} "
                    f"| {'/'.join(str(n) for n in runs[-1]['jobs_per_agent'])} |"
                )
        lines += ["", "(Job columns: the last run of the row.)", ""]
    lines += doc.get("kept", {}).get("many", [])
    for r in doc["many"]:
        run = r["runs"][0]
        lines += [
            f"### {r['targets']} deployments at once on one control-plane node",
            "",
            f"{r['shape']} (chosen over 100 environments of one target: an agent is enrolled "
            f"for one environment, and 100 agent processes do not fit this machine), "
            f"{r['agents']} agents, server {_settings(r['server_settings'])}; the benchmark "
            f"gives up after {r['budget_seconds']:.0f} s. *Per deployment*: from "
            "`POST /promotions` to the job's result; *waited*: job created → claimed by an "
            "agent; *ran*: claimed → result.",
            "",
            "| Database | State | Wall (s) | Jobs succeeded | Per deployment p50 / p99 (s) "
            "| Waited p50 / p99 (s) | Ran p50 / p99 (s) | Jobs per agent |",
            "|---|---|---:|---:|---:|---:|---:|---|",
            f"| {r['database']} | {run['state']}{' (gave up)' if run['gave_up'] else ''} "
            f"| {run['seconds']:.2f} | {run['succeeded']} of {run['jobs']} "
            f"| {_sec(run['post_to_job_finished_s'])} / "
            f"{_sec(run['post_to_job_finished_s'], 'p99')} "
            f"| {_sec(run['job_created_to_claimed_s'])} / "
            f"{_sec(run['job_created_to_claimed_s'], 'p99')} "
            f"| {_sec(run['job_claimed_to_finished_s'])} / "
            f"{_sec(run['job_claimed_to_finished_s'], 'p99')} "
            f"| {'/'.join(str(n) for n in run['jobs_per_agent'])} |",
            "",
        ]
        if run.get("run_error"):
            lines += [f"Run error: {run['run_error'][:300]}", ""]
    lines += doc.get("kept", {}).get("heartbeats", [])
    if doc["heartbeats"]:
        lines += heartbeat_section(doc["heartbeats"])
    if doc.get("not_measured"):
        lines += ["Not measured: " + "; ".join(doc["not_measured"]) + ".", ""]
    return lines


def _connections(hb: dict[str, Any]) -> str:
    if hb.get("new_tls_connection_per_heartbeat", True):
        return "one new TLS connection per heartbeat (as agents did before they kept theirs)"
    return (
        f"each agent keeping its connection between heartbeats as `stella agent` does "
        f"({hb.get('tls_handshakes', '?'):,} TLS handshakes in the whole phase)"
    )


def heartbeat_section(rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    setup = first["setup"]
    hb = first["heartbeats"]
    lines = [
        f"### Control-plane cost of {setup['agents']:,} agents heartbeating every 30 s",
        "",
        f"{setup['agents']:,} agents in {setup['environments']} environments "
        f"({setup['targets_per_environment']} agents per environment, each pinned to its own "
        "docker_host target), inserted through the repositories, each with its own "
        "certificate from the server's agent CA. A separate client process (asyncio) sends "
        "their heartbeats (with a one-container inventory) over mutual TLS on an open-loop "
        f"schedule, {_connections(hb)}, at most "
        f"{hb['in_flight_limit']} at a time; a heartbeat that finds {hb['in_flight_limit'] * 20} "
        "waiting is dropped by the client (*failed* counts those and timeouts); *waited in the "
        "client* is from a heartbeat's scheduled time until it got a connection slot, "
        "*latency* from opening the connection to the answer. CPU is utime + stime of the "
        "`stella server` process (API, worker and listener threads; SQLite runs inside it) "
        "and, on PostgreSQL, of the backends serving the database (sampled every 0.25 s), "
        "from /proc over the measured window; 100% = one core. When the client starts, every "
        "agent's last heartbeat is set to that moment; *not heard from* counts the agents "
        "with no heartbeat recorded from then until the phase ended (about 100 s: they go "
        "offline 90 s after their last one), *offline* those the server's sweep had declared "
        "offline by then. "
        f"Server settings: {_settings(first['server_settings'])}.",
        "",
        "| Database | Load | Scheduled /s | Answered /s | Failed | Waited in the client p50 (ms) "
        "| Latency p50 / p99 (ms) "
        "| Server CPU (% of a core) | PostgreSQL CPU | Server CPU ms / heartbeat (net of idle) "
        "| Agents not heard from / offline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for key, label in (
            ("heartbeats", f"all {r['setup']['agents']:,} agents"),
            ("low_rate", f"{r['setup']['agents'] // r['low_rate']['divisor']:,} agents"),
        ):
            x = r[key]
            failed = sum(x["errors"].values()) + x["dropped_client_backlog"]
            pg = x.get("postgres_cpu_percent_of_one_core")
            offline = (
                _count(x["agent_states_after"].get("offline", 0)) if key == "heartbeats" else "-"
            )
            lines.append(
                f"| {r['database']} | {label}, {x['window_seconds']:.0f} s "
                f"| {x['rate_per_second']:.0f} | {x['achieved_per_second']:.1f} | {failed:,} "
                f"| {_ms(x['start_lateness_ms'].get('p50'))} "
                f"| {_ms(x['latency_ms'].get('p50'))} / {_ms(x['latency_ms'].get('p99'))} "
                f"| {x['server_cpu_percent_of_one_core']:.0f}% "
                f"| {'-' if pg is None else f'{pg:.0f}%'} "
                f"| {_ms(x.get('server_cpu_ms_per_heartbeat'))} "
                f"({_ms(x.get('server_cpu_ms_per_heartbeat_net_of_idle'))}) "
                f"| {_count(x.get('agents_without_an_answered_heartbeat'))} / {offline} |"
            )
    if not all(r["low_rate"].get("heartbeats_reset_at_start") for r in rows):
        lines += [
            "",
            "The low-rate rows of this run include the worker's sweep declaring offline the "
            "agents that stopped beating after the full-rate phase (thousands of state changes "
            "and audit events in the measured window), so their CPU per heartbeat is an upper "
            "bound and their p99 includes waiting for that transaction (on SQLite it holds the "
            "write lock). Later runs set every agent's last heartbeat before each phase.",
        ]
    lines += [
        "",
        "Before the load, the idle server (agents enrolled, no traffic: the worker's "
        "housekeeping only) used "
        + ", ".join(f"{r['server_idle_cpu_percent_before']:.0f}% ({r['database']})" for r in rows)
        + " of a core; the net column subtracts that.",
        "",
        f"One agent, {first['serial']['serial_keep_alive']['count']} heartbeats one after the "
        "other, and the service calls alone (in the "
        "benchmark process, same database, no HTTP or TLS: the heartbeat service call; "
        "the CPU of the calling process, PostgreSQL's own not included), CPU ms per heartbeat:",
        "",
        "| Database | New TLS connection each | One kept-alive connection "
        "| Service, 100 targets in the environment | Same, no inventory "
        "| Service, 1 target in the environment |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        serial = r["serial"]
        service = r["service_in_process"]
        per_env = r["setup"]["targets_per_environment"]
        crowded = service[f"{per_env}_targets_in_environment"]
        bare = service[f"{per_env}_targets_in_environment_no_inventory"]
        lines.append(
            f"| {r['database']} "
            f"| {_ms(serial['serial_new_connection'].get('server_cpu_ms_per_heartbeat'))} "
            f"| {_ms(serial['serial_keep_alive'].get('server_cpu_ms_per_heartbeat'))} "
            f"| {_ms(crowded['cpu_ms_per_call'])} | {_ms(bare['cpu_ms_per_call'])} "
            f"| {_ms(service['1_target_in_environment']['cpu_ms_per_call'])} |"
        )
    lp = first["long_polls"][0]
    lines += [
        "",
        "Agents that merely wait for work: each holds a long poll "
        f"(`POST /agent/v1/tasks/next?wait={lp['wait_seconds']}`, kept-alive connection, "
        f"no jobs), measured over {lp['window_seconds']:.0f} s. The listener looks for a job "
        f"every {1 / lp['claim_transactions_per_second_per_agent']:g} s per waiting agent "
        "without a wake-up (a read-only query each). The extrapolation is linear from the "
        "row; a saturated row (near 100%) underestimates it.",
        "",
        "| Database | Waiting agents | Server CPU (% of a core) | PostgreSQL CPU "
        "| Server CPU per agent (ms/s) "
        f"| Cores for {first['setup']['agents']:,} waiting agents (extrapolated) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for x in r["long_polls"]:
            pg = x.get("postgres_cpu_percent_of_one_core")
            lines.append(
                f"| {r['database']} | {x['agents']} | {x['server_cpu_percent_of_one_core']:.0f}% "
                f"| {'-' if pg is None else f'{pg:.0f}%'} "
                f"| {x['server_cpu_seconds_per_agent_per_second'] * 1000:.1f} "
                f"| {x['extrapolated_cores_for_10000_idle_agents']:.0f} |"
            )
    lines.append("")
    return lines


def deployments_conclusions(doc: dict[str, Any]) -> list[str]:
    lines = []
    for r in doc["overhead"]:
        o = r["overhead_seconds"]
        stella = r["methods"]["stella"]["seconds"]
        direct = r["methods"]["direct"]["seconds"]
        lines.append(
            f"- **Deployment orchestration overhead, {r['database']}, {r['profile']} server "
            f"settings: {o['p50']:.2f} s (p50; p90 {o['p90']:.2f} s)**: Stella "
            f"{stella['p50']:.2f} s vs the docker CLI {direct['p50']:.2f} s. Specification "
            f"< {r['target']['spec_seconds']:g} s: "
            f"{'met' if r['target']['spec_met'] else 'NOT met'}; "
            f"our target < {r['target']['ours_seconds']:g} s: "
            f"{'met' if r['target']['ours_met'] else 'NOT met'}."
        )
    for r in doc["overhead"]:
        b = r["methods"]["stella"].get("breakdown_p50", {})
        woken = doc.get("agent_constants", {}).get("job_wakeups")
        waits = {
            "worker poll": b.get("worker_claims_deploy_step"),
            ("agent woken for the job" if woken else "listener job poll"): b.get(
                "agent_claims_job"
            ),
            ("deploy step woken by the result" if woken else "deploy step poll"): b.get(
                "deploy_step_sees_result"
            ),
            "settling the promotion": b.get("promotion_settled"),
        }
        if None in waits.values():
            continue
        total = sum(v for v in waits.values() if v is not None)
        lines.append(
            f"- Where the deployment overhead goes ({r['database']}, {r['profile']}): "
            f"{total:.2f} s (sum of p50s) is waiting between components: "
            + ", ".join(f"{k} {v:.2f} s" for k, v in waits.items())
            + "."
        )
    if "ansible" in (doc["overhead"][0]["methods"] if doc["overhead"] else {}):
        r = doc["overhead"][0]
        lines.append(
            f"- Peer figure: Ansible `docker_container` took "
            f"{r['methods']['ansible']['seconds']['p50']:.2f} s (p50, {r['database']}) for the "
            "same pull-and-run, most of it starting `ansible-playbook`."
        )
    for r in doc["fanout"]:
        figures = ", ".join(
            f"{row['agents']} agent(s) {_sec(row['seconds'])} s" for row in r["rows"]
        )
        lines.append(
            f"- Fan-out to {r['rows'][0]['targets']} targets, {r['database']}: {figures} "
            "(p50 wall); an agent deploys one target at a time, so the wall time follows "
            "targets / agents."
        )
    for r in doc["many"]:
        run = r["runs"][0]
        lines.append(
            f"- Deployments at once ({r['targets']}), {r['database']}, {r['agents']} agents: "
            f"{run['state']} after {run['seconds']:.1f} s, per-deployment p50 "
            f"{_sec(run['post_to_job_finished_s'])} s, p99 "
            f"{_sec(run['post_to_job_finished_s'], 'p99')} s."
        )
    for r in doc["heartbeats"]:
        hb = r["heartbeats"]
        cores = (hb.get("server_cpu_ms_per_heartbeat_net_of_idle") or 0) * hb["rate_per_second"]
        cores /= 1000
        lines.append(
            f"- **Heartbeats of {r['setup']['agents']:,} agents every 30 s, {r['database']}: "
            f"{'sustained' if r['full_rate_met'] else 'NOT sustained'}** on one node: "
            f"{hb['achieved_per_second']:.1f} of {hb['rate_per_second']:.0f} heartbeats/s "
            f"answered, server CPU {hb['server_cpu_percent_of_one_core']:.0f}% of a core "
            f"(p99 {_ms(hb['latency_ms'].get('p99'))} ms)"
            + (
                f", and {hb['agents_without_an_answered_heartbeat']:,} agents had no heartbeat "
                "answered in the phase: the server declares such agents offline and hands "
                "their running jobs to others"
                if hb.get("agents_without_an_answered_heartbeat")
                else ""
            )
            + "; an answered heartbeat cost "
            f"{_ms(hb.get('server_cpu_ms_per_heartbeat_net_of_idle'))} ms of server CPU "
            f"(at 1/{r['low_rate']['divisor']} of the rate: "
            f"{_ms(r['low_rate'].get('server_cpu_ms_per_heartbeat_net_of_idle'))} ms), so "
            f"{hb['rate_per_second']:.0f}/s need about "
            f"{cores:.0f}-{r['cores_needed_at_full_rate_from_low_rate']:.0f} cores. Waiting "
            "agents cost "
            "more: "
            f"{r['long_polls'][0]['extrapolated_cores_for_10000_idle_agents']:.0f} cores for "
            f"{r['setup']['agents']:,} idle long polls (extrapolated from "
            f"{r['long_polls'][0]['agents']})."
        )
    return lines


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def _share(part: float | None, whole: float | None) -> str:
    if not part or not whole:
        return "-"
    return f"{min(part / whole, 1.0) * 100:.0f}%"


def evidence_section(doc: dict[str, Any]) -> list[str]:
    n = doc["packets"]
    rows = doc["results"]
    first = rows[0] if rows else {}
    sealing0 = first.get("sealing", {})
    lines = [
        "## Evidence",
        "",
        f"{n:,} evidence packets per database, sealed, exported, verified offline and walked "
        "in the audit chain, in the benchmark process (no HTTP) with the product's functions on "
        "a fresh migrated database: one tenant (`create_tenant`), one Ed25519 key "
        "(`KeyRing` on a key file). Source measured: "
        f"commit `{doc.get('commit', 'unknown')}`; {doc.get('logical_cpus', '?')} logical CPUs "
        "shared with PostgreSQL"
        + (
            f"; the 1-minute load average was {load['before'][0]:.1f} before and "
            f"{load['after'][0]:.1f} after this benchmark."
            if (load := doc.get("load_average"))
            else "."
        ),
        "",
        f"*Sealing*: `evidence._seal` of synthetic deployment packets, {doc['per_transaction']} "
        "per unit of work (`SqlAlchemyUnitOfWork`, one `commit()`): each seal signs an in-toto "
        "statement (DSSE, Ed25519), inserts the packet and registers the key; each commit links "
        "the transaction's packets into the tenant's audit hash chain. A body is shaped like "
        "the one a finished deployment job gets (who/what/why/how/when/outcome: agent, release, "
        "3-5 components with sha256 digests, a five-step workflow run, a log of about 1.5 kB): "
        f"{sealing0.get('mean_body_bytes') or 0:,} bytes of canonical JSON on average, "
        f"{sealing0.get('mean_envelope_bytes') or 0:,} bytes as a stored envelope. Bodies are "
        "built before each transaction and not timed. *Signature alone*: "
        f"`KeyRing.sign_statement` on {doc['sign_samples']:,} such bodies, no database.",
        "",
        "*Export*: `plan_export` + `write_bundle` for a period covering every packet, into a "
        "tar.gz on local disk (`BundleWriter`, gzip level 6). *Offline verify*: `read_bundle` "
        "then `verify_bundle` with only the public key (manifest, every member's sha256, every "
        "packet's signature, the chain links up to the signed checkpoint, every packet and "
        "audit event in the chain). The packets are deployments, so no promotion decision is "
        "replayed here: replaying a decision runs the gates on its recorded context, which the "
        "promotion-gates benchmark measures per decision (`gates.evaluate` in its *Where the "
        "time goes* table); a bundle of decisions adds that much per decision. *Audit chain*: "
        "`verify_chain` over the tenant's whole chain (links, every row against its entry, "
        "every packet's signature, the latest checkpoint).",
        "",
        "| Database | Packets | Sealing (s) | Packets/s | ms per packet "
        f"| Transaction of {doc['per_transaction']} p50 / p99 (ms) | Signature alone p50 (ms) "
        "| Database size after (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r["sealing"]
        count = f"{s['packets']:,}" + (
            " (stopped at the time budget)" if s["truncated_by_deadline"] else ""
        )
        lines.append(
            f"| {r['database']} | {count} | {s['seconds']:.1f} | {_rps(s['packets_per_second'])} "
            f"| {s['ms_per_packet']:.2f} | {_p(s['transaction'])} "
            f"| {s['signing_alone'].get('p50_ms', 0):.2f} "
            f"| {_mb(r.get('database_bytes_after_sealing'))} |"
        )
    lines += [
        "",
        "| Database | Export (s) | Bundle (MB) | Unpacked (MB) | Offline verify (s) "
        "| of which read / verify (s) | Packets/s verified | Chain entries | Chain verify (s) "
        "| Chain entries/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        e, v, c = r["export"], r["verify"], r["chain"]
        lines.append(
            f"| {r['database']} | {e['seconds']:.1f} | {_mb(e['bundle_bytes'])} "
            f"| {_mb(v['unpacked_bytes'])} | {v['seconds']:.1f} "
            f"| {v['read_seconds']:.1f} / {v['verify_seconds']:.1f} "
            f"| {_rps(v['packets_per_second'])} | {c['checked']:,} | {c['seconds']:.1f} "
            f"| {_rps(c['entries_per_second'])} |"
        )
    notes = []
    for r in rows:
        s, e, v, c = r["sealing"], r["export"], r["verify"], r["chain"]
        sign = s["signing_alone"].get("mean_ms")
        check = v["verify_envelope_alone"].get("mean_ms")
        packets = v["packets"]
        notes.append(
            f"- {r['database']}: of {s['ms_per_packet']:.2f} ms per sealed packet, signing "
            f"takes about {_ms(sign)} ms ({_share(sign, s['ms_per_packet'])}); "
            "the rest is the insert, the key registration and the share of the commit and chain "
            f"link. Export: gzip (level 6) of the {_mb(v['unpacked_bytes'])} MB of members "
            f"alone takes {v['gzip_level6_of_members_seconds']:.1f} s "
            f"({_share(v['gzip_level6_of_members_seconds'], e['seconds'])} of the export). "
            f"Verify: `verify_envelope` alone takes {_ms(check)} ms per packet (mean), "
            f"{_share((check or 0) * packets / 1000, v['verify_seconds'])} of `verify_bundle`. "
            f"The chain held {c['evidence_packets']:,} packets and {c['audit_events']} audit "
            f"events, checkpoint at {c['checkpoint_size']:,}."
        )
    return [*lines, "", *notes, ""]


def evidence_conclusions(doc: dict[str, Any]) -> list[str]:
    lines = []
    for r in doc["results"]:
        s, e, v, c = r["sealing"], r["export"], r["verify"], r["chain"]
        lines.append(
            f"- **Evidence, {r['database']}, {s['packets']:,} packets: sealed at "
            f"{_rps(s['packets_per_second'])} packets/s, exported in {e['seconds']:.1f} s "
            f"({_mb(e['bundle_bytes'])} MB), verified offline in {v['seconds']:.1f} s "
            f"({_rps(v['packets_per_second'])} packets/s); the audit chain verifies at "
            f"{_rps(c['entries_per_second'])} entries/s** ({c['checked']:,} entries in "
            f"{c['seconds']:.1f} s)."
        )
    rows = doc["results"]
    if rows:
        worst_export = max(r["export"]["seconds"] for r in rows)
        worst_verify = max(r["verify"]["seconds"] for r in rows)
        worst_chain = max(r["chain"]["seconds"] for r in rows)
        per_packet = [r["sealing"]["ms_per_packet"] for r in rows]
        signing = [r["sealing"]["signing_alone"].get("mean_ms") or 0.0 for r in rows]
        lines.append(
            "- Evidence: sealing costs "
            + ", ".join(
                f"{r['database']} {p:.1f} ms per packet"
                for r, p in zip(rows, per_packet, strict=True)
            )
            + f" (signing the canonical statement about {min(signing):.1f}-"
            f"{max(signing):.1f} ms of it; the rest is storage: insert, key registration, "
            "chain link and commit), a few milliseconds per decision or deployment recorded. "
            f"A {doc['packets']:,}-packet period exports in at most {worst_export:.0f} s and "
            f"verifies offline in at most {worst_verify:.0f} s on this machine, and the whole "
            f"chain verifies in at most {worst_chain:.0f} s: acceptable for an audit export "
            "or a periodic check. Every step reads each packet once (export and chain in "
            "batches), so the time should grow in proportion to the packets; only "
            f"{doc['packets']:,} was measured. Verification is CPU-bound in Python: checking "
            "each packet's signature and decoding its statement, then recomputing content "
            "digests (canonical JSON). The export keeps every packet of the period in memory "
            "and the verifier the whole unpacked bundle "
            f"({_mb(max(r['verify']['unpacked_bytes'] for r in rows))} MB here). "
            "Decision packets add the gate replay per decision (see Promotion gates)."
        )
    return lines


def _us(ms: float | None) -> str:
    """A duration given in ms, written in µs."""
    return "-" if ms is None else f"{ms * 1000:.0f}"


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole else "-"


def matching_subsection(doc: dict[str, Any]) -> list[str]:
    parse, imported, built = doc["parse"], doc["zip_import"], doc["index_build"]
    first, second = doc["match"][0], doc["match"][-1]
    mix = ", ".join(f"{name} {n:,}" for name, n in doc["component_ecosystems"].items())
    total = imported["seconds"] + built["seconds"] + first["seconds"]
    lines = [
        f"### Matching {doc['components']:,} SBOM components against "
        f"{doc['advisories']:,} advisories",
        "",
        f"In process, with `stella.adapters.vulndb` only (no database). {doc['advisories']:,} "
        f"synthetic OSV advisories on {doc['affected_packages']:,} packages of nine ecosystems "
        "(npm, PyPI, Maven, Go, Debian 11/12, Alpine 3.18/3.19, crates.io, RubyGems, NuGet; "
        "popular packages get many advisories, one in twenty is GIT-only), and "
        f"{doc['components']:,} components ({mix}): about 30 % name a package with advisories "
        "at a fixed version, about 1 % an affected version, the rest packages without "
        "advisories. *Parse*: `parse_osv` of every document; *zip import*: `read_osv` of a zip "
        "holding one JSON file per advisory (reading, JSON, parsing); *index build*: "
        "`AdvisoryIndex` (range boundaries parsed once); *match*: `AdvisoryIndex.match` on every "
        "component, a first pass (component versions parsed for the first time) and a second "
        "(cached). Version caches are cleared before each of the first three. Source measured: "
        f"commit `{doc.get('commit', 'unknown')}`; seed {doc['seed']}.",
        "",
        "| Phase | Items | Seconds | Items/s | Per item p50 / p99 (µs) |",
        "|---|---:|---:|---:|---:|",
        f"| parse (`parse_osv`) | {parse['documents']:,} advisories | {parse['seconds']:.2f} "
        f"| {_rps(parse['documents_per_second'])} | - |",
        f"| zip import (`read_osv`, {imported['zip_bytes'] / 1e6:.0f} MB zip) "
        f"| {imported['imported']:,} advisories | {imported['seconds']:.2f} "
        f"| {_rps(imported['advisories_per_second'])} | - |",
        f"| index build (`AdvisoryIndex`) | {built['advisories']:,} advisories "
        f"| {built['seconds']:.2f} | {_rps(built['advisories_per_second'])} | - |",
    ]
    for m in doc["match"]:
        dist = m["per_component"]
        lines.append(
            f"| match, {m['pass']} pass | {m['components']:,} components | {m['seconds']:.3f} "
            f"| {_rps(m['components_per_second'])} "
            f"| {_us(dist.get('p50_ms'))} / {_us(dist.get('p99_ms'))} |"
        )
    truncated = [
        name
        for name, part in (("parse", parse), ("index build", built), ("match", first))
        if part.get("truncated")
    ]
    lines += [
        "",
        f"The first pass found {first['findings']:,} findings on {first['affected_components']:,} "
        f"components (the second the same: {second['findings']:,}); the slowest component took "
        f"{_ms(first['per_component'].get('max_ms'))} ms. What dominates: of the "
        f"{total:.1f} s from a zip on disk to {doc['components']:,} matched components, reading "
        f"and parsing the feed takes {_pct(imported['seconds'], total)} and building the index "
        f"{_pct(built['seconds'], total)}; matching itself {first['seconds'] * 1000:.0f} ms "
        f"({_pct(first['seconds'], total)}). The index is built once per feed change and kept "
        "per tenant in the process (`SecurityServices.matcher`), so an SBOM upload pays only "
        "its own components' matching."
        + (f" **Stopped at the time budget: {', '.join(truncated)}.**" if truncated else ""),
        "",
    ]
    return lines


def _per_candidate_ms(i: dict[str, Any]) -> float | None:
    """`rematch` time per candidate SBOM, the index rebuild left out (ms)."""
    if not i["candidates"]:
        return None
    return (i["rematch_seconds"] - i["index_rebuild_seconds"]) / i["candidates"] * 1000


def _import_row(r: dict[str, Any], label: str, i: dict[str, Any]) -> str:
    candidates = f"{i['candidates']:,} of {i['sboms_stored']:,}"
    if not i["candidates_as_expected"]:
        candidates += f" (**{i['candidates_expected']:,} expected**)"
    digests = f"{i['digests_changed']:,}"
    if not i["digests_changed_as_expected"]:
        digests += f" (**{i['digests_changed_expected']:,} expected**)"
    recorded = f"{i['verdict_rows_recorded']:,}"
    if i["verdict_rows_recorded"] != i["verdict_rows_expected"]:
        recorded += f" (**{i['verdict_rows_expected']:,} expected**)"
    by_env = " / ".join(str(n) for n in i["verdict_changes_by_environment"].values())
    return (
        f"| {r['database']} | {label} | {i['seconds']:.2f} | {i['read_and_store_seconds']:.2f} "
        f"| {i['candidate_selection_seconds'] * 1000:.0f} | {i['rematch_seconds']:.2f} "
        f"| {i['index_rebuild_seconds']:.2f} | {i['reevaluate_seconds']:.2f} | {candidates} "
        f"| {digests} | {recorded} | {by_env} |"
    )


def reevaluation_subsection(
    doc: dict[str, Any], matching: dict[str, Any] | None = None
) -> list[str]:
    rows = doc["results"]
    hits = ", ".join(
        f"{h['ecosystem']} `{h['package']}` ({h['severity']})" for h in doc.get("new_hits", [])
    )
    policies = (rows[0].get("environments") if rows else None) or {}
    envs = "; ".join(f"{slug}: {', '.join(sev)}" for slug, sev in policies.items())
    narrow_package = doc.get("narrow_package") or {}
    narrow_name = f"{narrow_package.get('ecosystem', '?')} `{narrow_package.get('package', '?')}`"
    narrow_label = f"{doc.get('narrow_advisories', '?')} on {narrow_name}"
    narrow_prose = f"{doc.get('narrow_advisories', '?')} advisories on {narrow_name}"
    lines = [
        f"### Re-evaluating {doc['sboms']:,} stored SBOMs after importing "
        f"{doc['new_advisories']} new advisories",
        "",
        "In the benchmark process with the product's services (no HTTP), on a fresh migrated "
        "database per row: a container built like the tests' (`build_container`), one tenant, "
        f"three environments whose security policies block: {envs}. No webhook and no "
        "release, so nothing is notified and no promotion is re-gated. First a base feed of "
        f"{doc['base_advisories']:,} advisories is imported (`import_advisories` of a zip). "
        f"Then {doc['sboms']:,} CycloneDX 1.5 SBOMs of {doc['components_per_sbom']} components "
        "each, one distinct image digest each (60 % Debian 12 and 40 % Alpine 3.19 images: "
        "the distribution's core packages and others from a skewed pool, then PyPI or npm "
        "packages; purls such as `pkg:deb/debian/…?distro=debian-12`), are uploaded one after "
        "the other through `add_attachment` with the security hook: format check, storing, "
        "parsing and matching the components, and the image's first verdict in each "
        "environment. Then the measured call: `import_advisories` of a zip of "
        f"{doc['new_advisories']} new advisories, {len(doc.get('new_hits', []))} of which cover "
        f"versions stored images have ({hits}; fixed in the newest of the three versions in "
        "circulation), the others name installed packages at versions no image has, or "
        "packages no image has. `import_advisories` re-matches only the *candidates*: the "
        "SBOMs that list a package the new or changed advisories name (same ecosystem, name "
        "compared case-blind), or that those advisories matched before "
        "(`_touched_digests`); then `rematch` of those digests, and `reevaluate` of the ones "
        "whose matches changed. `_touched_digests` (candidate selection), `rematch` (the "
        "digests it is given are the candidates, those it returns changed), `reevaluate` and "
        "the matcher factory (reading the whole feed and building the index, inside "
        "`rematch`) are wrapped with timers during that call, so the split comes from the "
        "same run; *read + store* is the rest (reading the zip, upserting the advisories, the "
        "audit event, the commit). The candidates, changed digests and verdict rows are "
        "checked against what the generator knows they must be (a bold figure says what was "
        "expected when they differ). Last, measured the same way, a narrow import of "
        f"{narrow_prose} at versions no image has: its candidates are the SBOMs listing that "
        "package; nothing matches and no verdict changes. Source measured: commit "
        f"`{doc.get('commit', 'unknown')}`; {doc.get('logical_cpus', '?')} logical CPUs "
        "shared with PostgreSQL"
        + (
            f"; the 1-minute load average was {load['before'][0]:.1f} before and "
            f"{load['after'][0]:.1f} after this benchmark."
            if (load := doc.get("load_average"))
            else "."
        ),
        "",
        "| Database | Base feed import (s) | SBOMs uploaded | Upload (s) | SBOMs/s "
        "| Per upload p50 / p99 (ms) | Components stored | Matches stored |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        u = r["uploads"]
        count = f"{u['sboms']:,}" + (
            " (stopped at the time budget)" if u["truncated_by_deadline"] else ""
        )
        lines.append(
            f"| {r['database']} | {r['base_feed']['seconds']:.1f} | {count} "
            f"| {u['seconds']:.1f} | {u['sboms_per_second']:.1f} | {_p(u['per_upload'])} "
            f"| {u['components_stored']:,} | {u['matches_stored']:,} |"
        )
    lines += [
        "",
        "| Database | Advisories imported | Import + re-evaluation (s) | read + store (s) "
        "| candidate selection (ms) | `rematch` (s) | of which index rebuild (s) "
        "| `reevaluate` (s) | Candidates re-matched, of SBOMs stored "
        "| Digests whose matches changed | Verdict rows recorded | dev / stage / prod |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(_import_row(r, f"{doc['new_advisories']} new", r["import"]))
        if r.get("narrow_import"):
            lines.append(_import_row(r, narrow_label, r["narrow_import"]))
    lines += [
        "",
        "For reference, with nothing changed after the first import: `rematch_all` (what "
        "the import did before it selected candidates: reading and matching every stored "
        "SBOM, cached index, no writes), `rematch` of the same candidates again (cached "
        "index), `Matcher.match` alone on all the stored components (read beforehand), and "
        "`reevaluate` of every stored digest (computing a verdict per digest and environment, "
        "recording none).",
        "",
        "| Database | `rematch_all`, unchanged (s) | `rematch` of the candidates, unchanged (s) "
        "| Matching alone (s) | Components | Matching, µs per component "
        "| `reevaluate` of all digests, unchanged (s) | Database size (MB) |",
        "|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in rows:
        ref = r["reference"]
        alone = ref["match_alone"]
        per = ", ".join(
            f"{name} {v['us_per_component']:.0f}" for name, v in alone["by_ecosystem"].items()
        )
        lines.append(
            f"| {r['database']} | {ref['rematch_all_unchanged_seconds']:.2f} "
            f"({ref.get('rematch_all_unchanged_sboms', r['import']['sboms_stored']):,} SBOMs) "
            f"| {ref['rematch_candidates_unchanged_seconds']:.2f} "
            f"({r['import']['candidates']:,} SBOMs) "
            f"| {alone['seconds']:.2f} | {alone['components']:,} | {per} "
            f"| {ref['reevaluate_all_unchanged_seconds']:.2f} "
            f"({ref['reevaluate_all_unchanged_digests']:,} digests) "
            f"| {_mb(r.get('database_bytes'))} |"
        )
    notes = []
    for r in rows:
        i, ref, u = r["import"], r["reference"], r["uploads"]
        total = i["seconds"]
        walk = ref["rematch_all_unchanged_seconds"]
        alone = ref["match_alone"]["seconds"]
        per = _per_candidate_ms(i)
        note = (
            f"- {r['database']}: of {total:.2f} s, `rematch` of the {i['candidates']:,} "
            f"candidates takes {_pct(i['rematch_seconds'], total)} ({i['rematch_seconds']:.2f}"
            f" s: the index rebuild {i['index_rebuild_seconds']:.2f} s, then per candidate "
            "one query for its components, matching them and one query for its stored "
            f"matches, {_ms(per)} ms each, and replacing the matches of the "
            f"{i['digests_changed']:,} changed digests), `reevaluate` "
            f"{_pct(i['reevaluate_seconds'], total)} ({i['verdict_rows_recorded']:,} verdicts "
            "recorded, each with an audit event), candidate selection "
            f"{i['candidate_selection_seconds'] * 1000:.0f} ms "
            f"({_pct(i['candidate_selection_seconds'], total)}) and reading and storing the "
            f"{i['advisories_added']} advisories {_pct(i['read_and_store_seconds'], total)}. "
            f"With nothing changed, `rematch_all` over all {i['sboms_stored']:,} SBOMs (the "
            f"old behaviour) takes {walk:.2f} s, of which matching is {alone:.2f} s "
            f"({_pct(alone, walk)})."
        )
        if (n := r.get("narrow_import")) is not None:
            note += (
                f" The narrow import ({n['advisories_added']} advisories on one package) "
                f"re-matched {n['candidates']:,} SBOMs in {n['rematch_seconds']:.2f} s "
                f"(index rebuild {n['index_rebuild_seconds']:.2f} s of it, "
                f"{_ms(_per_candidate_ms(n))} ms per candidate); {n['seconds']:.2f} s in all."
            )
        note += (
            f" An upload costs {_ms(u['per_upload'].get('p50_ms'))} ms (p50): "
            f"{u['sboms_per_second']:.0f} SBOMs/s one after the other."
        )
        notes.append(note)
    first = rows[0] if rows else None
    if first is not None:
        i = first["import"]
        eco = first["reference"]["match_alone"]["by_ecosystem"]
        slow = sorted(eco, key=lambda name: -eco[name]["us_per_component"])
        fast = [name for name in slow if name in ("PyPI", "npm")]
        figures = ", ".join(f"{n} {eco[n]['us_per_component']:.0f} µs" for n in slow)
        reference = ""
        if matching is not None:
            m = matching["match"][-1]
            reference = (
                f" (the matching benchmark above, whose components mostly name packages "
                f"without advisories, measures {m['per_component'].get('mean_ms', 0) * 1000:.0f}"
                " µs per component on average)"
            )
        parts = {
            "`rematch`": i["rematch_seconds"],
            "`reevaluate`": i["reevaluate_seconds"],
            "reading and storing the advisories": i["read_and_store_seconds"],
            "candidate selection": i["candidate_selection_seconds"],
        }
        largest = max(parts, key=lambda name: parts[name])
        listed = i.get("images_listing_name_top") or {}
        names = ", ".join(f"`{name}` {count:,}" for name, count in listed.items())
        if i["candidates"] >= i["sboms_stored"]:
            scope = (
                f"In the {doc['new_advisories']}-advisory import every stored SBOM is a "
                "candidate, so `rematch` is the same walk the old `rematch_all` made: "
                f"{i.get('advisory_names_listed', '?')} of the package names the advisories "
                f"name are listed by some image; the most listed ones (images listing them, of "
                f"{i['sboms_stored']:,}): {names}. Core distribution packages are in "
                "every image of their distribution, and the advisories name core packages of "
                "both distributions (Alpine `libssl3`; Debian `libc6`, `tzdata`, `zlib1g`), so "
                "every Debian and every Alpine image is a candidate."
            )
        else:
            scope = (
                f"In the {doc['new_advisories']}-advisory import {i['candidates']:,} of "
                f"{i['sboms_stored']:,} stored SBOMs are candidates "
                f"({_pct(i['candidates'], i['sboms_stored'])}); the names the most images list "
                f"({first['database']}): {names}."
            )
        narrow = first.get("narrow_import")
        narrow_text = ""
        if narrow is not None:
            narrow_text = (
                f" The narrow import shows the saving: {narrow['candidates']:,} candidates "
                f"({_pct(narrow['candidates'], narrow['sboms_stored'])} of the SBOMs), "
                f"`rematch` {narrow['rematch_seconds']:.2f} s on {first['database']}, of which "
                f"{narrow['index_rebuild_seconds']:.2f} s is the index rebuild, against "
                f"{first['reference']['rematch_all_unchanged_seconds']:.2f} s for the walk "
                "over every SBOM with the index already built (`rematch_all`, unchanged)."
            )
        lines_dominates = [
            f"What dominates: {largest} ({_pct(parts[largest], i['seconds'])} of the "
            f"{doc['new_advisories']}-advisory import on {first['database']}). `rematch` costs "
            "the index rebuild, a fixed cost per import (the whole feed is read again), plus "
            "one walk step per candidate, so it grows with the stored SBOMs that list a "
            "package the new or changed advisories name, not with all the SBOMs stored; "
            "selecting the candidates is one query over the stored components (plus one over "
            "the stored matches) and costs milliseconds. "
            + scope
            + narrow_text
            + " Advisories on core distribution packages (openssl, libc, …) are frequent in "
            "real feeds, so a routine import can still touch most SBOMs. Within the walk, "
            "matching is the largest part, and distribution packages make it: per component "
            f"({first['database']}) {figures}{reference}. The images' core distribution "
            "packages (libc6, openssl, musl, …) carry dozens of advisories each in the base "
            "feed, as they do in real feeds, and each range check compares Debian or Alpine "
            "versions with univers' pure-Python comparisons (most of the time in a profile of "
            f"this matching is `univers.debian` `compare_strings`), where "
            f"{' and '.join(fast) or 'language packages'} compare pre-parsed keys. "
            "`reevaluate` grows with the digests whose matches changed (here a critical "
            "advisory on a core package of every Alpine image), three environments each. "
            "`rematch` and `reevaluate` each run in one write transaction; on SQLite (`BEGIN "
            "IMMEDIATE`) other writers wait for them.",
        ]
    else:
        lines_dominates = []
    lines += ["", *notes, "", *lines_dominates, ""]
    return lines


SECURITY_PARTS = {  # part of the security section: its sub-heading, how its bullets begin
    "matching": ("### Matching ", "- **Security matching"),
    "reevaluation": ("### Re-evaluating ", "- **Security re-evaluation"),
}


def kept_subsection(
    previous: dict[str, Any], prefix: str, section: str = "security"
) -> tuple[list[str], str]:
    """A sub-section of the previous report's `section` (security, deployments), marked as
    kept."""
    heading = SECTIONS[section][0]
    body = next((v for k, v in previous["sections"].items() if k.startswith(heading)), "")
    lines: list[str] | None = None
    for line in body.splitlines():
        if line.startswith("### "):
            if lines is not None:
                break
            if line.startswith(prefix):
                lines = [line]
        elif lines is not None:
            lines.append(line)
    if not lines:
        return [], ""
    while not lines[-1].strip():
        lines.pop()
    first = next((line for line in lines[1:] if line.strip()), "")
    found = (
        KEPT_NOTE.match(first)
        or next(  # the whole section was kept: its note says when
            (m for line in body.splitlines()[:4] if (m := KEPT_NOTE.match(line))), None
        )
    )
    if found and not KEPT_NOTE.match(first):
        note = (
            f"*Kept from the previous report: measured {found.group(1)} on {found.group(2)}; "
            "`bench/results/` holds no raw results for it in this run.*"
        )
        return [lines[0], "", note, *lines[1:], ""], f"{found.group(1)} on {found.group(2)}"
    if found:
        return [*lines, ""], f"{found.group(1)} on {found.group(2)}"
    when = f"{previous['date'] or 'earlier'} on {previous['machine'] or 'the machine named there'}"
    note = (
        f"*Kept from the previous report: measured {when}; `bench/results/` holds no raw "
        "results for it in this run.*"
    )
    return [lines[0], "", note, *lines[1:], ""], when


def security_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Security decisioning",
        "",
        "Two measurements: matching SBOM components against an OSV feed in isolation, and what "
        "importing new advisories costs a database holding many SBOMs (matching again, "
        "verdicts recomputed and recorded). The issue asks for both figures and sets no "
        "threshold for them.",
        "",
    ]
    kept = doc.get("kept", {})
    if doc.get("matching") is not None:
        lines += matching_subsection(doc["matching"])
    else:
        lines += kept.get("matching", [])
    if doc.get("reevaluation") is not None:
        lines += reevaluation_subsection(doc["reevaluation"], doc.get("matching"))
    else:
        lines += kept.get("reevaluation", [])
    return lines


def security_conclusions(doc: dict[str, Any]) -> list[str]:
    """The bullets of the measured parts; a missing part's bullets as the previous report had
    them (in doc["kept_bullets"])."""
    lines = []
    matching = doc.get("matching")
    if matching is None:
        start = SECURITY_PARTS["matching"][1]
        lines += [b for b in doc.get("kept_bullets", []) if b.startswith(start)]
    else:
        first, built = matching["match"][0], matching["index_build"]
        imported = matching["zip_import"]
        lines.append(
            f"- **Security matching, {first['components']:,} SBOM components against "
            f"{matching['advisories']:,} advisories: {first['seconds']:.2f} s** "
            f"({_rps(first['components_per_second'])} components/s, p99 "
            f"{_us(first['per_component'].get('p99_ms'))} µs per component) once the index is "
            f"built; building it takes {built['seconds']:.1f} s and reading the feed from a zip "
            f"{imported['seconds']:.1f} s, both once per feed change. Acceptable at the "
            "issue's size; components of distribution packages with many advisories cost "
            "several times more each (see the re-evaluation)."
        )
    reevaluation = doc.get("reevaluation")
    if reevaluation is None:
        start = SECURITY_PARTS["reevaluation"][1]
        lines += [b for b in doc.get("kept_bullets", []) if b.startswith(start)]
    else:
        for r in reevaluation["results"]:
            i, u = r["import"], r["uploads"]
            narrow = r.get("narrow_import")
            narrow_text = (
                f" A narrow import of {narrow['advisories_added']} advisories on one package "
                f"re-matched {narrow['candidates']:,} SBOMs in {narrow['seconds']:.2f} s."
                if narrow is not None
                else ""
            )
            lines.append(
                f"- **Security re-evaluation, {r['database']}: {i['advisories_added']} new "
                f"advisories imported, {i['candidates']:,} of {i['sboms_stored']:,} stored "
                f"SBOMs re-matched (the candidates) and re-evaluated in {i['seconds']:.1f} s** "
                f"({i['digests_changed']:,} digests' matches changed, "
                f"{i['verdict_rows_recorded']:,} verdict changes recorded; `rematch` "
                f"{_pct(i['rematch_seconds'], i['seconds'])} of it, `reevaluate` "
                f"{_pct(i['reevaluate_seconds'], i['seconds'])}, candidate selection "
                f"{i['candidate_selection_seconds'] * 1000:.0f} ms).{narrow_text} SBOM "
                f"uploads with matching: {u['sboms_per_second']:.0f} SBOMs/s (p50 "
                f"{_ms(u['per_upload'].get('p50_ms'))} ms). Acceptable for a feed imported a "
                f"few times a day; re-matching costs about {_ms(_per_candidate_ms(i))} ms per "
                f"candidate SBOM plus {i['index_rebuild_seconds']:.2f} s of index rebuild per "
                "import, so the time grows with the SBOMs listing the packages the advisories "
                "name"
                + (
                    " (all of them here, through core distribution packages)"
                    if i["candidates"] >= i["sboms_stored"]
                    else ""
                )
                + ", not with every SBOM stored, and on SQLite the write transactions hold "
                "the write lock meanwhile."
            )
    return lines


def _api_row(results: list[dict[str, Any]], endpoint: str, processes: int) -> dict[str, Any]:
    return next(
        (r for r in results if r["endpoint"] == endpoint and r["processes"] == processes), {}
    )


def _ratio(new: float | None, old: float | None) -> str:
    return "-" if not new or not old else f"{new / old:.2f}x"


def _overhead(on: float | None, off: float | None) -> str:
    return "-" if not on or not off else f"{(on / off - 1) * 100:+.0f}%"


def _per_request(doc: dict[str, Any], r: dict[str, Any]) -> str:
    answered = r["requests"] + doc["clients"] * doc["warmup_per_thread"]
    return f"{r['sink']['spans'] / answered:.1f}" if answered else "-"


def api_section(doc: dict[str, Any]) -> list[str]:
    clients, seconds, scale = doc["clients"], doc["scenario_seconds"], doc["scale_out"]
    cpus = doc.get("logical_cpus", "?")
    lines = [
        "## API throughput",
        "",
        f"Real `stella server --no-worker` processes on a fresh database per row group: {clients} "
        f"client threads in the benchmark process for {seconds:g} s per row (after "
        f"{doc['warmup_per_thread']} unmeasured requests per thread), each thread with one "
        "keep-alive connection per process, sending its requests round-robin over the row's "
        f"processes. *1 process*: one server; *{scale} processes*: {scale} servers on {scale} "
        "ports against the same database (PostgreSQL: the same database; SQLite: the same file "
        "in WAL mode, which lets readers run concurrently but admits **one writer at a time**: "
        "every write transaction takes the file's write lock with `BEGIN IMMEDIATE`). The "
        "database holds "
        f"{doc['seed_releases']} seeded releases plus those the write rows create. "
        "`GET /releases?limit=50` answers a full page of 50; `GET /promotions/{id}` one "
        "approved promotion; `POST /releases` has one component given by digest "
        "(`repo@sha256:…`): no tag resolution, the digest is verified against the loopback "
        "registry once per process (warm-up) and then answered from the process's cache; "
        "`POST /promotions` promotes a release made by the `POST /releases` row before it to "
        "`dev`: no targets, no deployment on approval and no gates configured, so the "
        "non-production defaults run (`previous_environment`, `security` on a clean scan) "
        "and the promotion is approved at once. The "
        "CPU columns are CPU-seconds per second of wall time (1.0 = one CPU busy) of the "
        "client, of all server processes and of PostgreSQL's processes, read from `/proc`; "
        f"*machine* is the share of all {cpus} CPUs busy. Source measured: commit "
        f"`{doc.get('commit', 'unknown')}`"
        + (
            f"; the 1-minute load average was {load['before'][0]:.1f} before and "
            f"{load['after'][0]:.1f} after this benchmark."
            if (load := doc.get("load_average"))
            else "."
        ),
        "",
        "| Database | Endpoint | Processes | Requests | Throughput (req/s) | p50 (ms) | p99 (ms) "
        "| CPUs: client / servers / PostgreSQL | Machine busy |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for d in doc["results"]:
        for r in d["scenarios"]:
            cpu = r["cpu"]
            share = cpu.get("machine_busy_share")
            lines.append(
                f"| {d['database']} | `{r['endpoint']}` | {r['processes']} | {_requests(r)}"
                + (" (releases to promote ran out)" if r.get("pool_exhausted") else "")
                + f" | {_rps(r['throughput_rps'])} | {_ms(r.get('p50_ms'))} "
                f"| {_ms(r.get('p99_ms'))} | {cpu['client_cpus']:.2f} / {cpu['servers_cpus']:.2f}"
                f" / {cpu['postgres_cpus']:.2f} | {'-' if share is None else f'{share:.0%}'} |"
            )
    lines += [
        "",
        f"Scaling from 1 to {scale} processes (throughput ratio):",
        "",
    ]
    for d in doc["results"]:
        endpoints = list(dict.fromkeys(r["endpoint"] for r in d["scenarios"]))
        parts = [
            f"`{e}` "
            + _ratio(
                _api_row(d["scenarios"], e, scale).get("throughput_rps"),
                _api_row(d["scenarios"], e, 1).get("throughput_rps"),
            )
            for e in endpoints
        ]
        lines.append(f"- {d['database']}: " + ", ".join(parts) + ".")
    lines += [
        "",
        f"*Tracing*: the same {clients} clients against one process with tracing off "
        "(`OTEL_TRACES_EXPORTER=none`) and one with tracing on (`OTEL_TRACES_EXPORTER=otlp`, "
        "`OTEL_EXPORTER_OTLP_ENDPOINT` = a small HTTP sink in the benchmark process on "
        "127.0.0.1 that answers 200 to `POST /v1/traces` and counts the spans), alternately, on "
        "the same database. Stella's code opens spans around a promotion request "
        "(`promotion.request`, plus one `gate.evaluate` per gate: two in `dev`) and around "
        "deployments and worker steps; FastAPI itself (0.16x, once a tracer provider is "
        "installed) opens four spans per request: the route (`GET /api/v1/releases`), "
        "`fastapi.dependencies`, `fastapi.endpoint` and `fastapi.serialization`. So a read "
        "exports 4 spans and a promotion to `dev` 7. *Spans per request* divides the spans "
        "the sink received for a row by the requests the traced process answered in it "
        "(warm-up included). The promotions of these rows are releases created beforehand, "
        "split in two equal halves; the batch exporter's queue is flushed (6 s wait) before "
        "the next row.",
        "",
        "| Database | Endpoint | Tracing | Requests | Throughput (req/s) | p50 (ms) | p99 (ms) "
        "| Spans exported | Spans per request | Throughput change | p50 change |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for d in doc["results"]:
        rows = d.get("tracing", [])
        for r in rows:
            off = next(
                (x for x in rows if x["endpoint"] == r["endpoint"] and x["tracing"] == "off"), {}
            )
            on = r["tracing"] == "on"
            lines.append(
                f"| {d['database']} | `{r['endpoint']}` | {r['tracing']} | {_requests(r)}"
                + (" (releases to promote ran out)" if r.get("pool_exhausted") else "")
                + f" | {_rps(r['throughput_rps'])} | {_ms(r.get('p50_ms'))} "
                f"| {_ms(r.get('p99_ms'))} | {r['sink']['spans'] if on else '-'} "
                f"| {_per_request(doc, r) if on else '-'} "
                f"| {_overhead(r['throughput_rps'], off.get('throughput_rps')) if on else ''} "
                f"| {_overhead(r.get('p50_ms'), off.get('p50_ms')) if on else ''} |"
            )
    failed = [
        f"{d['database']} {r['endpoint']} ({r['processes']} processes): "
        + "; ".join(r["error_examples"])
        for d in doc["results"]
        for r in d["scenarios"] + d.get("tracing", [])
        if r["errors"]
    ]
    if failed:
        lines += ["", "Failed requests, first examples:", ""]
        lines += [f"- {text}" for text in failed]
    names: dict[str, int] = {}
    for d in doc["results"]:
        for r in d.get("tracing", []):
            for key, n in r.get("sink", {}).items():
                if key.startswith("span "):
                    names[key.removeprefix("span ")] = names.get(key.removeprefix("span "), 0) + n
    if names:
        lines += [
            "",
            "Spans the sink received, by name: "
            + ", ".join(f"`{k}` {v:,}" for k, v in sorted(names.items(), key=lambda x: -x[1]) if v)
            + ".",
        ]
    exited = [d["database"] for d in doc["results"] if d.get("server_exited")]
    if exited:
        lines += ["", f"A server process exited during the run on: {', '.join(exited)}."]
    return [*lines, ""]


def api_conclusions(doc: dict[str, Any]) -> list[str]:
    scale = doc["scale_out"]
    lines = []
    for d in doc["results"]:
        rows = d["scenarios"]
        parts = []
        for endpoint in dict.fromkeys(r["endpoint"] for r in rows):
            one, many = _api_row(rows, endpoint, 1), _api_row(rows, endpoint, scale)
            parts.append(
                f"`{endpoint}` {_rps(one.get('throughput_rps'))} req/s (p99 "
                f"{_ms(one.get('p99_ms'))} ms) with 1 process, {_rps(many.get('throughput_rps'))}"
                f" req/s (p99 {_ms(many.get('p99_ms'))} ms) with {scale}"
            )
        lines.append(
            f"- **API throughput, {d['database']}, {doc['clients']} clients:** "
            + "; ".join(parts)
            + "."
        )
    cpus = doc.get("logical_cpus") or 0

    def cpu_range(processes: int, key: str) -> str:
        values = [
            r["cpu"].get(key) or 0.0
            for d in doc["results"]
            for r in d["scenarios"]
            if r["processes"] == processes
        ]
        if not values:
            return "-"
        if key == "machine_busy_share":
            return f"{min(values):.0%}-{max(values):.0%}"
        return f"{min(values):.2f}-{max(values):.2f}"

    lines.append(
        f"- API throughput: client, API processes and PostgreSQL share this machine's {cpus} "
        f"logical CPUs. With 1 process the server used {cpu_range(1, 'servers_cpus')} CPUs "
        f"(the machine was {cpu_range(1, 'machine_busy_share')} busy): one Python process "
        "with its interpreter lock is bound to about one core, so a second process can use "
        f"the idle one. With {scale} processes the servers used "
        f"{cpu_range(scale, 'servers_cpus')} CPUs and the machine was "
        f"{cpu_range(scale, 'machine_busy_share')} busy: the cores are full, so processes "
        f"beyond the second share them (plus the client and PostgreSQL) and {scale} "
        f"processes cannot scale {scale}-fold here; the gain measured is that of using both "
        "cores. Scaling out pays off with a core (or host) per process. SQLite admits one "
        "writer at a time across all processes (the write lock of the file), so its write "
        "rows gain only in the part of a request outside the lock (HTTP, authentication, "
        "JSON) and otherwise queue on it (waiting up to the 30 s busy timeout), which shows "
        "in their p99; "
        "PostgreSQL's writers run concurrently until its CPU and commits (fsync) are the limit."
    )
    for d in doc["results"]:
        rows = d.get("tracing", [])
        parts = []
        for endpoint in dict.fromkeys(r["endpoint"] for r in rows):
            off = next((r for r in rows if r["endpoint"] == endpoint and r["tracing"] == "off"), {})
            on = next((r for r in rows if r["endpoint"] == endpoint and r["tracing"] == "on"), {})
            parts.append(
                f"`{endpoint}` throughput "
                + _overhead(on.get("throughput_rps"), off.get("throughput_rps"))
                + f", p50 {_overhead(on.get('p50_ms'), off.get('p50_ms'))}"
                f" ({on.get('sink', {}).get('spans', 0)} spans exported)"
            )
        if parts:
            lines.append(
                f"- API throughput with tracing on (OTLP/HTTP to a local sink), {d['database']}: "
                + "; ".join(parts)
                + " against tracing off, in consecutive rows; on this shared machine rows of "
                "one setup vary by tens of percent (most for SQLite writes, which queue on its "
                "lock), so only a difference found on both databases and both endpoints would "
                "be a cost of tracing."
            )
    return lines


# --- sections kept from the previous report ---------------------------------------------------

# heading of each benchmark's section, and how its conclusion bullets begin
SECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "create": ("## Release creation", ("- Release creation", "- For reference, a registry")),
    "list": ("## List queries at ", ("- **Target p99 list query", "- With 4 concurrent clients")),
    "workflows": (
        "## Workflow engine",
        ("- **Target scheduling overhead", "- Throughput,", "- Recovery,", "- SIGKILL"),
    ),
    "gates": (
        "## Promotion gates",
        (
            "- **Target gate evaluation",
            "- **Target p99 < 50 ms",
            "- sqlite, p50:",
            "- postgresql, p50:",
        ),
    ),
    "deployments": (
        "## Deployments",
        (
            "- **Deployment orchestration",
            "- Where the deployment overhead goes",
            "- Peer figure",
            "- Fan-out",
            "- Deployments at once",
            "- **Heartbeats of",
        ),
    ),
    "evidence": ("## Evidence", ("- **Evidence, ", "- Evidence: ")),
    "security": (
        "## Security decisioning",
        ("- **Security matching", "- **Security re-evaluation"),
    ),
    "api": ("## API throughput", ("- **API throughput, ", "- API throughput")),
    "masking": ("## Log masking", ()),
}


def previous_report() -> dict[str, Any]:
    """The previous docs/benchmarks.md cut into sections (by `## ` heading), its conclusion
    bullets, its date and its Database rows."""
    if not DOC.exists():
        return {"sections": {}, "bullets": [], "date": None, "machine": "", "databases": []}
    text = DOC.read_text()
    sections: dict[str, str] = {}
    current: list[str] | None = None
    heading = ""
    for line in text.splitlines():
        if line.startswith("## "):
            if current is not None:
                sections[heading] = "\n".join(current).rstrip()
            heading, current = line, [line]
        elif current is not None:
            current.append(line)
    if current is not None:
        sections[heading] = "\n".join(current).rstrip()
    bullets: list[str] = []
    conclusions_text = next((v for k, v in sections.items() if k == "## Conclusions"), "")
    for line in conclusions_text.splitlines()[1:]:
        if line.startswith("- "):
            bullets.append(line)
        elif line.strip() and bullets:
            bullets[-1] += "\n" + line
    header = text.split("\n## ", 1)[0].splitlines()  # the machine table before the sections
    rows = [line.split("|") for line in header if line.startswith("| ") and line.count("|") == 3]
    machine_rows = {cells[1].strip(): cells[2].strip() for cells in rows}
    databases = [line for line in header if line.startswith("| Database |")]
    return {
        "sections": sections,
        "bullets": bullets,
        "date": machine_rows.get("Date"),
        "machine": ", ".join(
            machine_rows[k] for k in ("CPU", "Memory", "OS", "Python") if k in machine_rows
        ),
        "databases": databases,
    }


KEPT_NOTE = re.compile(r"^\*Kept from the previous report: measured (.+?) on (.+?); ")


def kept_section(previous: dict[str, Any], name: str) -> tuple[list[str], str]:
    """A missing benchmark's section as the previous report had it, marked as kept (a section
    kept before keeps its note: the date and machine of the run that measured it), and
    `date on machine` of that run."""
    prefix = SECTIONS[name][0]
    for heading, body in previous["sections"].items():
        if not heading.startswith(prefix):
            continue
        head, _, rest = body.partition("\n")
        lines = rest.splitlines()
        first = next((line for line in lines if line.strip()), "")
        found = KEPT_NOTE.match(first)
        if found:
            return [head, *lines, ""], f"{found.group(1)} on {found.group(2)}"
        when = (
            f"{previous['date'] or 'earlier'} on {previous['machine'] or 'the machine named there'}"
        )
        note = (
            f"*Kept from the previous report: measured {when}; `bench/results/` holds no raw "
            "results for it in this run.*"
        )
        return [head, "", note, *lines, ""], when
    return [], ""


def kept_bullets(previous: dict[str, Any], missing: list[str]) -> list[str]:
    """The previous report's conclusion bullets of the benchmarks not run this time."""
    kept = []
    for bullet in previous["bullets"]:
        owner = next(
            (name for name, (_, starts) in SECTIONS.items() if bullet.startswith(starts)), None
        )
        if owner in missing:
            kept.append(bullet)
    return kept


def _duration(*docs: dict[str, Any] | None) -> str:
    seconds = sum(doc["duration_seconds"] for doc in docs if doc is not None)
    return f"{seconds / 60:.1f} minutes"


def masking_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Log masking",
        "",
        "Every log line passes the masking processor (`stella.logging_setup.mask_event`): values "
        "resolved from secret references and credential patterns are replaced by `***`. "
        f"{doc['cases'][0]['with_masking']['lines']:,} JSON log lines per case through the real "
        "formatter, with and without the processor, best of several interleaved runs; "
        "`mask()` alone on one message. No registered secret reached the output in any case: "
        f"{'yes' if not any(c['leaked'] for c in doc['cases']) else '**NO**'}.",
        "",
        "| Registered secrets | Lines/s without masking | Lines/s with masking | Cost | "
        "`mask()` per message |",
        "|---|---|---|---|---|",
    ]
    for case in doc["cases"]:
        lines.append(
            f"| {case['registered_secrets']} "
            f"| {case['without_masking']['lines_per_second']:,} "
            f"| {case['with_masking']['lines_per_second']:,} "
            f"| {case['masking_overhead_factor']} times "
            f"| {case['mask_one_message']['us_per_line']} µs |"
        )
    lines += [
        "",
        "Before the processor tested a line's text once for anything worth masking (and compiled "
        "one search for many registered values), the same benchmark measured 5.5 to 8.4 times.",
        "",
    ]
    return lines


def main() -> None:
    create, lists, flows = _load("create"), _load("list"), _load("workflows")
    gate_doc, deploy_doc = _load("gates"), _load("deployments")
    evidence_doc = _load("evidence")
    api_doc = _load("api")
    masking_doc = _load("masking")
    match_doc, reeval_doc = _load("security_matching"), _load("security_reevaluation")
    security_doc = (
        None
        if match_doc is None and reeval_doc is None
        else {
            "matching": match_doc,
            "reevaluation": reeval_doc,
            "duration_seconds": sum(
                d["duration_seconds"] for d in (match_doc, reeval_doc) if d is not None
            ),
        }
    )
    docs = {
        "create": create,
        "list": lists,
        "workflows": flows,
        "gates": gate_doc,
        "deployments": deploy_doc,
        "evidence": evidence_doc,
        "security": security_doc,
        "api": api_doc,
        "masking": masking_doc,
    }
    if all(doc is None for doc in docs.values()):
        msg = f"no results in {RESULTS_DIR}; run `make bench`"
        raise SystemExit(msg)
    previous = previous_report()
    missing = [name for name, doc in docs.items() if doc is None]
    found = {name: kept_section(previous, name) for name in missing}
    kept = {name: section for name, (section, _) in found.items() if section}
    measured: dict[str, list[str]] = {}
    for section, when in found.values():
        if section:
            measured.setdefault(when, []).append(section[0].removeprefix("## "))
    if security_doc is not None:  # one of its two benchmarks may be missing: keep that part
        security_doc["kept"] = {}
        security_doc["kept_bullets"] = previous["bullets"]
        for part, (prefix, _) in SECURITY_PARTS.items():
            if security_doc[part] is None:
                section, when = kept_subsection(previous, prefix)
                if section:
                    security_doc["kept"][part] = section
                    measured.setdefault(when, []).append(section[0].removeprefix("### "))
    if deploy_doc is not None:  # a partial run (--only): keep the parts it did not measure
        deploy_doc["kept"] = {}
        for part, prefix in DEPLOYMENT_PARTS.items():
            if not deploy_doc.get(part):
                section, when = kept_subsection(previous, prefix, "deployments")
                if section:
                    deploy_doc["kept"][part] = section
                    measured.setdefault(when, []).append(section[0].removeprefix("### "))
    info = machine()
    databases = [
        f"| Database | {text} |"
        for text in _databases(
            create, lists, flows, gate_doc, deploy_doc, evidence_doc, reeval_doc, api_doc
        )
    ]
    if kept:  # the kept sections name databases this run may not have measured
        kinds = {row.split("|")[2].split(":")[0].strip() for row in databases}
        databases += [
            row
            for row in previous["databases"]
            if row.split("|")[2].split(":")[0].strip() not in kinds
        ]
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
        *databases,
    ]
    if kept:
        lines += [
            f"| Kept from an earlier run | {', '.join(names)}: measured {when} "
            "(no raw results in this run) |"
            for when, names in measured.items()
        ]
    lines += [
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
        f"This run took {_duration(*docs.values())} (benchmarks only, services already up"
        + ("; sections kept from an earlier run not counted" if kept else "")
        + "). One benchmark alone: `.venv/bin/python -m bench.<module>` then "
        "`.venv/bin/python -m bench.report`.",
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
    writers = {
        "create": creation_section,
        "list": list_section,
        "workflows": workflow_section,
        "gates": gates_section,
        "deployments": deployments_section,
        "evidence": evidence_section,
        "security": security_section,
        "api": api_section,
        "masking": masking_section,
    }
    for name, doc in docs.items():
        if doc is not None:
            lines += writers[name](doc)
        else:
            lines += kept.get(name, [])
    lines += conclusions(create, lists, flows, gate_doc)[:-1]
    lines += kept_bullets(previous, missing)
    if deploy_doc is not None:
        lines += deployments_conclusions(deploy_doc)
    if evidence_doc is not None:
        lines += evidence_conclusions(evidence_doc)
    if security_doc is not None:
        lines += security_conclusions(security_doc)
    if api_doc is not None:
        lines += api_conclusions(api_doc)
    lines.append("")
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines).rstrip() + "\n")
    print(f"[bench] wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
