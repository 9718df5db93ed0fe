"""`Idempotency-Key` on POST, on SQLite and PostgreSQL: a retry is answered with what the first
attempt made (its status, `Idempotent-Replayed: true`) and changes nothing; the same key with
another request, or a malformed key, is refused; keys belong to their caller; old keys are
purged."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from stella.services.idempotency import RETENTION, purge_expired_keys
from tests.support.promotions import build_estate


def _post(api, path: str, body: dict, key: str, token: str | None = None):
    return api.post(path, body, token=token, headers={"Idempotency-Key": key})


def _promotions(api, release_id: str) -> list[dict]:
    items = api.get("/promotions", params={"limit": 500}).json()["items"]
    return [p for p in items if p["release_id"] == release_id]


def test_a_retried_promotion_request_makes_one_promotion(api, registry_url, repository):
    estate = build_estate(api, registry_url, repository)
    body = {"release_id": estate.release_id, "target_environment": "dev"}
    key = str(uuid.uuid4())
    first = _post(api, "/promotions", body, key)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _post(api, "/promotions", body, key)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["state"] == first.json()["state"]
    assert len(_promotions(api, estate.release_id)) == 1
    # without a key the same request is a new one (refused: the promotion exists)
    assert api.post("/promotions", body).status_code == 409


def test_a_retried_approval_is_answered_not_applied_twice(api, registry_url, repository):
    estate = build_estate(api, registry_url, repository)
    for environment in ("dev", "stage"):
        promotion = api.post(
            "/promotions", {"release_id": estate.release_id, "target_environment": environment}
        ).json()
    assert promotion["state"] == "awaiting_approval", promotion
    approver = api.user_token("approver")
    key = f"approve-{uuid.uuid4()}"
    path = f"/promotions/{promotion['id']}/approve"
    first = _post(api, path, {"comment": "ship it"}, key, token=approver)
    assert first.status_code == 200, first.text
    again = _post(api, path, {"comment": "ship it"}, key, token=approver)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["state"] == first.json()["state"] == "approved"
    events = api.get(f"/promotions/{promotion['id']}/events").json()["items"]
    assert [e["to"] for e in events].count("approved") == 1
    # the same approval without the key is refused: it was already given
    assert api.post(path, {"comment": "ship it"}, token=approver).status_code == 409


def test_the_same_key_with_another_request_is_refused(api, registry_url, repository):
    estate = build_estate(api, registry_url, repository)
    key = str(uuid.uuid4())
    body = {"release_id": estate.release_id, "target_environment": "dev"}
    assert _post(api, "/promotions", body, key).status_code == 201
    other = _post(api, "/promotions", body | {"target_environment": "stage"}, key)
    assert other.status_code == 422, other.text
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert "different request" in other.json()["detail"]
    assert len(_promotions(api, estate.release_id)) == 1


def test_malformed_keys_are_refused_and_nothing_is_made(api):
    body = {"name": "Dev", "slug": "dev", "promotion_order": 1}
    for key in (b"", b"x" * 256, b"with space", "naïve".encode()):
        response = api.post("/environments", body, headers={"Idempotency-Key": key})
        assert response.status_code == 422, (key, response.text)
        assert response.json()["errors"][0]["field"] == "Idempotency-Key"
    assert api.get("/environments").json()["items"] == []


def test_keys_belong_to_their_caller(api, other_tenant):
    key = "shared-key-1"
    mine = _post(api, "/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1}, key)
    assert mine.status_code == 201, mine.text
    # another user of the same tenant: the key is theirs to use, nothing is replayed
    releaser = api.user_token("admin")
    theirs = _post(
        api, "/environments", {"name": "QA", "slug": "qa", "promotion_order": 2}, key, releaser
    )
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    # another tenant's admin with the same key and body makes their own environment
    foreign = _post(
        other_tenant, "/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1}, key
    )
    assert foreign.status_code == 201, foreign.text
    assert foreign.json()["id"] != mine.json()["id"]


def test_concurrent_requests_with_one_key_make_one_change(api):
    body = {"name": "Race", "slug": "race", "promotion_order": 7}
    key = str(uuid.uuid4())
    results: list = []

    def send() -> None:
        results.append(_post(api, "/environments", body, key))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    # each is answered with the one environment made, or refused while the first is in flight
    assert {r.status_code for r in results} <= {201, 409}, [r.text for r in results]
    made = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(made) == 1, [r.text for r in results]
    assert [e["slug"] for e in api.get("/environments").json()["items"]] == ["race"]
    retried = _post(api, "/environments", body, key)
    assert retried.status_code == 201
    assert retried.json()["id"] in made


def test_keys_are_forgotten_after_the_retention(api, container):
    key = str(uuid.uuid4())
    body = {"name": "Dev", "slug": "dev", "promotion_order": 1}
    assert _post(api, "/environments", body, key).status_code == 201
    assert _post(api, "/environments", body, key).headers["idempotent-replayed"] == "true"
    later = container.clock() + RETENTION + timedelta(minutes=1)
    purged = purge_expired_keys(container.uow, lambda: later, limit=100_000)
    assert purged >= 1
    # forgotten: the request runs again, and is refused because the environment exists
    assert _post(api, "/environments", body, key).status_code == 409
