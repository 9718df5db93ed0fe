"""Join tokens and enrolment through the API, on both databases: one-time, expiring tokens,
CSRs checked, names unique, revocation immediate."""

from __future__ import annotations

import time
import uuid

import pytest

from stella.adapters.pki import generate_agent_key_and_csr
from stella.domain.errors import PermissionDenied
from stella.services import agents


@pytest.fixture
def prod(api):
    slug = f"p{uuid.uuid4().hex[:6]}"
    assert (
        api.post("/environments", {"name": slug, "slug": slug, "promotion_order": 900}).status_code
        == 201
    )
    return slug


def _token(api, environment: str, **extra) -> str:
    response = api.post("/agents/join-tokens", {"environment": environment, **extra})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def _enrol(client, token: str, name: str, csr: str | None = None):
    csr = csr or generate_agent_key_and_csr(name)[1]
    return client.post(
        "/api/v1/agents/enroll", json={"join_token": token, "name": name, "csr": csr}
    )


def test_a_join_token_enrols_exactly_one_agent(api, client, prod, container):
    token = _token(api, prod, capabilities=["docker", "compose"])
    name = f"a-{uuid.uuid4().hex[:6]}"
    enrolled = _enrol(client, token, name)
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert "BEGIN CERTIFICATE" in body["certificate"]
    assert "BEGIN CERTIFICATE" in body["ca_certificate"]
    assert body["agent_url"].startswith("https://")
    shown = api.get(f"/agents/{name}").json()
    assert (shown["state"], shown["capabilities"]) == ("online", ["compose", "docker"])

    reused = _enrol(client, token, f"{name}-2")
    assert reused.status_code == 401
    assert "already used" in reused.json()["detail"]
    assert api.get(f"/agents/{name}-2").status_code == 404


def test_expired_unknown_and_malformed_enrolments_are_refused(api, client, prod):
    expired = _token(api, prod, ttl="1s")
    time.sleep(1.2)
    response = _enrol(client, expired, f"x-{uuid.uuid4().hex[:6]}")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]

    assert _enrol(client, "stj_not-a-token", "nobody").status_code == 401

    garbage = _enrol(client, _token(api, prod), "garbage", csr="-----BEGIN nonsense")
    assert garbage.status_code == 422
    assert garbage.json()["errors"][0]["field"] == "csr"


def test_join_token_input_is_checked(api, prod):
    bad = api.post("/agents/join-tokens", {"environment": prod, "capabilities": ["kubernetes"]})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "capabilities"
    long = api.post("/agents/join-tokens", {"environment": prod, "ttl": "30d"})
    assert (long.status_code, long.json()["errors"][0]["field"]) == (422, "ttl")
    unknown = api.post("/agents/join-tokens", {"environment": "nowhere"})
    assert unknown.status_code == 404
    viewer = api.user_token("viewer")
    denied = api.request("POST", "/agents/join-tokens", token=viewer, json={"environment": prod})
    assert denied.status_code == 403


def test_agent_names_are_unique_and_revocation_is_immediate(api, client, prod, container):
    name = f"r-{uuid.uuid4().hex[:6]}"
    first = _enrol(client, _token(api, prod), name)
    assert first.status_code == 201
    twin = _enrol(client, _token(api, prod), name)
    assert twin.status_code == 409
    agent_id = uuid.UUID(first.json()["agent_id"])
    serial = api.get(f"/agents/{name}").json()["certificate_serial"]
    assert agents.authenticate(container.read_uow, agent_id, serial).name == name

    revoked = api.post(f"/agents/{name}/revoke")
    assert revoked.json()["state"] == "revoked"
    with pytest.raises(PermissionDenied, match="revoked"):
        agents.authenticate(container.read_uow, agent_id, serial)
    audit = api.get("/audit-events", params={"action": "agent.revoked"}).json()["items"]
    assert any(e["resource_id"] == str(agent_id) for e in audit)


def test_targets_pin_agents_of_their_own_environment(api, client, prod):
    name = f"pin-{uuid.uuid4().hex[:6]}"
    assert _enrol(client, _token(api, prod), name).status_code == 201
    agent_id = api.get(f"/agents/{name}").json()["id"]
    pinned = api.post(
        "/targets",
        {"name": f"t-{name}", "environment": prod, "type": "docker_host", "agent_id": name},
    )
    assert pinned.status_code == 201, pinned.text
    assert pinned.json()["agent_id"] == agent_id
    other = f"o{uuid.uuid4().hex[:6]}"
    api.post("/environments", {"name": other, "slug": other, "promotion_order": 901})
    wrong = api.post(
        "/targets",
        {"name": f"u-{name}", "environment": other, "type": "docker_host", "agent_id": name},
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0] == {
        "field": "agent_id",
        "message": f"agent '{name}' serves another environment",
    }
