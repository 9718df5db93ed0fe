"""The estate, evidence and audit pages through FastAPI's TestClient, on SQLite and PostgreSQL:
each page for a signed-in user and none without a session, the empty states, targets with health
and drift, agents with revocation (admins only, CSRF-checked), evidence packets with their
signatures checked, downloads that verify offline, the audit log and its chain, HTML escaped,
other tenants' ids unknown."""

from __future__ import annotations

import html
import io
import json
import re
import tarfile
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from stella.adapters.evidence_bundle import read_bundle
from stella.adapters.pki import generate_agent_key_and_csr
from stella.adapters.policy.rego import RegoPolicyEvaluator
from stella.adapters.signing.dsse import key_id_from_pem, verify_envelope
from stella.domain.deployments import DriftFinding
from stella.services import drift
from stella.services.evidence_verify import verify_bundle
from stella.web.pages import estate as estate_page
from stella.web.pages.evidence import signature_status
from tests.support.browser import login_fields
from tests.support.promotions import build_estate

PAGES = ["/targets", "/agents", "/evidence", "/audit"]
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
EVIL = "<b>x</b>"


@pytest.fixture
def web(client):
    """A browser-like client of its own (its own cookies), signed in with `token`."""
    opened: list[TestClient] = []

    def sign_in(token: str | None = None) -> TestClient:
        browser = TestClient(client.app, raise_server_exceptions=False, follow_redirects=False)
        opened.append(browser)
        if token is not None:
            response = browser.post("/login", data={"token": token, **login_fields(browser)})
            assert response.status_code == 303, response.text
        return browser

    yield sign_in
    for browser in opened:
        browser.close()


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def environments(api, *slugs: str) -> None:
    for order, slug in enumerate(slugs, 1):
        body = {"name": slug.title(), "slug": slug, "promotion_order": order}
        assert api.post("/environments", body).status_code == 201


def enrol_agent(api, client, env: str, name: str) -> str:
    token = api.post(
        "/agents/join-tokens", {"environment": env, "capabilities": ["docker", "compose"]}
    ).json()["token"]
    _key, csr = generate_agent_key_and_csr(name)
    enrolled = client.post(
        "/api/v1/agents/enroll",
        json={"join_token": token, "name": name, "csr": csr, "version": "9.9.9"},
    )
    assert enrolled.status_code == 201, enrolled.text
    return str(enrolled.json()["agent_id"])


def rows(page: str) -> str:
    """The table body of a page (filters and suggestions above it name actions too)."""
    return page.split("<tbody>", 1)[1] if "<tbody>" in page else ""


def created(response) -> None:
    assert response.status_code == 201, response.text


def public_key(api) -> bytes:
    return str(api.get("/keys").json()["keys"][0]["public_key_pem"]).encode()


def test_pages_need_a_session(web):
    anonymous = web()
    for path in [*PAGES, "/evidence/public-key.pem", f"/evidence/{uuid.uuid4()}"]:
        response = anonymous.get(path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith("/login?next="), path
    refused = anonymous.post(f"/agents/{uuid.uuid4()}/revoke", data={"csrf": "x"})
    assert refused.status_code == 303
    assert refused.headers["location"].startswith("/login")


def test_a_fresh_tenant_sees_how_to_begin(api, web):
    browser = web(api.issued.token)
    pages = {path: browser.get(path) for path in PAGES}
    for path, response in pages.items():
        assert response.status_code == 200, (path, response.text[:300])
        assert "text/html" in response.headers["content-type"]
        assert 'aria-current="page"' in response.text
    targets = pages["/targets"].text
    assert "No targets yet" in targets
    assert "stella target create" in targets
    assert "stella apply -f" in targets
    assert "stella agent token create --env dev" in targets
    agents = pages["/agents"].text
    assert "No agents yet" in agents
    assert "stella agent token create --env dev --capabilities docker,compose" in agents
    assert "stella agent run --server http://testserver --join-token" in agents
    assert "--data-dir" in agents
    evidence = pages["/evidence"].text
    assert "No packets yet" in evidence
    assert "stella evidence verify bundle.tar.gz --key stella-public.pem" in evidence
    assert 'href="/evidence/public-key.pem"' in evidence
    # the tenant's creation is itself audited
    assert "tenant.created" in rows(pages["/audit"].text)


def test_targets_show_environment_health_agent_and_escape_html(api, client, web):
    environments(api, "dev", "prod", "stage")
    agent_id = enrol_agent(api, client, "dev", "dev-agent")
    for body in (
        {"name": "web-1", "environment": "dev", "type": "docker_host", "labels": {"tier": EVIL}},
        {"name": "<b>bold", "environment": "prod", "type": "ssh_remote"},
        {"name": "pinned-1", "environment": "dev", "type": "compose_host", "agent_id": agent_id},
    ):
        assert api.post("/targets", body).status_code == 201
    assert api.patch("/targets/web-1", {"health": "healthy"}).status_code == 200

    browser = web(api.issued.token)
    page = browser.get("/targets").text
    assert "web-1" in page
    assert "pinned-1" in page
    assert '<span class="state s-healthy">healthy</span>' in page
    assert "never deployed" in page  # drift state of a target nothing was deployed to yet
    assert "agentless (SSH from the server)" in page
    assert "served by" in page
    assert "pinned" in page
    assert "dev-agent" in page
    # user-supplied values are text, never markup
    assert EVIL not in page
    assert "<b>bold" not in page
    assert html.escape(EVIL, quote=False) in page
    assert "&lt;b&gt;bold" in page
    # the environment filter
    dev_only = browser.get("/targets", params={"environment": "dev"}).text
    assert "web-1" in dev_only
    assert "bold" not in dev_only
    assert '<option value="dev" selected>' in dev_only
    unknown = browser.get("/targets", params={"environment": "nowhere"})
    assert unknown.status_code == 404
    assert "nowhere" in unknown.text
    # an environment without targets says so
    empty = browser.get("/targets", params={"environment": "stage"}).text
    assert "No targets in this environment" in empty


def test_targets_highlight_the_digests_that_drifted(api, web, monkeypatch):
    environments(api, "dev")
    created(api.post("/targets", {"name": "t-1", "environment": "dev", "type": "docker_host"}))
    expected, actual = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    original = drift.drift_of

    def drifted(uow_factory, target):
        found = original(uow_factory, target)
        finding = DriftFinding("changed_digest", "api", "api-1", expected, actual)
        return replace(
            found,
            state="drifted",
            release="api",
            version="1.2.3",
            findings=[finding],
            observed_at=datetime.now(UTC),
        )

    monkeypatch.setattr(estate_page.drift, "drift_of", drifted)
    page = web(api.issued.token).get("/targets").text
    assert '<span class="state s-drifted">drifted</span>' in page
    assert "1 drifted" in page
    assert "api 1.2.3" in page
    assert "changed digest" in page
    assert f'<mark><code class="digest" title="{actual}">' in page
    assert f'title="{expected}"' in page


def test_agents_list_and_revocation(api, client, web):
    environments(api, "dev")
    agent_id = enrol_agent(api, client, "dev", "edge-1")

    viewer = web(api.user_token("viewer"))
    seen = viewer.get("/agents").text
    assert "edge-1" in seen
    assert "9.9.9" in seen
    assert '<span class="state s-online">online</span>' in seen
    assert '<time datetime="' in seen
    assert "docker" in seen
    assert "compose" in seen
    assert "Revoke" not in seen
    # a viewer posting the form anyway (with a valid token) is refused
    denied = viewer.post(f"/agents/{agent_id}/revoke", data={"csrf": csrf_of(seen)})
    assert denied.status_code == 403
    assert api.get(f"/agents/{agent_id}").json()["state"] == "online"

    admin = web(api.issued.token)
    page = admin.get("/agents").text
    assert f'action="/agents/{agent_id}/revoke"' in page
    assert "data-confirm=" in page
    # without the CSRF token: the 403 page, nothing changed
    forged = admin.post(f"/agents/{agent_id}/revoke", data={})
    assert forged.status_code == 403
    assert "CSRF" in forged.text
    assert "<h1>" in forged.text
    assert api.get(f"/agents/{agent_id}").json()["state"] == "online"

    done = admin.post(f"/agents/{agent_id}/revoke", data={"csrf": csrf_of(page)})
    assert done.status_code == 303
    assert done.headers["location"] == "/agents"
    assert api.get(f"/agents/{agent_id}").json()["state"] == "revoked"
    after = admin.get(done.headers["location"]).text
    assert "edge-1 is revoked" in after
    assert '<span class="state s-revoked">revoked</span>' in after
    assert f'action="/agents/{agent_id}/revoke"' not in after
    actions = [e["action"] for e in api.get("/audit-events").json()["items"]]
    assert "agent.revoked" in actions


@pytest.fixture
def promoted(api, registry_url, repository):
    """dev/stage/prod with a release promoted to dev (approved at once: a decision packet)."""
    estate = build_estate(api, registry_url, repository)
    response = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["state"] not in ("rejected", "blocked"), response.json()
    packets = api.get("/evidence").json()["items"]
    assert packets, "no packet sealed"
    return estate, response.json(), packets[0]


def test_evidence_list_packet_page_and_download(api, web, promoted):
    estate, promotion, packet = promoted
    browser = web(api.issued.token)
    listing = browser.get("/evidence").text
    assert f'href="/evidence/{packet["id"]}"' in listing
    assert "promotion decision" in listing
    assert f'href="/releases/{estate.release_id}"' in listing
    # filters
    dev = browser.get("/evidence", params={"environment": "dev", "kind": "promotion_decision"})
    assert f'href="/evidence/{packet["id"]}"' in dev.text
    prod = browser.get("/evidence", params={"environment": "prod"})
    assert f'href="/evidence/{packet["id"]}"' not in prod.text
    assert "No packets match these filters" in prod.text
    by_release = browser.get("/evidence", params={"release": "api@1.0.0"}).text
    assert f'href="/evidence/{packet["id"]}"' in by_release
    bad = browser.get("/evidence", params={"from": "March"})
    assert bad.status_code == 200
    assert "is not a date" in bad.text

    page = browser.get(f"/evidence/{packet['id']}")
    assert page.status_code == 200
    text = page.text
    assert f"Signature valid (key {packet['keyid']})" in text
    assert packet["digest"] in text
    for heading in ("Who", "What", "Why", "How", "When"):
        assert f">{heading}</h2>" in text
    assert "<details" in text
    assert "Raw statement" in text
    assert f'href="/promotions/{promotion["id"]}"' in text
    assert f'href="/releases/{estate.release_id}"' in text
    assert f'href="/evidence/{packet["id"]}/download"' in text

    download = browser.get(f"/evidence/{packet['id']}/download")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("application/json")
    assert "attachment" in download.headers["content-disposition"]
    statement = verify_envelope(json.loads(download.content), public_key(api))
    assert statement["predicate"]["packet"]["id"] == packet["id"]

    pem = browser.get("/evidence/public-key.pem")
    assert pem.status_code == 200
    assert 'filename="stella-public.pem"' in pem.headers["content-disposition"]
    assert key_id_from_pem(pem.content) == packet["keyid"]


def test_a_tampered_packet_is_named_by_the_signature_check(api, promoted, container):
    _estate, _promotion, packet = promoted
    with container.read_uow() as uow:
        stored = uow.evidence.get(api.issued.user.tenant_id, packet["id"])
    assert stored is not None

    class Viewer:  # what signature_status reads of the signed-in user
        pass

    viewer = Viewer()
    viewer.container = container  # type: ignore[attr-defined]
    assert signature_status(viewer, stored)[0]  # type: ignore[arg-type]
    broken = {**stored.envelope, "signatures": [{"keyid": packet["keyid"], "sig": "AAAA"}]}
    valid, verdict = signature_status(viewer, replace(stored, envelope=broken))  # type: ignore[arg-type]
    assert not valid
    assert "Signature invalid" in verdict
    assert "altered" in verdict
    unknown = replace(stored, keyid="sha256:" + "0" * 64)
    assert "No public key" in signature_status(viewer, unknown)[1]  # type: ignore[arg-type]


def test_evidence_export_downloads_a_bundle_that_verifies(api, web, promoted, tmp_path):
    browser = web(api.issued.token)
    today = datetime.now(UTC).date().isoformat()
    response = browser.get("/evidence/export.tar.gz", params={"from": today, "to": today})
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"] == "application/gzip"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert ".tar.gz" in disposition
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        assert "manifest.dsse.json" in tar.getnames()
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(response.content)
    report = verify_bundle(
        read_bundle(path),
        [public_key(api)],
        key_id_from_pem,
        verify_envelope,
        RegoPolicyEvaluator(),
    )
    assert report.ok, report.problem
    assert report.decisions_replayed == 1

    scoped = browser.get(
        "/evidence/export.tar.gz", params={"from": today, "to": today, "environment": "dev"}
    )
    assert scoped.status_code == 200
    assert "-dev.tar.gz" in scoped.headers["content-disposition"]


def test_evidence_export_with_bad_dates_shows_the_form_again(api, web):
    browser = web(api.issued.token)
    for params, words in (
        ({"from": "March", "to": "2026-03-31"}, "is not a date"),
        ({"from": "2026-03-31", "to": "2026-03-01"}, "must not be before"),
        ({"from": "", "to": "2026-03-31"}, "is required"),
        ({"from": "2026-03-01", "to": "2026-03-31", "environment": "nowhere"}, "not found"),
    ):
        response = browser.get("/evidence/export.tar.gz", params=params)
        assert response.status_code == 422, params
        assert "text/html" in response.headers["content-type"]
        assert "Cannot export" in response.text, params
        assert words in response.text, params
        assert 'action="/evidence/export.tar.gz"' in response.text


def test_unknown_and_foreign_packets_are_not_found(api, other_tenant, web, promoted):
    _estate, _promotion, packet = promoted
    mine = web(api.issued.token)
    for path in (f"/evidence/{uuid.uuid4()}", f"/evidence/{uuid.uuid4()}/download"):
        response = mine.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text
        assert "<h1>" in response.text
    stranger = web(other_tenant.issued.token)
    for path in (f"/evidence/{packet['id']}", f"/evidence/{packet['id']}/download"):
        response = stranger.get(path)
        assert response.status_code == 404, path
        assert packet["digest"] not in response.text
    assert f'href="/evidence/{packet["id"]}"' not in stranger.get("/evidence").text


def test_audit_lists_filters_escapes_and_verifies_the_chain(api, web):
    environments(api, "dev")
    created(api.post("/targets", {"name": "<b>bold", "environment": "dev", "type": "docker_host"}))
    browser = web(api.issued.token)
    page = rows(browser.get("/audit").text)
    assert "target.created" in page
    assert "environment.created" in page
    assert page.index("target.created") < page.index("environment.created")  # newest first
    assert '<time datetime="' in page
    assert "<b>bold" not in page
    assert "&lt;b&gt;bold" in page
    assert "Audit chain intact" not in page  # verification runs only when asked

    only = rows(browser.get("/audit", params={"action": "target.created"}).text)
    assert "target.created" in only
    assert "environment.created" not in only
    by_type = rows(browser.get("/audit", params={"resource_type": "environment"}).text)
    assert "environment.created" in by_type
    assert "target.created" not in by_type
    nothing = browser.get("/audit", params={"action": "no.such"}).text
    assert "No audit events match these filters" in nothing

    checked = browser.get("/audit", params={"verify": "1"}).text
    assert "Audit chain intact:" in checked, checked[checked.find("Audit chain") :][:300]


def test_audit_links_promotions_and_paginates(api, web, promoted):
    _estate, promotion, _packet = promoted
    browser = web(api.issued.token)
    page = browser.get("/audit", params={"resource_type": "promotion"}).text
    assert f'href="/promotions/{promotion["id"]}"' in page
    for i in range(55):
        created(
            api.post("/environments", {"name": f"E{i}", "slug": f"e{i}", "promotion_order": 10 + i})
        )
    first = browser.get("/audit").text
    found = re.search(r'href="(/audit\?cursor=[^"]+)"', first)
    assert found, "no next page link"
    second = browser.get(html.unescape(found.group(1)))
    assert second.status_code == 200
    assert "<tbody>" in second.text
