"""Promotion gate evaluation through the HTTP API of a real `stella server`, on SQLite and
PostgreSQL.

The estate: dev → stage → prod; prod has all six gates (previous_environment, freeze_window,
security, health_check, policy, approval), two freeze windows (a future one and an expired
recurring one), one healthy target, 2 required approvals with separation of duties and a
50-rule Rego policy (`policy_rego`) over the documented policy input (release, target,
approvals, verdicts, promotion, gate_results, now, source). No rule fires on the benchmark's
releases, so every gate but `approval` passes and each prod promotion stays
`awaiting_approval` (1 of 2 approvals): every re-evaluation runs all six gates.

Setup (bounded by SETUP_BUDGET): PROMOTIONS + 2 releases, each promoted to dev (approved by
its gates), to stage (approved by an approver) and to prod (one approval of two).

1. One client: POST /promotions/{id}/reevaluate on one prod promotion, SINGLE_REQUESTS times
   after WARMUP unmeasured requests.
2. PROMOTIONS concurrent clients: one thread per prod promotion, each with its own
   connection, all released by one barrier and sending one re-evaluation each; ROUNDS
   measured rounds after one unmeasured round.
3. In process (no HTTP), to see where the time goes: the service call `reevaluate` on the
   same database; `find` + `build_context` in a read-only unit of work (the reads);
   `gates.evaluate` on the context recorded by the server (GET …/evaluations/{seq})
   with a RegoPolicyEvaluator; and the Rego evaluation alone.

Targets from the issue: p99 < 20 ms with one client, < 50 ms with 100 concurrent promotions.

Run: .venv/bin/python -m bench.bench_gates (from the repository root; `make bench` does).
`--database sqlite|postgresql` selects one database.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from tests.support.promotions import pipeline

from bench.bench_workflows import source_commit
from bench.common import (
    REQUEST_TIMEOUT,
    WARMUP,
    Samples,
    api_client,
    database_settings,
    database_version,
    exit_cleanly_on_sigterm,
    log,
    require_loopback,
    run_serial,
    summary,
    timed,
    warm_up,
    write_result,
)
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.bootstrap import build_container, utc_now
from stella.config import Settings
from stella.domain.canonical import canonical_json
from stella.services import gates
from stella.services import promotions as promotion_service
from stella.services.auth import authenticate
from stella.services.context import CallContext

DATABASES = ("sqlite", "postgresql")
TARGET_SINGLE_P99_MS = 20.0
TARGET_CONCURRENT_P99_MS = 50.0

RULES = 50  # deny rules of the prod policy
PROMOTIONS = 100  # prod promotions re-evaluated concurrently
SETUP_THREADS = 4
SETUP_BUDGET = 120.0  # seconds to build the estate of one database
SINGLE_REQUESTS = 300
SINGLE_BUDGET = 60.0
ROUNDS = 5  # measured concurrent rounds (plus one unmeasured)
CONCURRENT_BUDGET = 60.0
ROUND_TIMEOUT = REQUEST_TIMEOUT + 20.0  # a round's barrier and results wait at most this
SERVICE_CALLS = 200  # in-process service re-evaluations
READ_CALLS = 500  # in-process find + build_context
GATE_ITERATIONS = 1_000  # in-process gates.evaluate and Rego evaluations
IN_PROCESS_BUDGET = 30.0  # seconds per in-process layer

GATE_NAMES = list(gates.GATE_ORDER)
POLICY_NAME = "prod-rules"
APPROVER = "bench-approver"


# --- the policy -----------------------------------------------------------------------------


def _rule(body: list[str], message: str) -> str:
    lines = "\n".join(f"    {line}" for line in body)
    return f"deny contains msg if {{\n{lines}\n    msg := {message}\n}}\n"


def _blackout(year: int) -> list[str]:
    # regopy 1.5.2's time.parse_rfc3339_ns is undefined for a `Z` suffix ("…T00:00:00Z"), so a
    # rule comparing with such a literal never fires; `+00:00` parses (and is what input.now has)
    return [
        "now := time.parse_rfc3339_ns(input.now)",
        f'now >= time.parse_rfc3339_ns("{year}-12-24T00:00:00+00:00")',
        f'now < time.parse_rfc3339_ns("{year}-12-27T00:00:00+00:00")',
    ]


def policy_rules() -> list[str]:
    """RULES distinct deny rules over the documented input; none fires on a benchmark release."""
    semver = r"`^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`"
    prod = "input.target.is_production"
    rules = [
        _rule(
            [prod, 'contains(input.release.version, "-")'],
            'sprintf("pre-release %s may not go to production", [input.release.version])',
        ),
        _rule(
            ["some c in input.release.components", 'not startswith(c.repository, "127.0.0.1:")'],
            'sprintf("%s is not from the trusted registry", [c.repository])',
        ),
        _rule(
            [f"not regex.match({semver}, input.release.version)"],
            'sprintf("version %s is not semantic", [input.release.version])',
        ),
        _rule(["count(input.release.components) == 0"], '"a release needs a component"'),
        _rule(["count(input.release.components) > 50"], '"more than 50 components"'),
        _rule(
            ["some c in input.release.components", 'not startswith(c.digest, "sha256:")'],
            'sprintf("%s is not pinned to a sha256 digest", [c.name])',
        ),
        _rule(
            ["some c in input.release.components", "not input.verdicts[c.digest]"],
            'sprintf("%s has no scan verdict", [c.name])',
        ),
        _rule(
            ["some d, v in input.verdicts", "count(v.blocking) > 0"],
            'sprintf("%s has blocking findings", [d])',
        ),
        _rule(
            ["some d, v in input.verdicts", "v.findings > 500"],
            'sprintf("%s has %d findings", [d, v.findings])',
        ),
        _rule(
            [prod, "input.target.approval_policy.required_approvals < 2"],
            '"production needs two approvals"',
        ),
        _rule(
            [prod, "not input.target.approval_policy.separation_of_duties"],
            '"production needs separation of duties"',
        ),
        _rule([prod, 'not "approval" in input.target.gates'], '"production needs approvals"'),
        _rule([prod, 'not "security" in input.target.gates'], '"production needs a scan"'),
        _rule(
            [
                "some a in input.approvals",
                'a.decision == "approve"',
                "a.user_name == input.promotion.requested_by_name",
            ],
            'sprintf("%s approved their own promotion", [a.user_name])',
        ),
        _rule(
            [
                "some a in input.approvals",
                "not a.role in input.target.approval_policy.approver_roles",
            ],
            'sprintf("%s (%s) may not approve", [a.user_name, a.role])',
        ),
        _rule(
            ["some g in input.gate_results", "not g.passed", "not g.pending"],
            'sprintf("gate %s failed: %s", [g.gate, g.reason])',
        ),
        _rule(
            [prod, 'not "security" in {g.gate | some g in input.gate_results}'],
            '"the security gate did not run"',
        ),
        _rule(
            [
                "time.parse_rfc3339_ns(input.now) < "
                "time.parse_rfc3339_ns(input.promotion.requested_at)"
            ],
            '"evaluated before it was requested (clock skew)"',
        ),
        _rule(
            [
                "age := time.parse_rfc3339_ns(input.now) - "
                "time.parse_rfc3339_ns(input.promotion.requested_at)",
                "age > ((30 * 24) * 3600) * 1000000000",
            ],
            '"the request is older than 30 days"',
        ),
        _rule(
            [prod, 'input.source.slug != "stage"'],
            'sprintf("production is promoted from stage, not %s", [input.source.slug])',
        ),
        _rule(
            ['input.target.state != "active"'],
            'sprintf("%s is %s", [input.target.slug, input.target.state])',
        ),
    ]
    rules += [
        _rule([prod, *_blackout(year)], f'"year-end blackout {year}"') for year in range(2016, 2026)
    ]
    rules += [
        _rule(
            ["some c in input.release.components", f'c.digest == "{_revoked(k)}"'],
            f'sprintf("%s: digest revoked (advisory {k})", [c.name])',
        )
        for k in range(7)
    ]
    rules += [
        _rule([f'input.release.name == "{name}"'], f'"{name} is retired"')
        for name in ("billing-v1", "legacy-auth", "old-gateway", "reports-2019", "ftp-sync", "cms")
    ]
    rules += [
        _rule(
            ["some a in input.approvals", f'a.user_name == "contractor-{k}"'],
            f'"contractor-{k} is suspended"',
        )
        for k in range(6)
    ]
    return rules


def _revoked(k: int) -> str:
    return "sha256:" + hashlib.sha256(f"revoked-{k}".encode()).hexdigest()


def policy_rego() -> str:
    rules = policy_rules()
    if len(rules) != RULES or len(set(rules)) != RULES:
        msg = f"expected {RULES} distinct rules, got {len(set(rules))} of {len(rules)}"
        raise RuntimeError(msg)
    return "package stella.promotion\nimport rego.v1\n\n" + "\n".join(rules)


def violating_input(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (a policy input) broken in many ways at once: proves that the rules run."""
    return document | {
        "now": "2020-12-25T12:00:00+00:00",
        "promotion": document["promotion"]
        | {"requested_by_name": "contractor-0", "requested_at": "2021-01-01T00:00:00+00:00"},
        "release": document["release"]
        | {
            "name": "billing-v1",
            "version": "2.0.0-rc.1+build",
            "components": [
                {"name": "api", "repository": "docker.io/library/nginx", "digest": "md5:00"},
                {"name": "web", "repository": "127.0.0.1:5000/web", "digest": _revoked(0)},
            ],
        },
        "source": {"id": "x", "slug": "dev", "name": "Dev"},
        "target": document["target"]
        | {
            "state": "frozen",
            "gates": ["policy"],
            "approval_policy": {
                "required_approvals": 1,
                "approver_roles": ["approver"],
                "separation_of_duties": False,
            },
        },
        "approvals": [
            {"user_name": "contractor-0", "role": "viewer", "decision": "approve"},
        ],
        "verdicts": {"sha256:other": {"scan_id": "x", "blocking": ["CVE-1"], "findings": 900}},
        "gate_results": [
            {"gate": "health_check", "passed": False, "pending": False, "reason": "down"}
        ],
    }


# --- the estate -----------------------------------------------------------------------------


def expect(response: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if response.status_code != status:
        msg = f"{what}: HTTP {response.status_code} {response.text[:500]}"
        raise RuntimeError(msg)
    return dict(response.json())


def environments() -> list[dict[str, Any]]:
    """The tests' dev → stage → prod pipeline, with all six gates and the 50-rule policy."""
    windows = [
        {"name": "year-end-2099", "start": "2099-12-20T00:00:00Z", "end": "2100-01-04T00:00:00Z"},
        {
            "name": "old-weekly-freeze",
            "rrule": "FREQ=WEEKLY;BYDAY=FR;UNTIL=20240101T000000",
            "start": "2023-01-06T16:00:00",
            "duration": "64h",
            "timezone": "Europe/Berlin",
        },
    ]
    dev, stage, prod = pipeline(windows)
    return [dev, stage, prod | {"gates": GATE_NAMES, "policies": [POLICY_NAME]}]


def awaiting_all_gates(promotion: dict[str, Any]) -> str | None:
    """None when `promotion` is awaiting approval after all six gates with only `approval`
    pending; otherwise what is wrong."""
    results = promotion.get("gate_results", [])
    names = [g["gate"] for g in results]
    if names != GATE_NAMES:
        return f"gates {names}"
    failed = [f"{g['gate']}: {g['reason']}" for g in results[:-1] if not g["passed"]]
    if failed:
        return f"{promotion.get('state')}: " + "; ".join(failed)
    if promotion.get("state") != "awaiting_approval" or not results[-1]["pending"]:
        return f"state {promotion.get('state')}, approval {results[-1]['reason']}"
    return None


@dataclass
class Estate:
    """The prod promotions prepared for the benchmark, and how long that took."""

    prod_promotions: list[str] = field(default_factory=list)
    setup_seconds: float = 0.0
    policy_hash: str = ""


def prepare_release(admin: httpx.Client, approver: httpx.Client, reference: str, n: int) -> str:
    """Release 1.0.n promoted through dev and stage, then to prod with one approval of two;
    returns the prod promotion's id."""
    body = {"name": "api", "version": f"1.0.{n}", "components": {"api": reference}}
    release = expect(admin.post("/releases", json=body), 201, f"release 1.0.{n}")["id"]
    promoted = {}
    for env in ("dev", "stage", "prod"):
        body = {"release_id": release, "target_environment": env}
        promotion = expect(admin.post("/promotions", json=body), 201, f"promote 1.0.{n} to {env}")
        if promotion["state"] == "awaiting_approval":
            approve = approver.post(f"/promotions/{promotion['id']}/approve", json={})
            promotion = expect(approve, 200, f"approve 1.0.{n} into {env}")
        promoted[env] = promotion
    wrong = [
        f"{env}: {p['state']}"
        for env, p in promoted.items()
        if p["state"] != ("awaiting_approval" if env == "prod" else "approved")
    ]
    problem = awaiting_all_gates(promoted["prod"])
    if wrong or problem:
        msg = f"release 1.0.{n}: {wrong} {problem or ''}"
        raise RuntimeError(msg)
    return str(promoted["prod"]["id"])


def build_estate(server: LiveServer, repository: str, digest: str, count: int) -> Estate:
    """Components, policy, environments, a healthy prod target, a scan, an approver and
    `count` prod promotions awaiting their second approval (SETUP_THREADS client threads)."""
    started = time.perf_counter()
    admin = api_client(server.url, server.token)
    try:
        body = {"name": "api", "repository": f"{REGISTRY}/{repository}"}
        expect(admin.post("/components", json=body), 201, "component")
        policy = expect(
            admin.post("/policies", json={"name": POLICY_NAME, "rego": policy_rego()}),
            201,
            "policy",
        )
        for env in environments():
            expect(admin.post("/environments", json=env), 201, f"environment {env['slug']}")
        target = {"name": "prod-1", "environment": "prod", "type": "docker_host"}
        expect(admin.post("/targets", json=target), 201, "target")
        expect(admin.patch("/targets/prod-1", json={"health": "healthy"}), 200, "target health")
        findings = [
            {"id": "CVE-2026-0001", "severity": "high", "reachable": False},
            {"id": "CVE-2026-0002", "severity": "low"},
        ]
        scan = {"digest": digest, "findings": findings}
        expect(admin.post("/scans", json=scan), 201, "scan")
        user = {"name": APPROVER, "role": "approver"}
        approver_token = expect(admin.post("/users", json=user), 201, "approver")["token"]
    finally:
        admin.close()

    reference = f"{REGISTRY}/{repository}@{digest}"
    deadline = time.monotonic() + SETUP_BUDGET
    ids: dict[int, str] = {}
    stop = threading.Event()

    # The first release alone: on PostgreSQL, concurrent creations of releases whose digest is
    # not yet in component_versions race in ComponentRepository.add_version (check, then
    # insert): the losers get 409 "duplicate name, slug or order". Once it is recorded, the
    # other releases can be created concurrently.
    with (
        api_client(server.url, server.token) as own,
        api_client(server.url, approver_token) as approver,
    ):
        ids[0] = prepare_release(own, approver, reference, 0)

    def thread(index: int) -> None:
        with (
            api_client(server.url, server.token) as own,
            api_client(server.url, approver_token) as approver,
        ):
            for n in range(1 + index, count, SETUP_THREADS):
                if stop.is_set():
                    return
                if time.monotonic() > deadline:
                    msg = f"setup did not finish in {SETUP_BUDGET:g} s ({len(ids)} of {count})"
                    raise RuntimeError(msg)
                ids[n] = prepare_release(own, approver, reference, n)

    with ThreadPoolExecutor(max_workers=SETUP_THREADS) as pool:
        futures = [pool.submit(thread, n) for n in range(SETUP_THREADS)]
        try:
            for future in futures:
                future.result(timeout=SETUP_BUDGET + 60)
        except BaseException:
            stop.set()
            raise
    return Estate([ids[n] for n in range(count)], time.perf_counter() - started, policy["hash"])


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Problems:
    """Unexpected answers (the call returned False), with a few examples; warm-up requests
    count here too (the measured ones are the `errors` of the summary)."""

    count: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str) -> None:
        with self.lock:
            self.count += 1
            if len(self.examples) < 3:
                self.examples.append(what[:300])


def reevaluate_call(
    http: httpx.Client, promotion_id: str, problems: Problems
) -> Callable[[int], bool]:
    """POST /promotions/{id}/reevaluate; OK when all six gates ran and only approval waits."""

    def call(_i: int) -> bool:
        response = http.post(f"/promotions/{promotion_id}/reevaluate")
        if response.status_code != 200:
            problems.add(f"HTTP {response.status_code}: {response.text}")
            return False
        wrong = awaiting_all_gates(response.json())
        if wrong:
            problems.add(wrong)
        return wrong is None

    return call


def first_and_last(latencies: list[float], n: int = 100) -> dict[str, Any]:
    """p50 of the first and the last `n` requests: does latency grow with the evaluations
    appended to the promotion?"""
    if len(latencies) < 2 * n:
        return {}
    return {
        f"first_{n}_p50_ms": round(statistics.median(latencies[:n]) * 1000, 2),
        f"last_{n}_p50_ms": round(statistics.median(latencies[-n:]) * 1000, 2),
    }


def single_case(server: LiveServer, promotion_id: str) -> dict[str, Any]:
    problems = Problems()
    with api_client(server.url, server.token) as http:
        call = reevaluate_call(http, promotion_id, problems)
        warm_up(call, SINGLE_REQUESTS)
        samples = run_serial(call, SINGLE_REQUESTS, SINGLE_BUDGET)
    return (
        summary(samples, 1)
        | first_and_last(samples.latencies)
        | {"unexpected_answers": problems.count, "unexpected_examples": problems.examples}
    )


def concurrent_case(server: LiveServer, promotion_ids: list[str]) -> dict[str, Any]:
    """One thread per promotion, each with its own connection; per round, a barrier releases
    all of them at once and each sends one re-evaluation. Round 0 is not measured (it opens
    the connections and fills the server's thread and database pools)."""
    threads = len(promotion_ids)
    problems = Problems()
    clients = [api_client(server.url, server.token) for _ in promotion_ids]
    calls = [reevaluate_call(c, p, problems) for c, p in zip(clients, promotion_ids, strict=True)]
    merged = Samples()
    walls: list[float] = []
    deadline = time.monotonic() + CONCURRENT_BUDGET
    try:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for round_no in range(ROUNDS + 1):
                if time.monotonic() > deadline:
                    merged.truncated = True
                    break
                barrier = threading.Barrier(threads + 1, timeout=ROUND_TIMEOUT)

                def one(index: int, number: int, gate: threading.Barrier = barrier) -> Samples:
                    own = Samples()
                    gate.wait()
                    timed(calls[index], number, own)
                    return own

                futures = [pool.submit(one, i, round_no * threads + i) for i in range(threads)]
                try:
                    barrier.wait()
                    started = time.perf_counter()
                    outcome = Samples()
                    for future in futures:
                        outcome.merge(future.result(timeout=ROUND_TIMEOUT))
                except BaseException:
                    barrier.abort()  # (SIGTERM, a failed round) release the waiting threads
                    raise
                wall = time.perf_counter() - started
                if round_no == 0:
                    continue  # warm-up round
                walls.append(wall)
                merged.merge(outcome)
                merged.wall += wall
    finally:
        for client in clients:
            client.close()
    return summary(merged, threads) | {
        "rounds": len(walls),
        "round_wall_ms": [round(w * 1000, 1) for w in walls],
        "unexpected_answers": problems.count,
        "unexpected_examples": problems.examples,
    }


# --- in process -----------------------------------------------------------------------------


def distribution(seconds: list[float]) -> dict[str, Any]:
    """Count and percentiles (ms) of durations in seconds."""
    ms = sorted(s * 1000 for s in seconds)
    if len(ms) < 2:
        return {"count": len(ms)}
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return {
        "count": len(ms),
        "p50_ms": round(cuts[49], 3),
        "p90_ms": round(cuts[89], 3),
        "p99_ms": round(cuts[98], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


def measure(
    work: Callable[[], object], count: int, budget: float = IN_PROCESS_BUDGET
) -> list[float]:
    """`count` timed calls of `work` (time.perf_counter), fewer when `budget` s run out."""
    deadline = time.monotonic() + budget
    spent = []
    for _ in range(count):
        if time.monotonic() > deadline:
            break
        started = time.perf_counter()
        work()
        spent.append(time.perf_counter() - started)
    return spent


def recorded_context(server: LiveServer, promotion_id: str) -> dict[str, Any]:
    """The latest evaluation recorded by the server, with its context: the list
    GET /promotions/{id}/evaluations names them, GET …/evaluations/{seq} has the context."""
    with api_client(server.url, server.token) as http:
        found = expect(http.get(f"/promotions/{promotion_id}/evaluations"), 200, "evaluations")
        seq = found["items"][-1]["seq"]
        path = f"/promotions/{promotion_id}/evaluations/{seq}"
        return expect(http.get(path), 200, f"evaluation {seq}")


def evaluations_listing(server: LiveServer, promotion_id: str) -> dict[str, Any]:
    """After the single-client case: one GET of the promotion's evaluation list (unpaginated)
    and one of its latest evaluation with context; both grow with the evaluations appended."""
    with api_client(server.url, server.token) as http:
        started = time.perf_counter()
        listing = http.get(f"/promotions/{promotion_id}/evaluations")
        list_seconds = time.perf_counter() - started
        items = expect(listing, 200, "evaluations")["items"]
        started = time.perf_counter()
        one = http.get(f"/promotions/{promotion_id}/evaluations/{items[-1]['seq']}")
        one_seconds = time.perf_counter() - started
        expect(one, 200, "latest evaluation")
    return {
        "evaluations": len(items),
        "response_bytes": len(listing.content),
        "ms": round(list_seconds * 1000, 1),
        "latest_with_context_bytes": len(one.content),
        "latest_with_context_ms": round(one_seconds * 1000, 1),
    }


def gate_layers(evaluation: dict[str, Any]) -> dict[str, Any]:
    """gates.evaluate on the recorded context, and the Rego evaluation alone."""
    context = evaluation["context"]
    evaluator = RegoPolicyEvaluator()
    started = time.perf_counter()
    first = gates.evaluate(context, evaluator)  # compiles the policy (once per hash)
    first_ms = (time.perf_counter() - started) * 1000
    replayed = [r.to_json() for r in first] == evaluation["results"]
    evaluate = measure(lambda: gates.evaluate(context, evaluator), GATE_ITERATIONS)
    before_policy = [r for r in first if r.gate in GATE_NAMES[: GATE_NAMES.index("policy")]]
    document = gates.policy_input(context, before_policy)
    (policy,) = context["policies"]

    def deny() -> list[str]:
        return evaluator.deny(policy["name"], policy["rego"], policy["hash"], document)

    if deny():
        msg = f"the policy denies the benchmark's promotion: {deny()}"
        raise RuntimeError(msg)
    rego = measure(deny, GATE_ITERATIONS)
    violated = deny_count(evaluator, policy, violating_input(document))
    others = {
        name: distribution(measure(lambda f=f: f(context), GATE_ITERATIONS))
        for name, f in gates.SIMPLE_GATES.items()
    }
    return {
        "first_evaluation_with_compile_ms": round(first_ms, 3),
        "replay_identical": replayed,
        "gates_evaluate": distribution(evaluate),
        "policy_deny": distribution(rego),
        "other_gates": others,
        "context_bytes": len(canonical_json(context)),
        "policy_input_bytes": len(canonical_json(document)),
        "deny_messages_on_violating_input": violated,
    }


def deny_count(
    evaluator: RegoPolicyEvaluator, policy: dict[str, Any], document: dict[str, Any]
) -> int:
    return len(evaluator.deny(policy["name"], policy["rego"], policy["hash"], document))


def service_layers(
    database: TestDatabase, workdir: Path, token: str, promotion_id: str
) -> dict[str, Any]:
    """The service call `reevaluate` (no HTTP, same database) and its reads alone."""
    settings = Settings(home=workdir / "in-process", database_url=database.url)
    container = build_container(settings)
    try:
        principal = authenticate(container.read_uow, f"Bearer {token}")
        ctx = CallContext(principal, None, utc_now)
        services = container.promotions

        def reevaluate() -> None:
            promotion = promotion_service.reevaluate(services, ctx, promotion_id)
            wrong = awaiting_all_gates(
                {
                    "state": str(promotion.state),
                    "gate_results": [r.to_json() for r in promotion.gate_results],
                }
            )
            if wrong:
                raise RuntimeError(wrong)

        def reads() -> None:
            with container.read_uow() as uow:
                promotion = uow.promotions.find(principal.tenant_id, promotion_id)
                if promotion is None:
                    msg = f"promotion {promotion_id} not found"
                    raise RuntimeError(msg)
                promotion_service.build_context(uow, promotion, utc_now())

        for _ in range(WARMUP):
            reevaluate()
            reads()
        return {
            "service_reevaluate": distribution(measure(reevaluate, SERVICE_CALLS)),
            "find_and_build_context": distribution(measure(reads, READ_CALLS)),
        }
    finally:
        container.engine.dispose()


# --- main -----------------------------------------------------------------------------------


@contextmanager
def live_stack(kind: str) -> Iterator[tuple[TestDatabase, LiveServer, Path]]:
    """A fresh database and a `stella server --no-worker` on it; both gone on the way out."""
    with tempfile.TemporaryDirectory(prefix=f"stella-bench-gates-{kind}-") as tmp:
        workdir = Path(tmp)
        database = create_database(kind, workdir, migrate=False)  # the server migrates it
        server = None
        try:
            server = start_server(
                [STELLA, "server", "--no-worker"], workdir / "home", free_port(), database.url
            )
            yield database, server, workdir
        finally:
            if server is not None:
                server.stop()
            drop_database(database)


def server_gone(server: LiveServer) -> dict[str, Any] | None:
    """None while the server runs; otherwise its exit status and the end of its log."""
    code = server.process.poll()
    if code is None:
        return None
    tail = server.log.read_text(errors="replace")[-3000:]
    log(f"the server exited with status {code}; its log ends with:\n{tail}")
    return {"returncode": code, "log_tail": tail}


def bench_database(kind: str, repository: str, digest: str) -> dict[str, Any]:
    with live_stack(kind) as (database, server, workdir):
        labels = {
            "database": kind,
            "database_version": database_version(database.engine),
            "database_settings": database_settings(database.engine),
        }
        # PROMOTIONS for the concurrent case, one for the single client, one in process
        estate = build_estate(server, repository, digest, PROMOTIONS + 2)
        single_id, service_id = estate.prod_promotions[-2:]
        log(
            f"{kind}: {PROMOTIONS + 2} releases promoted through dev and stage to prod in "
            f"{estate.setup_seconds:.1f} s"
        )
        evaluation = recorded_context(server, single_id)
        in_process = gate_layers(evaluation)
        log(
            f"{kind}: in process: gates.evaluate p50 {in_process['gates_evaluate']['p50_ms']} ms, "
            f"p99 {in_process['gates_evaluate']['p99_ms']} ms; Rego alone p50 "
            f"{in_process['policy_deny']['p50_ms']} ms"
        )
        single = single_case(server, single_id)
        log(
            f"{kind}: 1 client: {single['ok']}/{single['requests']} ok, p50 "
            f"{single.get('p50_ms')} ms, p99 {single.get('p99_ms')} ms"
        )
        listing = evaluations_listing(server, single_id)
        log(
            f"{kind}: GET evaluations of that promotion: {listing['evaluations']} items, "
            f"{listing['response_bytes'] / 1e6:.2f} MB in {listing['ms']} ms; the latest with "
            f"its context: {listing['latest_with_context_bytes'] / 1e3:.0f} kB in "
            f"{listing['latest_with_context_ms']} ms"
        )
        concurrent = concurrent_case(server, estate.prod_promotions[:PROMOTIONS])
        log(
            f"{kind}: {PROMOTIONS} concurrent: {concurrent['ok']}/{concurrent['requests']} ok, "
            f"p50 {concurrent.get('p50_ms')} ms, p99 {concurrent.get('p99_ms')} ms, rounds "
            f"{concurrent['round_wall_ms']} ms"
        )
        server_exit = server_gone(server)
        in_process |= service_layers(database, workdir, server.token, service_id)
        log(
            f"{kind}: in process: service reevaluate p50 "
            f"{in_process['service_reevaluate'].get('p50_ms')} ms, reads p50 "
            f"{in_process['find_and_build_context'].get('p50_ms')} ms"
        )
    return labels | {
        "setup_seconds": round(estate.setup_seconds, 1),
        "policy_hash": estate.policy_hash,
        "single": single,
        "evaluations_listing": listing,
        "concurrent": concurrent,
        "server_exited": server_exit,
        "in_process": in_process,
    }


def _met(result: dict[str, Any], target: float) -> bool:
    p99 = result.get("p99_ms")
    return (
        p99 is not None
        and p99 < target
        and result["errors"] == 0
        and not result["truncated_by_deadline"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=DATABASES, default=None)
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    require_loopback(REGISTRY_URL)
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = source_commit()
    repository = f"bench/gates-{uuid.uuid4().hex[:10]}"
    digest = push_image(REGISTRY_URL, repository, "v1", f"bench {repository}")
    log(f"pushed {REGISTRY}/{repository}:v1 = {digest}")
    rego = policy_rego()
    results = [
        bench_database(kind, repository, digest)
        for kind in ([args.database] if args.database else DATABASES)
    ]
    single_met = all(_met(r["single"], TARGET_SINGLE_P99_MS) for r in results)
    concurrent_met = all(_met(r["concurrent"], TARGET_CONCURRENT_P99_MS) for r in results)
    path = write_result(
        "gates",
        {
            "benchmark": "promotion gate evaluation through the HTTP API of a real stella server",
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "commit": commit,
            "logical_cpus": os.cpu_count(),
            # other processes on the machine skew the figures: 1/5/15-minute load averages
            "load_average": {
                "before": [round(x, 2) for x in load_before],
                "after": [round(x, 2) for x in os.getloadavg()],
            },
            "gates": GATE_NAMES,
            "policy": {
                "rules": RULES,
                "bytes": len(rego.encode()),
                "hash": "sha256:" + hashlib.sha256(rego.encode()).hexdigest(),
            },
            "promotions": PROMOTIONS,
            "single_requests": SINGLE_REQUESTS,
            "rounds": ROUNDS,
            "gate_iterations": GATE_ITERATIONS,
            "service_calls": SERVICE_CALLS,
            "read_calls": READ_CALLS,
            "target": {
                "p99_single_ms": TARGET_SINGLE_P99_MS,
                "p99_concurrent_ms": TARGET_CONCURRENT_P99_MS,
                "single_met": single_met,
                "concurrent_met": concurrent_met,
            },
            "duration_seconds": round(time.perf_counter() - started, 1),
            "results": results,
        },
    )
    log(
        f"target p99 < {TARGET_SINGLE_P99_MS:g} ms (1 client): "
        f"{'met' if single_met else 'NOT met'}; p99 < {TARGET_CONCURRENT_P99_MS:g} ms "
        f"({PROMOTIONS} concurrent): {'met' if concurrent_met else 'NOT met'}"
    )
    log(f"wrote {path}")


if __name__ == "__main__":
    main()
