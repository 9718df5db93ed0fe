"""Registry push notifications recorded as component versions (envelope posted by the test)."""

from __future__ import annotations

import pytest

from tests.conftest import REGISTRY

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def envelope(*events):
    return {"events": list(events)}


def push(repository, digest, tag="v1", media_type=MANIFEST, action="push"):
    return {
        "id": "e1",
        "timestamp": "2026-11-27T10:00:00.123456789Z",
        "action": action,
        "target": {
            "mediaType": media_type,
            "digest": digest,
            "repository": repository,
            "tag": tag,
            "url": f"http://{REGISTRY}/v2/{repository}/manifests/{digest}",
        },
        "request": {"host": REGISTRY},
    }


@pytest.fixture
def hook(api):
    api.post("/components", {"name": "api", "repository": f"{REGISTRY}/app/api"})
    created = api.post(
        "/integrations", {"type": "registry", "name": "local", "url": f"http://{REGISTRY}"}
    ).json()
    return created["id"], created["webhook_secret"]


def deliver(api, integration_id, secret, body):
    return api.http.post(
        f"/api/v1/webhooks/registry/{integration_id}",
        json=body,
        headers={"Authorization": f"Bearer {secret}"},
    )


def test_push_becomes_a_component_version_once(api, hook):
    integration_id, secret = hook
    body = envelope(push("app/api", DIGEST_A), push("app/api", DIGEST_B, tag=None))
    first = deliver(api, integration_id, secret, body)
    assert first.json() == {"recorded": 2, "duplicates": 0, "ignored": 0}
    redelivered = deliver(api, integration_id, secret, body)
    assert redelivered.json() == {"recorded": 0, "duplicates": 2, "ignored": 0}
    versions = api.get("/components/api/versions").json()["items"]
    assert {(v["digest"], v["tag"]) for v in versions} == {(DIGEST_A, "v1"), (DIGEST_B, None)}
    assert versions[0]["pushed_at"].startswith("2026-11-27T10:00:00")


def test_pulls_blobs_and_unknown_repositories_are_ignored(api, hook):
    integration_id, secret = hook
    body = envelope(
        push("app/api", DIGEST_A, action="pull"),
        push("app/api", DIGEST_A, media_type="application/octet-stream"),
        push("app/unknown", DIGEST_A),
    )
    assert deliver(api, integration_id, secret, body).json() == {
        "recorded": 0,
        "duplicates": 0,
        "ignored": 3,
    }
    assert api.get("/components/api/versions").json()["items"] == []


@pytest.mark.parametrize("secret", ["wrong", "", None])
def test_bad_secret_is_401_and_audited(api, hook, secret):
    integration_id, _ = hook
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    response = api.http.post(
        f"/api/v1/webhooks/registry/{integration_id}",
        json=envelope(push("app/api", DIGEST_A)),
        headers=headers,
    )
    assert response.status_code == 401
    assert api.get("/components/api/versions").json()["items"] == []
    assert api.get("/audit-events", params={"action": "webhook.denied"}).json()["items"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"events": "x"}',
        b'{"events": [{"target": {}}]}',
        b'{"events": [{"action": "push", "target": {"repository": "app/api", "digest": "md5:1"}}]}',
        b'{"events": [{"action": "push", "target": {"digest": "sha256:' + b"a" * 64 + b'"}}]}',
    ],
    ids=["not-json", "list", "events-not-list", "no-action", "bad-digest", "no-repository"],
)
def test_malformed_envelope_is_400_and_records_nothing(api, hook, body):
    integration_id, secret = hook
    response = api.http.post(
        f"/api/v1/webhooks/registry/{integration_id}",
        content=body,
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["title"] == "Malformed request"
    assert response.json()["errors"][0]["field"].startswith("events")
    assert api.get("/components/api/versions").json()["items"] == []


def test_unknown_integration_is_404(api):
    for ref in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = api.http.post(
            f"/api/v1/webhooks/registry/{ref}",
            json=envelope(),
            headers={"Authorization": "Bearer x"},
        )
        assert response.status_code == 404


def test_secret_by_reference_is_read_from_the_environment(api, monkeypatch):
    monkeypatch.setenv("STELLA_SECRET_TEST_HOOK", "s3cret-value")
    api.post("/components", {"name": "api", "repository": f"{REGISTRY}/app/api"})
    created = api.post(
        "/integrations",
        {
            "type": "registry",
            "name": "ref",
            "url": f"http://{REGISTRY}",
            "webhook_secret_ref": "env:STELLA_SECRET_TEST_HOOK",
        },
    ).json()
    assert created["webhook_secret"] is None
    ok = deliver(api, created["id"], "s3cret-value", envelope(push("app/api", DIGEST_A)))
    assert ok.json()["recorded"] == 1
    assert deliver(api, created["id"], "other", envelope()).status_code == 401
