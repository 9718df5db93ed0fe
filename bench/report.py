"""Write docs/benchmarks.md from the raw results in bench/results/ (create.json, list.json,
workflows.json, gates.json).

Run: .venv/bin/python -m bench.report (from the repository root; `make bench` does).
"""

from __future__ import annotations

import json
import os
import platform
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


def _duration(*docs: dict[str, Any] | None) -> str:
    seconds = sum(doc["duration_seconds"] for doc in docs if doc is not None)
    return f"{seconds / 60:.1f} minutes"


def main() -> None:
    create, lists, flows = _load("create"), _load("list"), _load("workflows")
    gate_doc = _load("gates")
    if create is None and lists is None and flows is None and gate_doc is None:
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
        *[f"| Database | {text} |" for text in _databases(create, lists, flows, gate_doc)],
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
        f"This run took {_duration(create, lists, flows, gate_doc)} (benchmarks only, "
        "services already up).",
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
    if flows is not None:
        lines += workflow_section(flows)
    if gate_doc is not None:
        lines += gates_section(gate_doc)
    lines += conclusions(create, lists, flows, gate_doc)
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text("\n".join(lines).rstrip() + "\n")
    print(f"[bench] wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
