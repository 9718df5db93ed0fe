"""The security CLI against a live `stella server`, on SQLite and PostgreSQL: `stella scan
upload|show`, `stella exposure` (exit 3 while something running is affected), `stella waiver
create|list|revoke` and `stella verdict show`, with their one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import REGISTRY, create_database, drop_database, free_port
from tests.support.live import STELLA, LiveServer, start_server
from tests.support.oci import push_image
from tests.support.security import OPENSSL_CVE, openssl_trivy


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path) -> Iterator[LiveServer]:
    """A server without a worker (an approved promotion stays approved: nothing deploys)."""
    database = create_database(request.param, tmp_path)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp_path / "home", free_port(), database.url
    )
    try:
        yield server
    finally:
        server.stop()
        drop_database(database)


@pytest.fixture
def release(live, registry_url, repository) -> dict:
    """One environment, `dev`, and release api@1.0.0 of a freshly pushed image."""
    digest = push_image(registry_url, repository, "v1", f"cli security {repository}")
    with live.api() as api:
        for path, body in (
            ("/components", {"name": "api", "repository": f"{REGISTRY}/{repository}"}),
            (
                "/environments",
                {
                    "name": "Dev",
                    "slug": "dev",
                    "promotion_order": 1,
                    "deployment": {"deploy_on_approval": False},
                },
            ),
            ("/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}),
        ):
            response = api.post(path, json=body)
            assert response.status_code == 201, response.text
        return {"id": response.json()["id"], "digest": digest}


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def promotion_state(live: LiveServer, promotion_id: str) -> str:
    with live.api() as api:
        return str(api.get(f"/promotions/{promotion_id}").json()["state"])


def test_scan_exposure_waiver_and_verdict_commands(live, release, tmp_path):
    digest = release["digest"]
    report = tmp_path / "trivy.json"
    report.write_text(json.dumps(openssl_trivy()))

    uploaded = ok(live.cli("scan", "upload", str(report), "--digest", digest))
    match = re.search(r"scan (\S+) \(trivy\): 1 finding\(s\), 1 critical/high", uploaded)
    assert match, uploaded
    shown = ok(live.cli("scan", "show", match.group(1)))
    assert OPENSSL_CVE in shown
    assert "3.0.13-1~deb12u1" in shown

    # nothing runs yet: the blocked promotion does not count
    with live.api() as api:
        promotion = api.post(
            "/promotions", json={"release_id": release["id"], "target_environment": "dev"}
        ).json()
        viewer = api.post("/users", json={"name": "auditor", "role": "viewer"}).json()["token"]
    assert promotion["state"] == "blocked"
    quiet = live.cli("exposure", OPENSSL_CVE)
    assert quiet.returncode == 0, quiet.stderr
    assert f"{OPENSSL_CVE}: nothing running now is affected" in quiet.stdout
    assert f"note: {OPENSSL_CVE} is not in the imported advisory feed" in quiet.stdout

    waive = ("waiver", "create", "--advisory", OPENSSL_CVE, "--package", "openssl")
    bad = live.cli(*waive, "--reason", "r", "--ttl", "soon")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: 422 ttl")
    denied = subprocess.run(
        [STELLA, *waive, "--reason", "r"],
        env=live.cli_env() | {"STELLA_TOKEN": viewer},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode == 1
    assert denied.stderr.startswith("error: 403")
    reason = "not reachable from the network"
    created = ok(live.cli(*waive, "--reason", reason, "--ttl", "1h", "--env", "dev", "-o", "json"))
    (waiver,) = json.loads(created)
    assert (waiver["advisory"], waiver["package"], waiver["environment"]) == (
        OPENSSL_CVE,
        "openssl",
        "dev",
    )
    assert waiver["reason"] == reason
    assert waiver["revoked_at"] is None

    # a scan-only digest is re-gated by the gate itself (docs/security.md, Limits)
    with live.api() as api:
        gated = api.post(f"/promotions/{promotion['id']}/reevaluate").json()
    assert gated["state"] == "approved"
    verdicts = json.loads(ok(live.cli("verdict", "show", "--digest", digest, "-o", "json")))
    assert [(v["environment"], v["state"]) for v in verdicts["verdicts"]] == [("dev", "pass")]

    # a waiver lets a promotion through; it does not hide that something affected runs
    exposed = live.cli("exposure", OPENSSL_CVE)
    assert exposed.returncode == 3, exposed.stderr
    assert "api@1.0.0" in exposed.stdout
    assert "openssl 3.0.11-1~deb12u2 (fixed 3.0.13-1~deb12u1)" in exposed.stdout
    as_json = live.cli("exposure", OPENSSL_CVE, "-o", "json")
    assert as_json.returncode == 3
    found = json.loads(as_json.stdout)
    assert [(e["environment"], e["release"]) for e in found["environments"]] == [
        ("dev", "api@1.0.0")
    ]
    assert found["environments"][0]["digests"][0]["digest"] == digest

    assert waiver["id"] in ok(live.cli("waiver", "list"))
    assert ok(live.cli("waiver", "revoke", waiver["id"], "--yes")).strip() == (
        f"waiver {waiver['id']} revoked"
    )
    (revoked,) = json.loads(ok(live.cli("waiver", "list", "--all", "-o", "json")))
    assert revoked["id"] == waiver["id"]
    assert revoked["revoked_at"] is not None
    with live.api() as api:
        assert api.get("/waivers").json()["items"] == []
        now = api.get("/verdicts", params={"digest": digest}).json()["verdicts"]
    assert [(v["environment"], v["state"]) for v in now] == [("dev", "fail")]
