"""A user's API tokens: listed by prefix, issued for rotation, revoked one by one or all at once;
admins manage everybody's, users their own; a revoked token is refused at once, web session too."""

from __future__ import annotations

import uuid

from fastapi.testclient import TestClient

from stella.api.app import create_app
from tests.support.browser import login_fields


def _user(api, role: str = "releaser") -> tuple[str, str]:
    name = f"{role}-{uuid.uuid4().hex[:6]}"
    response = api.post("/users", {"name": name, "role": role})
    assert response.status_code == 201, response.text
    return name, response.json()["token"]


def test_rotate_a_token_issue_switch_over_revoke_the_old(api):
    name, first = _user(api)
    issued = api.post(f"/users/{name}/tokens")
    assert issued.status_code == 201, issued.text
    second = issued.json()["token"]
    assert second.startswith("stl_")
    assert second != first
    listed = api.get(f"/users/{name}/tokens").json()["items"]
    assert [t["prefix"] for t in listed] == [first[:12], second[:12]]
    assert all("token" not in t for t in listed)
    assert all(t["revoked_at"] is None for t in listed)

    old = next(t for t in listed if t["prefix"] == first[:12])
    revoked = api.post(f"/users/{name}/tokens/{old['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] is not None
    assert api.get("/environments", token=first).status_code == 401
    assert api.get("/environments", token=second).status_code == 200

    again = api.post(f"/users/{name}/tokens/{old['id']}/revoke")
    assert again.status_code == 409, again.text
    assert "already revoked" in again.json()["detail"]
    actions = [e["action"] for e in api.get("/audit-events").json()["items"]]
    assert "token.issued" in actions
    assert "token.revoked" in actions


def test_revoking_all_tokens_locks_the_user_out(api):
    name, first = _user(api, "approver")
    second = api.post(f"/users/{name}/tokens").json()["token"]
    response = api.post(f"/users/{name}/tokens/revoke")
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 2
    for token in (first, second):
        assert api.get("/environments", token=token).status_code == 401
    assert api.post(f"/users/{name}/tokens/revoke").json()["items"] == []


def test_users_manage_their_own_tokens_but_not_others(api):
    name, own = _user(api, "viewer")
    other, _ = _user(api, "viewer")
    assert api.get(f"/users/{name}/tokens", token=own).status_code == 200
    assert api.post(f"/users/{name}/tokens", token=own).status_code == 201
    for method, path in (
        ("GET", f"/users/{other}/tokens"),
        ("POST", f"/users/{other}/tokens"),
        ("POST", f"/users/{other}/tokens/revoke"),
    ):
        refused = api.request(method, path, token=own)
        assert refused.status_code == 403, (path, refused.text)
    # a leaked token can be revoked by its owner, with itself
    assert api.post(f"/users/{name}/tokens/revoke", token=own).status_code == 200
    assert api.get("/environments", token=own).status_code == 401


def test_unknown_users_and_tokens_are_not_found(api, other_tenant):
    name, _ = _user(api)
    for path in (
        "/users/nobody/tokens",
        f"/users/{name}/tokens/{uuid.uuid4()}/revoke",
        f"/users/{name}/tokens/not-a-uuid/revoke",
    ):
        method = "GET" if path.endswith("/tokens") else "POST"
        response = api.request(method, path)
        assert response.status_code == 404, (path, response.text)
    # another tenant's admin cannot see or touch this tenant's user
    assert other_tenant.get(f"/users/{name}/tokens").status_code == 404
    assert other_tenant.post(f"/users/{name}/tokens/revoke").status_code == 404


def test_revoking_the_token_ends_its_web_session(api, container):
    name, token = _user(api, "viewer")
    with TestClient(create_app(container), follow_redirects=False) as browser:
        signed_in = browser.post("/login", data={"token": token, **login_fields(browser)})
        assert signed_in.status_code == 303, signed_in.text
        assert browser.get("/releases").status_code == 200
        assert api.post(f"/users/{name}/tokens/revoke").status_code == 200
        ended = browser.get("/releases")
        assert ended.status_code == 303
        assert ended.headers["location"].startswith("/login")


def test_a_user_is_named_by_name_or_id(api):
    name, _ = _user(api)
    user_id = next(u["id"] for u in api.get("/users").json()["items"] if u["name"] == name)
    by_id = api.get(f"/users/{user_id}/tokens")
    assert by_id.status_code == 200, by_id.text
    assert by_id.json() == api.get(f"/users/{name}/tokens").json()
