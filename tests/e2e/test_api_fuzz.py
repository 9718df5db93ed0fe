"""Schemathesis fuzzes every operation of /openapi.json against a real server: no 5xx, and every
response keeps to the document (status codes, content types, headers, bodies, `Allow` on 405),
invalid input is refused, and a deleted resource is gone.

Every check runs except `positive_data_acceptance` (see tests/fixtures/schemathesis.toml for why).

Before schemathesis starts, a real estate is made through the API (environments, targets, a
component, an integration, a release, promotions, a workflow and its run, a policy, an agent, a
deployment job, evidence, a scan, an attachment, an advisory, a waiver, a user and its token).
Their ids go to `st` as STELLA_FUZZ_* environment variables, which schemathesis.toml puts in the
path of each operation: the code behind an id is fuzzed, not only its 404. Operations that end
or delete a resource get one of their own, so the others keep theirs for the whole run.

One schemathesis worker: with several, its coverage phase occasionally fails inside the tool
itself (hypothesis lambda introspection across threads), which says nothing about Stella.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from stella.adapters.pki import generate_agent_key_and_csr
from stella.bootstrap import build_container
from stella.config import Settings
from tests.conftest import REGISTRY_URL, create_database, drop_database, free_port
from tests.support.jobs import create_jobs
from tests.support.live import STELLA, LiveServer, start_server
from tests.support.promotions import build_estate

if TYPE_CHECKING:  # not imported at run time: pytest would try to collect a Test* class
    from tests.conftest import TestDatabase

SCHEMATHESIS = str(Path(sys.executable).parent / "st")
CONFIG = Path(__file__).parents[1] / "fixtures" / "schemathesis.toml"
ADVISORY = {
    "id": "GHSA-fuzz-0000-0000",
    "aliases": ["CVE-2099-0002"],
    "modified": "2026-01-01T00:00:00Z",
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "requests"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
        }
    ],
}


class LiveApi:
    """The calls of tests.conftest.TenantClient (what build_estate uses), over HTTP to a live
    server as its admin."""

    def __init__(self, server: LiveServer) -> None:
        self.url = server.url
        self.http = httpx.Client(
            base_url=server.url + "/api/v1",
            timeout=30,
            headers={"Authorization": f"Bearer {server.token}"},
        )

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def created(self, path: str, body: dict, **kwargs) -> dict:
        response = self.post(path, body, **kwargs)
        assert response.status_code in (200, 201), (path, response.status_code, response.text)
        return dict(response.json())

    def user_token(self, role: str) -> str:
        return str(
            self.created("/users", {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})[
                "token"
            ]
        )


def _raw_post(api: LiveApi, path: str, document: dict, **params: str) -> dict:
    response = api.request(
        "POST",
        path,
        params=params,
        content=json.dumps(document),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (200, 201), (path, response.status_code, response.text)
    return dict(response.json())


def _agent(api: LiveApi) -> str:
    token = api.created("/agents/join-tokens", {"environment": "prod", "capabilities": ["docker"]})
    _key, csr = generate_agent_key_and_csr("fuzz-agent")
    enrolled = httpx.post(
        api.url + "/api/v1/agents/enroll",
        json={"join_token": token["token"], "name": "fuzz-agent", "csr": csr},
        timeout=30,
    )
    assert enrolled.status_code == 201, enrolled.text
    return str(enrolled.json()["agent_id"])


def _deployment_job(database: TestDatabase, home: Path, target_ref: str, release_id: str) -> str:
    """A real job row, made the way the deploy step makes them (no worker runs here)."""
    container = build_container(Settings(home=home, database_url=database.url), database.engine)
    return str(create_jobs(container, target_ref, release_id)[0].id)


def seed(server: LiveServer, database: TestDatabase, tmp_path: Path) -> dict[str, str]:
    """One of every resource, made through the API; returns the STELLA_FUZZ_* variables."""
    api = LiveApi(server)
    try:
        return _seed(api, server, database, tmp_path)
    finally:
        api.http.close()


def _seed(
    api: LiveApi, server: LiveServer, database: TestDatabase, tmp_path: Path
) -> dict[str, str]:
    repository = f"app/fuzz-{uuid.uuid4().hex[:10]}"
    estate = build_estate(api, REGISTRY_URL, repository)
    environment = api.get("/environments/stage").json()
    doomed_environment = api.created(
        "/environments", {"name": "Doomed", "slug": "doomed", "promotion_order": 9}
    )
    target = api.get("/targets/prod-1").json()
    doomed_target = api.created(
        "/targets", {"name": "doomed-1", "environment": "dev", "type": "ssh_remote"}
    )
    integration = api.created(
        "/integrations", {"type": "registry", "name": "fuzz", "url": REGISTRY_URL}
    )
    # a decided promotion, and open ones (gates blocked, approvals awaited): one each for the
    # operations that end one, one for all the others (one open promotion per release and
    # environment)
    second = api.created(
        "/releases", {"name": "api", "version": "1.0.1", "components": {"api": "v1"}}
    )
    promotions = {
        name: api.created("/promotions", {"release_id": release, "target_environment": env})["id"]
        for name, release, env in (
            ("decided", estate.release_id, "dev"),  # no approvals: decided (and sealed)
            ("main", estate.release_id, "stage"),
            ("cancel", estate.release_id, "prod"),
            ("reject", second["id"], "stage"),
        )
    }
    api.created("/workflows", {"name": "fuzz", "steps": [{"id": "ask", "type": "approval"}]})
    runs = {
        name: api.created("/workflow-runs", {"workflow": "fuzz"})["id"]
        for name in ("main", "cancel", "ended")
    }
    # the event stream of a running run lasts until it ends: the stream is fuzzed on an ended one
    api.created(f"/workflow-runs/{runs['ended']}/cancel", {})
    ended = api.get(f"/workflow-runs/{runs['ended']}").json()
    assert ended["state"] == "cancelled", ended
    user = api.created("/users", {"name": "fuzz-user", "role": "viewer"})
    token_id = api.get("/users/fuzz-user/tokens").json()["items"][0]["id"]
    # revoking all of a user's tokens would leave nothing to revoke one by one
    all_revoked = api.created("/users", {"name": "fuzz-user-2", "role": "viewer"})
    scan = api.created("/scans", {"digest": estate.digest, "findings": []})
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}
    attachment = _raw_post(api, "/sboms", sbom, digest=estate.digest)
    assert _raw_post(api, "/advisories/import", ADVISORY)["added"] == 1
    waiver = api.created(
        "/waivers",
        {"advisory": "CVE-2099-0002", "package": "requests", "reason": "fuzz", "ttl": "1d"},
    )
    evidence = api.get("/evidence").json()["items"][0]["id"]
    job = _deployment_job(database, tmp_path / "seed-home", target["id"], estate.release_id)
    return {
        "STELLA_FUZZ_ENVIRONMENT": environment["id"],
        "STELLA_FUZZ_ENVIRONMENT_DOOMED": doomed_environment["id"],
        "STELLA_FUZZ_TARGET": target["id"],
        "STELLA_FUZZ_TARGET_DOOMED": doomed_target["id"],
        "STELLA_FUZZ_COMPONENT": "api",
        "STELLA_FUZZ_INTEGRATION": integration["id"],
        "STELLA_FUZZ_WEBHOOK_SECRET": integration["webhook_secret"],
        "STELLA_FUZZ_RELEASE": estate.release_id,
        "STELLA_FUZZ_WORKFLOW": "fuzz",
        "STELLA_FUZZ_RUN": runs["main"],
        "STELLA_FUZZ_RUN_CANCEL": runs["cancel"],
        "STELLA_FUZZ_RUN_ENDED": runs["ended"],
        "STELLA_FUZZ_STEP": "ask",
        "STELLA_FUZZ_PROMOTION": promotions["main"],
        "STELLA_FUZZ_PROMOTION_DECIDED": promotions["decided"],
        "STELLA_FUZZ_PROMOTION_CANCEL": promotions["cancel"],
        "STELLA_FUZZ_PROMOTION_REJECT": promotions["reject"],
        "STELLA_FUZZ_POLICY": "prod-rules",
        "STELLA_FUZZ_AGENT": _agent(api),
        "STELLA_FUZZ_DEPLOYMENT": job,
        "STELLA_FUZZ_ARTIFACT": "task.json",
        "STELLA_FUZZ_EVIDENCE": evidence,
        "STELLA_FUZZ_USER": user["id"],
        "STELLA_FUZZ_TOKEN": token_id,
        "STELLA_FUZZ_USER_ALL_REVOKED": all_revoked["id"],
        "STELLA_FUZZ_SCAN": scan["id"],
        "STELLA_FUZZ_ATTACHMENT": attachment["id"],
        "STELLA_FUZZ_ADVISORY": ADVISORY["id"],
        "STELLA_FUZZ_WAIVER": waiver["id"],
    }


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_every_operation_keeps_to_its_document_and_never_fails(tmp_path, kind):
    database = create_database(kind, tmp_path, migrate=False)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp_path / "home", free_port(), database.url
    )
    try:
        ids = seed(server, database, tmp_path)
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{server.url}/openapi.json",
                "-H",
                f"Authorization: Bearer {server.token}",
                "--exclude-checks",
                "positive_data_acceptance",
                "--max-examples",
                "8",
                "--seed",
                "20261127",
                "--workers",
                "1",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,  # schemathesis keeps its state in the working directory
            env=os.environ | ids,
            timeout=600,
            check=False,
        )
    finally:
        server.stop()
        drop_database(database)
    failures = result.stdout[result.stdout.find("FAILURES") :]
    assert result.returncode == 0, failures[:12000] + result.stderr[-3000:]
    assert "generated" in result.stdout
    selected = re.search(r"Selected: (\d+)/(\d+)", result.stdout)
    tested = re.search(r"Tested: (\d+)", result.stdout)
    assert selected, result.stdout[-3000:]
    assert tested, result.stdout[-3000:]
    assert int(tested[1]) == int(selected[1]) == int(selected[2]) > 90, "operations left untested"
    # every operation with an id in its path reaches the code behind it: none only answers 404
    only_404 = _missing_test_data(result.stdout)
    assert not [label for label in only_404 if "{" in label], only_404


def _missing_test_data(output: str) -> list[str]:
    """The operations schemathesis' "Missing test data" warning lists (they only answered 404):
    its groups of `  - METHOD /path` lines, up to the next warning."""
    start = output.find("Missing test data:", output.find("WARNINGS"))
    if start == -1:
        return []
    labels = []
    for line in output[start:].splitlines()[1:]:
        if line.startswith("  - "):
            labels.append(line.removeprefix("  - ").strip())
        elif line.strip() and not line.startswith(("💡", "No links")):
            break  # the next warning
    return labels
