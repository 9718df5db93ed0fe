"""A security waiver's whole life through the API, on SQLite and PostgreSQL: it unblocks a
promotion the security gate blocked; once revoked (`POST /waivers/{id}/revoke`) or expired
(noticed by the workers' periodic pass), the verdict blocks again and open promotions are gated
again; every recorded change counts in `release_verdict_changed_total` on /metrics."""

from __future__ import annotations

import time

import pytest

from stella.services import security
from stella.services.security import expire_waivers
from tests.support.prometheus import sample
from tests.support.promotions import gate
from tests.support.security import REQUESTS_CVE, REQUESTS_GHSA, exposed_estate

METRIC = "release_verdict_changed_total"


def changed(client, environment: str, state: str) -> float:
    response = client.get("/metrics")
    assert response.status_code == 200
    return sample(response.text, METRIC, environment=environment, state=state)


def verdict(api, digest: str, environment: str) -> dict:
    found = api.get("/verdicts", params={"digest": digest}).json()
    return next(v for v in found["verdicts"] if v["environment"] == environment)


def history(api, digest: str, environment: str) -> list[tuple[str, str]]:
    """(state, cause) of the recorded changes, oldest first."""
    found = api.get("/verdicts", params={"digest": digest}).json()["history"]
    return [(h["state"], h["cause"]) for h in reversed(found) if h["environment"] == environment]


def promote(api, release_id: str, target: str) -> dict:
    response = api.post("/promotions", {"release_id": release_id, "target_environment": target})
    assert response.status_code == 201, response.text
    return dict(response.json())


def waive(api, **extra) -> dict:
    spec = {
        "advisory": REQUESTS_CVE,
        "package": "pkg:pypi/requests",
        "reason": "the proxy strips the header; upgrade planned",
        **extra,
    }
    response = api.post("/waivers", spec)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_a_revoked_waiver_blocks_again_and_each_change_is_counted(
    api, client, registry_url, repository
):
    estate = exposed_estate(api, registry_url, repository)
    blocked = promote(api, estate.release_id, "dev")
    assert blocked["state"] == "blocked"
    assert REQUESTS_GHSA in gate(blocked, "security")["reason"]
    assert verdict(api, estate.digest, "dev")["state"] == "fail"
    passes, fails = changed(client, "dev", "pass"), changed(client, "dev", "fail")

    waiver = waive(api, ttl="7d")
    assert verdict(api, estate.digest, "dev")["state"] == "pass"
    unblocked = api.get(f"/promotions/{blocked['id']}").json()
    assert unblocked["state"] == "approved"
    assert gate(unblocked, "security")["passed"] is True
    assert "1 waived" in gate(unblocked, "security")["reason"]
    assert changed(client, "dev", "pass") == passes + 1
    assert changed(client, "dev", "fail") == fails

    # the waiver covers stage too while it lasts: the security gate passes there
    stage = promote(api, estate.release_id, "stage")
    assert stage["state"] == "awaiting_approval"
    assert gate(stage, "security")["passed"] is True

    revoked = api.post(f"/waivers/{waiver['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    now_dev = verdict(api, estate.digest, "dev")
    assert now_dev["state"] == "fail"
    assert changed(client, "dev", "fail") == fails + 1
    assert changed(client, "dev", "pass") == passes + 1
    assert history(api, estate.digest, "dev")[-2:] == [
        ("pass", "waiver"),
        ("fail", "waiver revoked"),
    ]
    # the waiting stage promotion was gated again at once, and blocks on the advisory
    again = api.get(f"/promotions/{stage['id']}").json()
    assert again["state"] == "blocked"
    assert REQUESTS_GHSA in gate(again, "security")["reason"]
    audit = api.get("/audit-events", params={"action": "waiver.revoked"}).json()["items"]
    assert [e["resource_id"] for e in audit] == [waiver["id"]]


def failing_reevaluation(*_args, **_kwargs):
    raise ConnectionError("the database went away")


def test_an_expired_waiver_lets_nothing_through_any_more(
    api, registry_url, repository, monkeypatch
):
    estate = exposed_estate(api, registry_url, repository)
    blocked = promote(api, estate.release_id, "dev")
    assert blocked["state"] == "blocked"
    waiver = waive(api, ttl="2s")
    assert api.get(f"/promotions/{blocked['id']}").json()["state"] == "approved"
    stage = promote(api, estate.release_id, "stage")
    assert stage["state"] == "awaiting_approval"
    assert gate(stage, "security")["passed"] is True

    deadline = time.monotonic() + 30
    while verdict(api, estate.digest, "stage")["state"] != "fail":
        assert time.monotonic() < deadline, "the waiver never expired"
        time.sleep(0.2)
    current = verdict(api, estate.digest, "stage")
    assert [b["advisory_id"] for b in current["blocking"]] == [REQUESTS_GHSA]
    # a pass whose re-evaluation fails (the database went away) hands the expiry back
    with monkeypatch.context() as patched:
        patched.setattr(security, "reevaluate", failing_reevaluation)
        with pytest.raises(ConnectionError):
            expire_waivers(api.container.security)
    assert api.get(f"/promotions/{stage['id']}").json()["state"] == "awaiting_approval"
    # what every worker does on its periodic pass: the expiry is handled once, like a revocation
    assert expire_waivers(api.container.security) >= 1
    expire_waivers(api.container.security)
    again = api.get(f"/promotions/{stage['id']}").json()
    assert again["state"] == "blocked"
    assert REQUESTS_GHSA in gate(again, "security")["reason"]
    assert history(api, estate.digest, "stage")[-1] == ("fail", "waiver expired")
    audit = api.get("/audit-events", params={"action": "waiver.expired"}).json()["items"]
    assert [e["resource_id"] for e in audit] == [waiver["id"]]
    # not revoked: it simply ran out
    listed = api.get("/waivers", params={"include_revoked": "true"}).json()["items"]
    assert [(w["id"], w["revoked_at"]) for w in listed] == [(waiver["id"], None)]
