"""Every endpoint with an id in its path, called by another tenant with this tenant's ids: 404."""

from __future__ import annotations

import json
import re

from stella.adapters.pki import generate_agent_key_and_csr
from tests.support.jobs import create_jobs
from tests.support.promotions import build_estate

BODIES = {
    "override": {"gate": "freeze_window", "reason": "isolation test reason"},
    "corrections": {"reason": "isolation test reason"},
}
ADVISORY = {
    "id": "GHSA-iso0-0000-0000",
    "aliases": ["CVE-2099-0001"],
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
        }
    ],
}


def _security_ids(api, digest: str) -> dict[str, str]:
    """A scan, an attachment, an advisory and a waiver of this tenant."""
    scan = api.post("/scans", {"digest": digest, "findings": []}).json()
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}
    attachment = api.request(
        "POST",
        "/sboms",
        params={"digest": digest},
        content=json.dumps(sbom),
        headers={"Content-Type": "application/json"},
    ).json()
    imported = api.request(
        "POST",
        "/advisories/import",
        content=json.dumps(ADVISORY),
        headers={"Content-Type": "application/json"},
    )
    assert imported.json()["added"] == 1, imported.text
    waiver = api.post(
        "/waivers",
        {"advisory": "CVE-2099-0001", "package": "requests", "reason": "iso", "ttl": "1d"},
    ).json()
    return {
        "scans": scan["id"],
        "attachments": attachment["id"],
        "advisories": "GHSA-iso0-0000-0000",
        "waivers": waiver["id"],
    }


def _enrolled_agent(api, client) -> str:
    token = api.post(
        "/agents/join-tokens", {"environment": "prod", "capabilities": ["docker"]}
    ).json()["token"]
    _key, csr = generate_agent_key_and_csr("iso-agent")
    enrolled = client.post(
        "/api/v1/agents/enroll", json={"join_token": token, "name": "iso-agent", "csr": csr}
    )
    assert enrolled.status_code == 201, enrolled.text
    return enrolled.json()["agent_id"]


def _deployment_job(container, api, release_id: str) -> str:
    """A real job row, made the way the deploy step makes them (no worker runs here)."""
    return str(create_jobs(container, api.get("/targets/prod-1").json()["id"], release_id)[0].id)


def test_no_endpoint_reveals_or_changes_another_tenants_resources(
    api, other_tenant, registry_url, repository, client, container
):
    estate = build_estate(api, registry_url, repository)
    promotion = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    ).json()
    api.post("/workflows", {"name": "iso", "steps": [{"id": "ask", "type": "approval"}]})
    run = api.post("/workflow-runs", {"workflow": "iso"}).json()
    integration = api.post(
        "/integrations", {"type": "registry", "name": "iso", "url": "http://127.0.0.1:5000"}
    ).json()
    user = api.post("/users", {"name": "iso-user", "role": "viewer"}).json()
    token_id = api.get("/users/iso-user/tokens").json()["items"][0]["id"]
    values = {
        "users": user["id"],
        "environments": api.get("/environments/dev").json()["id"],
        "targets": api.get("/targets/prod-1").json()["id"],
        "components": "api",
        "integrations": integration["id"],
        "releases": estate.release_id,
        "promotions": promotion["id"],
        "workflows": "iso",
        "workflow-runs": run["id"],
        "policies": "prod-rules",
        "agents": _enrolled_agent(api, client),
        "deployments": _deployment_job(container, api, estate.release_id),
        "evidence": api.get("/evidence").json()["items"][0]["id"],
        **_security_ids(api, estate.digest),
    }
    paths = client.get("/openapi.json").json()["paths"]
    checked = []
    for template, operations in paths.items():
        if "{" not in template or "/webhooks/" in template:
            continue  # the webhook authenticates by its secret, not by tenant tokens
        resource = template.split("/")[3]
        path = template.removeprefix("/api/v1")
        path = re.sub(
            r"\{(ref|name|run_id|scan_id|advisory_id|waiver_id)\}",
            values[resource],
            path,
            count=1,
        )
        path = path.replace("{version}", "1").replace("{seq}", "1").replace("{step_id}", "ask")
        path = path.replace("{name}", "task.json").replace("{token_id}", token_id)
        for method in operations:
            last = path.rstrip("/").split("/")[-1]
            body = BODIES.get(last, {})
            response = other_tenant.request(method.upper(), path, json=body)
            checked.append((method, template))
            assert response.status_code == 404, (
                method,
                template,
                response.status_code,
                response.text[:300],
            )
    assert len(checked) >= 35  # every operation with an id in its path (39 today)
    assert api.get(f"/promotions/{promotion['id']}").json()["state"] == promotion["state"]
    assert api.get(f"/workflow-runs/{run['id']}").json()["state"] == "running"
    assert api.get("/environments/dev").json()["state"] == "active"
    assert api.get("/environments", token=user["token"]).status_code == 200
    assert api.get(f"/releases/{estate.release_id}").json()["state"] == "active"
    # a target with deployment history is kept: deleting it is refused with the way out
    refused = api.delete("/targets/prod-1")
    assert refused.status_code == 409
    assert "disable it instead" in refused.json()["detail"]
