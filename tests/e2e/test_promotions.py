"""Promotions through the API: gates, approvals with separation of duties, freeze windows,
Rego policies, signed decisions that verify offline and replay identically."""

from __future__ import annotations

import base64
import json
import threading
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stella.adapters.signing.dsse import VerificationError, public_pem, verify_envelope
from stella.services.promotions import decide
from tests.support.promotions import build_estate, gate


@pytest.fixture
def estate(api, registry_url, repository):
    return build_estate(api, registry_url, repository)


@pytest.fixture(autouse=True)
def every_decision_replays(api):
    """After each test, every promotion of the test's tenant replays identically."""
    yield
    for promotion in api.get("/promotions", params={"limit": 500}).json()["items"]:
        replayed = api.post(f"/promotions/{promotion['id']}/replay").json()
        assert replayed["identical"] is True, (promotion["id"], replayed)


def promote(api, release_id, target, **extra):
    response = api.post(
        "/promotions", {"release_id": release_id, "target_environment": target, **extra}
    )
    assert response.status_code == 201, response.text
    return response.json()


def verify_and_replay(api, promotion_id):
    """Every decision verifies with the published key and replays identically."""
    envelope = api.get(f"/promotions/{promotion_id}/decision").json()
    key = api.get("/keys").json()["keys"][0]
    statement = verify_envelope(envelope, key["public_key_pem"].encode())
    replayed = api.post(f"/promotions/{promotion_id}/replay").json()
    assert replayed["identical"] is True, replayed
    assert replayed["differences"] == []
    return statement


def test_dev_stage_prod_with_approvals_policy_and_separation_of_duties(api, estate):
    dev = promote(api, estate.release_id, "dev")
    assert dev["state"] == "approved"
    assert dev["source_environment"] is None
    assert [g["gate"] for g in dev["gate_results"]] == ["previous_environment", "security"]
    assert dev["decision"]["outcome"] == "approved"
    verify_and_replay(api, dev["id"])

    stage = promote(api, estate.release_id, "stage")
    assert (stage["state"], stage["source_environment"]) == ("awaiting_approval", "dev")
    stage = api.post(
        f"/promotions/{stage['id']}/approve", {"comment": "lgtm"}, token=estate.approvers[0]
    ).json()
    assert stage["state"] == "approved"
    verify_and_replay(api, stage["id"])

    prod = promote(api, estate.release_id, "prod")
    assert prod["state"] == "awaiting_approval"
    assert [g["gate"] for g in prod["gate_results"]] == [
        "previous_environment",
        "freeze_window",
        "security",
        "health_check",
        "policy",
        "approval",
    ]
    assert all(g["passed"] for g in prod["gate_results"][:-1]), prod["gate_results"]
    own = api.post(f"/promotions/{prod['id']}/approve")
    assert own.status_code == 403
    assert "separation of duties" in own.json()["detail"]
    first = api.post(f"/promotions/{prod['id']}/approve", token=estate.approvers[0]).json()
    assert (first["state"], gate(first, "approval")["reason"]) == (
        "awaiting_approval",
        "1 of 2 approval(s)",
    )
    twice = api.post(f"/promotions/{prod['id']}/approve", token=estate.approvers[0])
    assert twice.status_code == 409
    final = api.post(f"/promotions/{prod['id']}/approve", token=estate.approvers[1]).json()
    assert final["state"] == "approved"
    assert len(final["approvals"]) == 2
    statement = verify_and_replay(api, prod["id"])
    assert statement["subject"][0]["digest"] == {"sha256": estate.digest.removeprefix("sha256:")}
    predicate = statement["predicate"]
    assert predicate["outcome"] == "approved"
    assert predicate["policy_hashes"]["prod-rules"].startswith("sha256:")
    assert [g["gate"] for g in predicate["gate_results"]][-1] == "approval"
    events = api.get(f"/promotions/{prod['id']}/events").json()["items"]
    assert [e["to"] for e in events] == [
        "pending",
        "awaiting_approval",
        "awaiting_approval",
        "approved",
    ]


def test_skipping_an_environment_is_blocked_by_previous_environment(api, estate):
    blocked = promote(api, estate.release_id, "prod")
    assert blocked["state"] == "blocked"
    assert gate(blocked, "previous_environment")["reason"] == "release was never promoted to stage"
    assert blocked["decision"] is None
    again = api.post(f"/promotions/{blocked['id']}/reevaluate").json()
    assert again["state"] == "blocked"
    evaluations = api.get(f"/promotions/{blocked['id']}/evaluations").json()["items"]
    assert "context" not in evaluations[0]
    first = api.get(f"/promotions/{blocked['id']}/evaluations/1").json()
    assert first["context"]["target"]["slug"] == "prod"
    assert api.get(f"/promotions/{blocked['id']}/evaluations/9").status_code == 404
    assert [e["seq"] for e in evaluations] == [1, 2]
    assert api.post(f"/promotions/{blocked['id']}/replay").json()["identical"] is True
    assert api.post(f"/promotions/{blocked['id']}/cancel").json()["state"] == "cancelled"
    late = api.post(f"/promotions/{blocked['id']}/approve", token=estate.approvers[0])
    assert late.status_code == 409


def test_rego_policy_denies_with_its_message(api, registry_url, repository):
    rc = build_estate(api, registry_url, repository, version="1.1.0-rc.1")
    for target in ("dev", "stage"):
        promotion = promote(api, rc.release_id, target)
        if promotion["state"] == "awaiting_approval":
            api.post(f"/promotions/{promotion['id']}/approve", token=rc.approvers[0])
    prod = promote(api, rc.release_id, "prod")
    assert prod["state"] == "blocked"
    assert (
        gate(prod, "policy")["reason"]
        == "prod-rules: pre-release 1.1.0-rc.1 may not go to production"
    )


def test_freeze_window_blocks_until_an_admin_overrides_with_a_reason(api, registry_url, repository):
    always = [
        {
            "name": "all-week",
            "rrule": "FREQ=DAILY",
            "start": "2026-01-01T00:00:00",
            "duration": "24h",
            "timezone": "Europe/Berlin",
        }
    ]
    estate = build_estate(api, registry_url, repository, prod_windows=always)
    for target in ("dev", "stage"):
        promotion = promote(api, estate.release_id, target)
        if promotion["state"] == "awaiting_approval":
            api.post(f"/promotions/{promotion['id']}/approve", token=estate.approvers[0])
    prod = promote(api, estate.release_id, "prod")
    assert prod["state"] == "blocked"
    assert gate(prod, "freeze_window")["reason"] == "inside freeze window 'all-week'"
    releaser = api.user_token("releaser")
    denied = api.post(
        f"/promotions/{prod['id']}/override",
        {"gate": "freeze_window", "reason": "hotfix for incident 42"},
        token=releaser,
    )
    assert denied.status_code == 403
    short = api.post(f"/promotions/{prod['id']}/override", {"gate": "freeze_window", "reason": "x"})
    assert short.status_code == 422
    overridden = api.post(
        f"/promotions/{prod['id']}/override",
        {"gate": "freeze_window", "reason": "hotfix for incident 42"},
    ).json()
    assert overridden["state"] == "awaiting_approval"
    assert (
        "overridden by admin: hotfix for incident 42" in gate(overridden, "freeze_window")["reason"]
    )
    audit = api.get("/audit-events", params={"action": "promotion.gate_overridden"}).json()["items"]
    assert audit[0]["details"]["reason"] == "hotfix for incident 42"


def test_frozen_environment_always_blocks(api, estate):
    promote(api, estate.release_id, "dev")
    api.patch("/environments/stage", {"state": "frozen"})
    stage = promote(api, estate.release_id, "stage")
    assert stage["state"] == "awaiting_approval"  # stage does not check freeze windows
    api.patch("/environments/stage", {"gates": ["freeze_window"]})
    assert api.post(f"/promotions/{stage['id']}/reevaluate").json()["state"] == "blocked"


def test_reachable_critical_finding_blocks_the_security_gate(api, estate):
    api.post(
        "/scans",
        {
            "digest": estate.digest,
            "findings": [
                {"id": "CVE-2026-9999", "severity": "critical", "reachable": True},
                {"id": "CVE-2026-8888", "severity": "critical", "suppressed": True},
            ],
        },
    )
    dev = promote(api, estate.release_id, "dev")
    assert dev["state"] == "blocked"
    assert gate(dev, "security")["reason"] == (
        "api: 1 critical (CVE-2026-9999) reachable or of unknown reachability, "
        "not covered by VEX or a waiver"
    )
    api.post("/scans", {"digest": estate.digest, "findings": []})
    # the clean scan changes the digest's verdict, which gates the open promotion again
    assert api.get(f"/promotions/{dev['id']}").json()["state"] == "approved"


def test_rejection_rejects_and_is_signed(api, estate):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    rejected = api.post(
        f"/promotions/{stage['id']}/reject", {"reason": "smoke failed"}, token=estate.approvers[2]
    ).json()
    assert rejected["state"] == "rejected"
    assert (
        rejected["decision"]["reason"]
        == f"rejected by {rejected['approvals'][0]['user']}: smoke failed"
    )
    verify_and_replay(api, stage["id"])
    assert (
        api.post(f"/promotions/{stage['id']}/approve", token=estate.approvers[0]).status_code == 409
    )


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"target_environment": "dev", "source_environment": "dev"}, "target_environment", "same"),
        (
            {"target_environment": "stage", "source_environment": "prod"},
            "target_environment",
            "go forward",
        ),
        ({"target_environment": "nowhere"}, "target_environment", "not found"),
        ({"release_id": "api@9.9.9", "target_environment": "dev"}, "release_id", "not found"),
        ({"target_environment": "dev", "colour": "red"}, "colour", "unknown field"),
    ],
    ids=[
        "same-environment",
        "out-of-order",
        "unknown-environment",
        "unknown-release",
        "unknown-field",
    ],
)
def test_bad_promotion_requests_are_422(api, estate, body, field, fragment):
    response = api.post("/promotions", {"release_id": estate.release_id, **body})
    assert response.status_code == 422, response.text
    assert any(e["field"] == field for e in response.json()["errors"])
    assert fragment in response.json()["detail"]
    assert api.get("/promotions").json()["items"] == []


def test_deprecated_release_cannot_be_promoted(api, estate):
    api.post(f"/releases/{estate.release_id}/deprecate")
    response = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    )
    assert response.status_code == 422
    assert "deprecated" in response.json()["detail"]


def test_second_open_promotion_of_the_same_release_is_409(api, estate):
    promote(api, estate.release_id, "dev")
    again = api.post("/promotions", {"release_id": estate.release_id, "target_environment": "dev"})
    assert again.status_code == 409


@pytest.mark.parametrize("role", ["viewer", "releaser"])
def test_roles_without_approval_rights_get_403(api, estate, role):
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    response = api.post(f"/promotions/{stage['id']}/approve", token=api.user_token(role))
    assert response.status_code == 403


def test_policy_with_a_syntax_error_is_rejected_naming_the_line(api):
    response = api.post(
        "/policies",
        {"name": "broken", "rego": "package stella.promotion\n\ndeny contains msg if {\n"},
    )
    assert response.status_code == 422
    message = response.json()["errors"][0]["message"]
    assert message.startswith("line ")
    assert api.get("/policies/broken").status_code == 404
    wrong = api.post("/policies", {"name": "elsewhere", "rego": "package other\n"})
    assert "package stella.promotion" in wrong.json()["detail"]


def test_policies_are_versioned_by_content(api):
    rego = 'package stella.promotion\nimport rego.v1\ndeny contains "no" if { false }\n'
    first = api.post("/policies", {"name": "p", "rego": rego})
    same = api.post("/policies", {"name": "p", "rego": rego})
    changed = api.post("/policies", {"name": "p", "rego": rego + "# v2\n"})
    assert (first.status_code, same.status_code, changed.status_code) == (201, 200, 201)
    assert [first.json()["version"], changed.json()["version"]] == [1, 2]
    assert first.json()["hash"] != changed.json()["hash"]


def test_tampered_decision_envelope_fails_verification_and_says_why(api, estate):
    dev = promote(api, estate.release_id, "dev")
    envelope = api.get(f"/promotions/{dev['id']}/decision").json()
    key = api.get("/keys").json()["keys"][0]["public_key_pem"].encode()
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["outcome"] = "rejected"
    forged = dict(envelope, payload=base64.b64encode(json.dumps(statement).encode()).decode())
    with pytest.raises(VerificationError, match="signature does not match the payload"):
        verify_envelope(forged, key)
    other_key = public_pem(Ed25519PrivateKey.generate().public_key()).encode()
    with pytest.raises(VerificationError, match="no signature by key"):
        verify_envelope(envelope, other_key)
    with pytest.raises(VerificationError, match="not a DSSE envelope"):
        verify_envelope({"payload": "x"}, key)


def test_promotion_history_cannot_be_rewritten_through_the_api(api, estate):
    dev = promote(api, estate.release_id, "dev")
    for method in ("PUT", "PATCH", "DELETE"):
        for path in (
            f"/promotions/{dev['id']}",
            f"/promotions/{dev['id']}/events",
            f"/promotions/{dev['id']}/decision",
        ):
            assert api.request(method, path, json={}).status_code == 405, (method, path)
    assert len(api.get(f"/promotions/{dev['id']}/events").json()["items"]) == 2


def test_other_tenants_promotions_are_404(api, estate, other_tenant):
    dev = promote(api, estate.release_id, "dev")
    assert other_tenant.get(f"/promotions/{dev['id']}").status_code == 404
    assert other_tenant.post(f"/promotions/{dev['id']}/cancel").status_code == 404
    assert other_tenant.get(f"/promotions/{dev['id']}/decision").status_code == 404


def test_two_hundred_concurrent_approvals_count_exactly_and_decide_once(api, estate, container):
    """200 approvers race; 100 are required: exactly 100 count, one decision, 100 get a conflict."""
    from stella.domain.tenancy import Principal, Role
    from stella.services.auth import create_user
    from stella.services.context import CallContext
    from stella.services.specs import UserSpec

    patched = api.patch(
        "/environments/stage",
        {"gates": ["approval"], "approval_policy": {"required_approvals": 100}},
    )
    assert patched.status_code == 200, patched.text
    stage = promote(api, estate.release_id, "stage")
    assert stage["state"] == "awaiting_approval", stage["gate_results"]
    admin = CallContext(
        Principal(api.issued.user.id, api.issued.user.tenant_id, "admin", Role.ADMIN),
        None,
        container.clock,
    )
    approvers = [
        create_user(container.uow, admin, UserSpec(name=f"racer-{i}", role=Role.APPROVER)).user
        for i in range(200)
    ]
    outcomes: list[str] = []
    lock = threading.Lock()

    def approve(user):
        ctx = CallContext(
            Principal(user.id, user.tenant_id, user.name, Role.APPROVER), None, container.clock
        )
        try:
            decide(container.promotions, ctx, stage["id"], True, "")
            result = "ok"
        except Exception as exc:  # noqa: BLE001 - each outcome is counted below
            result = type(exc).__name__
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=approve, args=(u,)) for u in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    final = api.get(f"/promotions/{stage['id']}").json()
    assert final["state"] == "approved"
    assert len(final["approvals"]) == 100
    assert outcomes.count("ok") == 100
    assert outcomes.count("Conflict") == 100
    events = api.get(f"/promotions/{stage['id']}/events").json()["items"]
    assert [e["to"] for e in events].count("approved") == 1
    verify_and_replay(api, stage["id"])


@pytest.mark.parametrize(
    ("command", "final", "reason"),
    [
        (
            "echo deploying ${{ inputs.version }} to ${{ inputs.environment }}",
            "deployed",
            "succeeded",
        ),
        ("exit 3", "failed", "command exited with status 3"),
    ],
    ids=["workflow-succeeds", "workflow-fails"],
)
def test_approval_starts_the_environments_promotion_workflow(
    api, estate, container, tmp_path, command, final, reason
):
    from tests.support.workflows import start_worker, wait_for_run

    api.post(
        "/workflows",
        {
            "name": "deploy-dev",
            "on_failure": "stop",
            "inputs": [
                {"name": "version"},
                {"name": "environment"},
                {"name": "components", "type": "object"},
            ],
            "steps": [{"id": "deploy", "type": "script", "config": {"command": command}}],
        },
    )
    api.patch("/environments/dev", {"promotion_workflow": "deploy-dev"})
    worker = start_worker(container, tmp_path / "work")
    try:
        dev = promote(api, estate.release_id, "dev")
        assert dev["state"] == "deploying"
        events = api.get(f"/promotions/{dev['id']}/events").json()["items"]
        run_id = events[-1]["reason"].split()[3]
        run = wait_for_run(api, run_id)
        assert run["inputs"]["components"] == {"api": f"{estate_repository(api)}@{estate.digest}"}
        for _ in range(200):
            state = api.get(f"/promotions/{dev['id']}").json()["state"]
            if state != "deploying":
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    assert state == final
    last = api.get(f"/promotions/{dev['id']}/events").json()["items"][-1]
    assert (last["from"], last["to"], last["by"]) == ("deploying", final, "workflow")
    assert reason in last["reason"]
    verify_and_replay(api, dev["id"])


def estate_repository(api) -> str:
    return api.get("/components/api").json()["repository"]


def test_a_missing_promotion_workflow_fails_the_promotion_with_the_reason(api, estate):
    api.patch("/environments/dev", {"promotion_workflow": "not-there"})
    dev = promote(api, estate.release_id, "dev")
    assert dev["state"] == "failed"
    last = api.get(f"/promotions/{dev['id']}/events").json()["items"][-1]
    assert last["reason"] == "could not start workflow not-there: workflow 'not-there' not found"


def test_racing_requests_for_the_same_promotion_create_only_one(api, estate, container):
    """Regression (review): two concurrent requests both passed the duplicate check."""
    from stella.domain.tenancy import Principal, Role
    from stella.services.context import CallContext
    from stella.services.promotions import request_promotion
    from stella.services.specs import PromotionSpec

    ctx = CallContext(
        Principal(api.issued.user.id, api.issued.user.tenant_id, "admin", Role.ADMIN),
        None,
        container.clock,
    )
    outcomes: list[str] = []

    def request():
        try:
            request_promotion(
                container.promotions,
                ctx,
                PromotionSpec(release_id=estate.release_id, target_environment="dev"),
            )
            outcomes.append("created")
        except Exception as exc:  # noqa: BLE001 - counted below
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["Conflict"] * 7 + ["created"]
    assert len(api.get("/promotions").json()["items"]) == 1


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e | {"signatures": None}, "no list of signatures"),
        (lambda e: e | {"signatures": [dict(e["signatures"][0], sig=5)]}, "does not match"),
        (
            lambda e: (
                e | {"signatures": [dict(e["signatures"][0], sig=e["signatures"][0]["sig"] + "!!")]}
            ),
            "does not match",
        ),
        (lambda e: e | {"payload": "%%%"}, "not base64"),
    ],
    ids=["signatures-null", "sig-not-text", "sig-with-junk", "payload-not-base64"],
)
def test_malformed_envelopes_fail_verification_with_a_reason(api, estate, mutate, fragment):
    """Regression (review): these crashed with TypeError or verified despite junk."""
    dev = promote(api, estate.release_id, "dev")
    envelope = api.get(f"/promotions/{dev['id']}/decision").json()
    key = api.get("/keys").json()["keys"][0]["public_key_pem"].encode()
    with pytest.raises(VerificationError, match=fragment):
        verify_envelope(mutate(envelope), key)


def test_signing_key_is_created_once_even_when_processes_race(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from stella.adapters.signing.dsse import SigningKey

    with ThreadPoolExecutor(8) as pool:
        keys = list(pool.map(lambda _: SigningKey.load_or_create(tmp_path).keyid, range(16)))
    assert len(set(keys)) == 1
    assert (tmp_path / "decision-ed25519.pem").stat().st_mode & 0o777 == 0o600


def test_separation_of_duties_applies_wherever_it_is_configured(api, estate):
    """Regression (review): SoD was enforced only for production environments."""
    api.patch(
        "/environments/stage",
        {"approval_policy": {"required_approvals": 1, "separation_of_duties": True}},
    )
    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    own = api.post(f"/promotions/{stage['id']}/approve")
    assert own.status_code == 403
    assert "separation-of-duties promotion" in own.json()["detail"]


def test_log_lines_about_a_promotion_carry_its_ids(api, estate, caplog):
    import json as jsonlib
    import logging

    from stella.logging_setup import JsonFormatter

    with caplog.at_level(logging.INFO, logger="stella.promotions"):
        dev = promote(api, estate.release_id, "dev")
    records = [r for r in caplog.records if r.name == "stella.promotions"]
    line = jsonlib.loads(JsonFormatter().format(records[-1]))
    assert line["promotion_id"] == dev["id"]
    assert line["release_id"] == estate.release_id
    assert (line["environment"], line["outcome"]) == ("dev", "approved")


def test_racing_cancellations_cancel_once(api, estate, container):
    """Concurrent cancellations: one wins, the rest are conflicts, one `cancelled` event."""
    from stella.domain.tenancy import Principal, Role
    from stella.services.context import CallContext
    from stella.services.promotions import cancel

    promote(api, estate.release_id, "dev")
    stage = promote(api, estate.release_id, "stage")
    ctx = CallContext(
        Principal(api.issued.user.id, api.issued.user.tenant_id, "admin", Role.ADMIN),
        None,
        container.clock,
    )
    outcomes: list[str] = []

    def attempt():
        try:
            cancel(container.promotions, ctx, stage["id"])
            outcomes.append("cancelled")
        except Exception as exc:  # noqa: BLE001 - counted below
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["Conflict"] * 19 + ["cancelled"]
    events = api.get(f"/promotions/{stage['id']}/events").json()["items"]
    assert [e["to"] for e in events].count("cancelled") == 1
