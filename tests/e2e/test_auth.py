"""Tokens, roles and tenant isolation."""

from __future__ import annotations

import pytest


def test_missing_and_bad_tokens_are_401(client):
    missing = client.get("/api/v1/environments")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["title"] == "Unauthenticated"
    bad = client.get("/api/v1/environments", headers={"Authorization": "Bearer stl_nope"})
    assert bad.status_code == 401
    basic = client.get("/api/v1/environments", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


def test_admin_creates_users_whose_token_is_shown_once(api):
    response = api.post("/users", {"name": "ci-bot", "role": "releaser"})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "name", "role", "token", "created_at"}
    assert api.get("/environments", token=body["token"]).status_code == 200
    listed = api.get("/users").json()["items"]
    assert {u["name"] for u in listed} == {"admin", "ci-bot"}
    assert all("token" not in u for u in listed)
    assert api.post("/users", {"name": "ci-bot", "role": "viewer"}).status_code == 409


@pytest.mark.parametrize(
    ("role", "path", "body"),
    [
        ("viewer", "/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1}),
        ("releaser", "/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1}),
        ("viewer", "/components", {"name": "api", "repository": "127.0.0.1:5000/app/api"}),
        ("approver", "/users", {"name": "x", "role": "admin"}),
        ("releaser", "/apply", {"environments": []}),
    ],
)
def test_roles_without_permission_get_403_and_the_denial_is_audited(api, role, path, body):
    token = api.user_token(role)
    response = api.post(path, body, token=token)
    assert response.status_code == 403
    assert f"role '{role}'" in response.json()["detail"]
    denied = api.get("/audit-events", params={"action": "access.denied"}).json()["items"]
    assert denied[0]["actor_name"].startswith(role)


def test_releaser_may_create_components_and_viewer_may_read(api):
    releaser = api.user_token("releaser")
    assert (
        api.post(
            "/components", {"name": "api", "repository": "127.0.0.1:5000/app/api"}, token=releaser
        ).status_code
        == 201
    )
    viewer = api.user_token("viewer")
    assert api.get("/components/api", token=viewer).status_code == 200


def test_unknown_role_is_422(api):
    response = api.post("/users", {"name": "x", "role": "root"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "role"


def test_other_tenants_resources_are_404_not_403(api, other_tenant):
    api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1})
    env = api.get("/environments/dev").json()
    api.post("/components", {"name": "api", "repository": "127.0.0.1:5000/app/api"})
    api.post("/integrations", {"type": "registry", "name": "reg", "url": "http://127.0.0.1:5000"})
    for path in (
        f"/environments/{env['id']}",
        "/environments/dev",
        "/components/api",
        "/integrations/reg",
        "/components/api/versions",
    ):
        assert other_tenant.get(path).status_code == 404, path
    assert other_tenant.patch(f"/environments/{env['id']}", {"state": "frozen"}).status_code == 404
    assert other_tenant.delete(f"/environments/{env['id']}").status_code == 404
    assert other_tenant.get("/environments").json()["items"] == []
    assert other_tenant.get("/audit-events").json()["items"][0]["action"] == "tenant.created"
    assert api.get("/environments/dev").json()["state"] == "active"


def test_same_slug_may_exist_in_two_tenants(api, other_tenant):
    body = {"name": "Dev", "slug": "dev", "promotion_order": 1}
    assert api.post("/environments", body).status_code == 201
    assert other_tenant.post("/environments", body).status_code == 201


def test_a_flood_of_failed_authentications_is_slowed_down(container):
    """Per client: after N failures in a minute, 429 with Retry-After, even for a good token."""
    from fastapi.testclient import TestClient

    from stella.api.app import create_app
    from stella.bootstrap import Container

    limited = Container(
        **{
            **container.__dict__,
            "settings": container.settings.model_copy(update={"auth_failures_per_minute": 3}),
        }
    )
    from tests.conftest import new_tenant

    good = new_tenant(container).token
    with TestClient(create_app(limited), raise_server_exceptions=False) as client:
        for _ in range(3):
            assert (
                client.get(
                    "/api/v1/environments", headers={"Authorization": "Bearer stl_wrong"}
                ).status_code
                == 401
            )
        blocked = client.get("/api/v1/environments", headers={"Authorization": f"Bearer {good}"})
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["retry-after"]) <= 61
        assert blocked.json()["title"] == "Too many requests"


def test_responses_carry_security_headers(api):
    response = api.get("/environments")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"
