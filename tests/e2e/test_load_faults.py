"""Bounded load with faults on PostgreSQL: 50 concurrent clients create, promote and approve
releases against `stella server --no-worker` and a standalone `stella worker`, while the worker is
killed with SIGKILL (and replaced) and every database connection is terminated. Clients retry a
POST answered 503 with its Idempotency-Key, as the CLI does. Afterwards no response was a 5xx
other than 503 (+ Retry-After), every promotion's history is a complete chain (seq 1..n) ending
in its state, every decision verifies, the audit chain verifies, nothing is stuck."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from stella.adapters.signing.dsse import VerificationError, verify_envelope
from tests.conftest import (
    REGISTRY,
    REGISTRY_URL,
    create_database,
    drop_database,
    free_port,
    service_missing,
)
from tests.support.live import STELLA, LiveServer, start_server
from tests.support.load import Recorder, WorkerProcesses, terminate_backends, tracebacks
from tests.support.oci import push_image
from tests.support.promotions import pipeline

CLIENTS = 50
LOAD_SECONDS = 60
KILL_WORKER_AT = 20
TERMINATE_BACKENDS_AT = 40
SETTLE_SECONDS = 20
APPROVERS = 5
# a promotion in one of these states is still moving: after settling, none may be left there
MOVING = {"pending", "deploying"}


def client(server: LiveServer, token: str | None = None, connections: int = 2) -> httpx.Client:
    return httpx.Client(
        base_url=server.url + "/api/v1",
        timeout=httpx.Timeout(20, connect=5),
        headers={"Authorization": f"Bearer {token or server.token}"},
        # idle connections are dropped well before the server's 5 s keep-alive timeout, so a
        # request never races the server closing the connection it is sent on
        limits=httpx.Limits(max_connections=connections, keepalive_expiry=1),
    )


def setup_estate(server: LiveServer) -> list[str]:
    """dev (no approvals) → stage (1 approval), the component `api` at a pushed `v1`, a clean
    scan of it; returns the approvers' tokens."""
    repository = f"app/load-{uuid.uuid4().hex[:10]}"
    digest = push_image(REGISTRY_URL, repository, "v1", f"load {repository}")
    with client(server) as api:
        response = api.post(
            "/components", json={"name": "api", "repository": f"{REGISTRY}/{repository}"}
        )
        assert response.status_code == 201, response.text
        for environment in pipeline([])[:2]:
            response = api.post("/environments", json=environment)
            assert response.status_code == 201, response.text
        response = api.post("/scans", json={"digest": digest, "findings": []})
        assert response.status_code == 201, response.text
        approvers = []
        for index in range(APPROVERS):
            response = api.post("/users", json={"name": f"approver-{index}", "role": "approver"})
            assert response.status_code == 201, response.text
            approvers.append(response.json()["token"])
    return approvers


def post_retrying(
    recorder: Recorder,
    api: httpx.Client,
    route: str,
    path: str,
    body: dict,
    seen: dict[str, set[str]],
    lock: threading.Lock,
) -> httpx.Response | None:
    """POST with an Idempotency-Key, retried (same key) while the answer is 503, as the CLI
    does: the change happens once whether or not the first attempt's answer got through."""
    key = str(uuid.uuid4())
    response = None
    for attempt in range(4):
        response = recorder.call(
            api, "POST", route, path, json=body, headers={"Idempotency-Key": key}
        )
        if response is None or response.status_code != 503:
            break
        with lock:
            seen["retried"].add(key)
        time.sleep(0.2 * (attempt + 1))
    if response is not None and response.headers.get("idempotent-replayed") == "true":
        with lock:
            seen["replayed"].add(key)
    return response


def run_client(
    server: LiveServer,
    number: int,
    approver: str,
    recorder: Recorder,
    deadline: float,
    seen: dict[str, set[str]],
    lock: threading.Lock,
) -> None:
    """Loop until `deadline`: release → dev → stage → approve → lists. A failed step ends the
    iteration (nothing is retried: what the server committed is checked afterwards)."""
    with client(server) as admin, client(server, approver) as approving:
        iteration = 0
        while time.monotonic() < deadline:
            iteration += 1
            version = f"1.{number}.{iteration}"
            release = post_retrying(
                recorder,
                admin,
                "/releases",
                "/releases",
                {"name": "api", "version": version, "components": {"api": "v1"}},
                seen,
                lock,
            )
            if release is None or release.status_code != 201:
                continue
            release_id = release.json()["id"]
            promotions = []
            for environment in ("dev", "stage"):
                promotion = post_retrying(
                    recorder,
                    admin,
                    "/promotions",
                    "/promotions",
                    {"release_id": release_id, "target_environment": environment},
                    seen,
                    lock,
                )
                if promotion is None or promotion.status_code != 201:
                    break
                promotions.append(promotion.json())
            with lock:
                seen["created"].update(p["id"] for p in promotions)
            if len(promotions) == 2 and promotions[1]["state"] == "awaiting_approval":
                stage_id = promotions[1]["id"]
                approved = post_retrying(
                    recorder,
                    approving,
                    "/promotions/{id}/approve",
                    f"/promotions/{stage_id}/approve",
                    {"comment": f"load {version}"},
                    seen,
                    lock,
                )
                if approved is not None and approved.status_code in (200, 503):
                    with lock:
                        seen["approved" if approved.status_code == 200 else "approve_503"].add(
                            stage_id
                        )
            recorder.call(admin, "GET", "/promotions", "/promotions", params={"limit": 20})
            recorder.call(admin, "GET", "/releases", "/releases", params={"limit": 20})


def all_promotions(api: httpx.Client) -> list[dict]:
    items: list[dict] = []
    cursor = None
    for _ in range(200):  # bounded: 200 pages of 500
        params = {"limit": 500} | ({"cursor": cursor} if cursor else {})
        response = api.get("/promotions", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("more than 100000 promotions?")


def wait_settled(api: httpx.Client, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        promotions = all_promotions(api)
        if not any(p["state"] in MOVING for p in promotions) or time.monotonic() > deadline:
            return promotions
        time.sleep(0.5)


def check_promotion(api: httpx.Client, promotion: dict, keys: list[bytes]) -> list[str]:
    """The promotion's problems (empty when its history and decision are sound)."""
    problems = []
    pid, state = promotion["id"], promotion["state"]
    response = api.get(f"/promotions/{pid}/events", params={"limit": 500})
    if response.status_code != 200:
        return [f"{pid}: GET events -> {response.status_code} {response.text[:200]}"]
    events = response.json()["items"]
    chain = [(e["from"], e["to"]) for e in events]
    if not events:
        return [f"{pid} ({state}): no events"]
    if events[0]["from"] is not None or events[0]["to"] != "pending":
        problems.append(f"{pid}: history does not start with creation: {chain}")
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(events) + 1)):
        problems.append(f"{pid}: event seq has gaps or duplicates (want 1..{len(events)}): {seqs}")
    for previous, event in itertools.pairwise(events):
        if event["from"] != previous["to"]:
            problems.append(f"{pid}: broken chain {chain}")
            break
        same = (previous["from"], previous["to"], previous["by"]) == (
            event["from"],
            event["to"],
            event["by"],
        )
        if same and event["from"] != "awaiting_approval":
            problems.append(f"{pid}: duplicate transition {event['from']}->{event['to']}: {chain}")
            break
    if events[-1]["to"] != state:
        problems.append(f"{pid}: history ends in {events[-1]['to']}, promotion is {state}: {chain}")
    if [to for _, to in chain].count("approved") > 1:
        problems.append(f"{pid}: approved more than once: {chain}")
    if state in ("approved", "rejected"):
        decision = promotion.get("decision") or {}
        if decision.get("outcome") != state:
            problems.append(f"{pid} ({state}): decision summary {decision}")
        response = api.get(f"/promotions/{pid}/decision")
        if response.status_code != 200:
            problems.append(f"{pid} ({state}): GET decision -> {response.status_code}")
        else:
            problems += verify_decision(pid, state, response.json(), keys)
    return problems


def verify_decision(pid: str, state: str, envelope: dict, keys: list[bytes]) -> list[str]:
    for key in keys:
        try:
            statement = verify_envelope(envelope, key)
        except VerificationError:
            continue
        outcome = statement["predicate"].get("outcome")
        return [] if outcome == state else [f"{pid} ({state}): signed outcome {outcome}"]
    return [f"{pid} ({state}): decision envelope verifies with no published key"]


def test_fifty_clients_through_a_killed_worker_and_terminated_connections(tmp_path):
    try:
        httpx.get(f"{REGISTRY_URL}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError:
        service_missing(f"the OCI registry at {REGISTRY_URL}")
    database = create_database("postgresql", tmp_path, migrate=False)
    dbname = database.url.rsplit("/", 1)[1]
    home = tmp_path / "home"
    server = start_server(
        [STELLA, "server", "--no-worker"],
        home,
        free_port(),
        database.url,
    )
    workers = WorkerProcesses(database.url, home)
    try:
        _scenario(server, workers, dbname)
    finally:
        workers.stop_all()
        server.stop()
        drop_database(database)


def _scenario(server: LiveServer, workers: WorkerProcesses, dbname: str) -> None:
    worker = workers.start("load-worker-1")
    approvers = setup_estate(server)
    recorder = Recorder()
    lock = threading.Lock()
    seen: dict[str, set[str]] = {
        "created": set(),
        "approved": set(),
        "approve_503": set(),
        "retried": set(),
        "replayed": set(),
    }
    faults: list[str] = []
    deadline = recorder.started + LOAD_SECONDS
    threads = [
        threading.Thread(
            target=run_client,
            args=(server, n, approvers[n % APPROVERS], recorder, deadline, seen, lock),
            daemon=True,
        )
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()

    time.sleep(max(0.0, recorder.started + KILL_WORKER_AT - time.monotonic()))
    assert worker.poll() is None, "the first worker died before it was killed"
    workers.kill(worker)
    worker = workers.start("load-worker-2")
    faults.append(f"t={time.monotonic() - recorder.started:.1f}s worker killed (-9) and replaced")

    time.sleep(max(0.0, recorder.started + TERMINATE_BACKENDS_AT - time.monotonic()))
    terminated = terminate_backends(dbname)
    assert terminated > 0, "no database connection was terminated: the fault was not injected"
    faults.append(
        f"t={time.monotonic() - recorder.started:.1f}s {terminated} backend connections terminated"
    )

    for thread in threads:
        thread.join(timeout=max(1.0, deadline + 25 - time.monotonic()))
    hung = sum(thread.is_alive() for thread in threads)
    load_seconds = time.monotonic() - recorder.started

    with client(server, connections=16) as api:
        promotions = wait_settled(api, SETTLE_SECONDS)
        keys = [k["public_key_pem"].encode() for k in api.get("/keys").json()["keys"]]
        with ThreadPoolExecutor(16) as pool:
            problems = [
                p
                for found in pool.map(lambda p: check_promotion(api, p, keys), promotions)
                for p in found
            ]
        audit = api.get("/audit/verify")
    states = {}
    for promotion in promotions:
        states[promotion["state"]] = states.get(promotion["state"], 0) + 1

    print(f"\n--- load and faults ({CLIENTS} clients, {load_seconds:.1f} s) ---")
    print("\n".join(faults))
    print(recorder.summary())
    print(f"promotions: {len(promotions)} {dict(sorted(states.items()))}")
    print(f"audit verify: {audit.status_code} {audit.text[:200]}")
    # a 503 does not say whether the change was committed (the connection may drop after COMMIT):
    # count the changes that were answered 503 but happened anyway, for the record
    by_id = {p["id"]: p for p in promotions}
    unanswered = len(by_id.keys() - seen["created"])
    applied = sum(by_id[i]["state"] == "approved" for i in seen["approve_503"])
    print(
        f"answered 503 yet committed: {unanswered} promotion(s) created, "
        f"{applied} of {len(seen['approve_503'])} approval(s) applied"
    )
    print(
        f"POSTs retried after a 503 with their Idempotency-Key: {len(seen['retried'])}; "
        f"answered from the key (the first attempt had committed): {len(seen['replayed'])}"
    )

    log = tracebacks(server.log)
    assert hung == 0, f"{hung} client threads still running after the deadline"
    assert server.process.poll() is None, f"the server exited\n{log}"
    assert worker.poll() is None, "the replacement worker died"
    transport = [s for s in recorder.samples if s.status == 0]
    assert not transport, f"requests without a response: {transport[:5]}"
    server_errors = [s for s in recorder.samples if s.status >= 500 and s.status != 503]
    assert not server_errors, f"5xx responses: {server_errors[:5]}\nserver log:\n{log}"
    unavailable = [s for s in recorder.samples if s.status == 503 and not s.retry_after]
    assert not unavailable, f"503 without Retry-After: {unavailable[:5]}"
    lost = seen["created"] - by_id.keys()
    assert not lost, f"promotions answered 201 but missing from GET /promotions: {sorted(lost)[:5]}"
    not_approved = [i for i in seen["approved"] if by_id[i]["state"] != "approved"]
    assert not not_approved, f"approved (200) but not approved now: {not_approved[:5]}"
    stuck = [(p["id"], p["state"]) for p in promotions if p["state"] in MOVING]
    assert not stuck, f"promotions stuck after {SETTLE_SECONDS}s: {stuck[:10]}"
    assert not problems, "\n".join(problems[:20])
    assert audit.status_code == 200, audit.text
    assert audit.json()["ok"] is True, audit.json()
    assert len(seen["approved"]) > 0, "no promotion went all the way through"
