"""Targets, components and integrations through the API."""

from __future__ import annotations

import pytest


@pytest.fixture
def dev(api):
    return api.post("/environments", {"name": "Dev", "slug": "dev", "promotion_order": 1}).json()


def test_target_is_created_in_an_environment_by_slug(api, dev):
    response = api.post(
        "/targets",
        {
            "name": "web-1",
            "environment": "dev",
            "type": "ssh_remote",
            "labels": {"role": "api"},
            "connection": {
                "host": "127.0.0.1",
                "port": 2222,
                "user": "root",
                "private_key": "file:/etc/stella/id_ed25519",
            },
        },
    )
    assert response.status_code == 201, response.text
    target = response.json()
    assert target["environment_id"] == dev["id"]
    assert (target["state"], target["health"]) == ("active", "unknown")
    assert api.get("/targets/web-1").json() == target
    assert [
        t["name"] for t in api.get("/targets", params={"environment": "dev"}).json()["items"]
    ] == ["web-1"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {
                "name": "t",
                "environment": "dev",
                "type": "ssh_remote",
                "connection": {"password": "hunter2"},
            },
            "connection.password",
        ),
        (
            {
                "name": "t",
                "environment": "dev",
                "type": "ssh_remote",
                "connection": {"auth": {"token": "plain"}},
            },
            "connection.auth.token",
        ),
        ({"name": "t", "environment": "dev", "type": "kubernetes"}, "type"),
        ({"name": "t", "environment": "nowhere", "type": "docker_host"}, "environment"),
        (
            {"name": "t", "environment": "dev", "type": "docker_host", "agent_id": "not-a-uuid"},
            "agent_id",
        ),
        (
            {"name": "t", "environment": "dev", "type": "docker_host", "labels": {"bad key!": "x"}},
            "labels.bad key!",
        ),
    ],
    ids=[
        "literal-password",
        "nested-literal-token",
        "unknown-type",
        "unknown-environment",
        "bad-agent-id",
        "bad-label",
    ],
)
def test_invalid_target_is_422(api, dev, body, field):
    response = api.post("/targets", body)
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]
    assert "hunter2" not in response.text
    assert api.get("/targets").json()["items"] == []


def test_target_patch_moves_environment_and_reports_health(api, dev):
    stage = api.post(
        "/environments", {"name": "Stage", "slug": "stage", "promotion_order": 2}
    ).json()
    api.post("/targets", {"name": "web-1", "environment": "dev", "type": "docker_host"})
    patched = api.patch("/targets/web-1", {"environment": "stage", "health": "healthy"}).json()
    assert (patched["environment_id"], patched["health"]) == (stage["id"], "healthy")
    assert api.delete("/targets/web-1").status_code == 204
    assert api.get("/targets/web-1").status_code == 404


def test_duplicate_target_name_is_409(api, dev):
    api.post("/targets", {"name": "web-1", "environment": "dev", "type": "docker_host"})
    again = api.post("/targets", {"name": "web-1", "environment": "dev", "type": "docker_host"})
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("repository", "fragment"),
    [
        ("app/api", "registry host"),
        ("127.0.0.1:5000/App/API", "not a valid repository path"),
        ("127.0.0.1:5000/app/api:v1", "not a valid repository path"),
        ("docker.io", "registry host"),
    ],
)
def test_component_repository_must_be_fully_qualified(api, repository, fragment):
    response = api.post("/components", {"name": "api", "repository": repository})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "repository"
    assert fragment in response.json()["errors"][0]["message"]


def test_component_runtime_is_a_compose_subset(api):
    ok = api.post(
        "/components",
        {
            "name": "api",
            "repository": "127.0.0.1:5000/app/api",
            "runtime": {
                "command": ["httpd", "-f"],
                "environment": {"TOKEN": "env:API_TOKEN", "MODE": "prod"},
                "network_mode": "host",
                "healthcheck": {"http": "http://127.0.0.1:8081/", "interval": "1s"},
            },
        },
    )
    assert ok.status_code == 201
    bad = api.post(
        "/components",
        {
            "name": "w",
            "repository": "127.0.0.1:5000/app/w",
            "runtime": {"privileged": True, "environment": {"K": "env:bad name"}},
        },
    )
    assert [e["field"] for e in bad.json()["errors"]] == [
        "runtime.privileged",
        "runtime.environment.K",
    ]


def test_component_patch_and_duplicate(api):
    api.post("/components", {"name": "api", "repository": "127.0.0.1:5000/app/api"})
    assert (
        api.post("/components", {"name": "api", "repository": "127.0.0.1:5000/app/x"}).status_code
        == 409
    )
    patched = api.patch("/components/api", {"repository": "127.0.0.1:5000/app/api2"})
    assert patched.json()["repository"] == "127.0.0.1:5000/app/api2"


def test_integration_generates_a_webhook_secret_shown_once(api):
    created = api.post(
        "/integrations", {"type": "registry", "name": "local", "url": "http://127.0.0.1:5000"}
    )
    assert created.status_code == 201
    body = created.json()
    assert len(body["webhook_secret"]) > 30
    assert body["webhook_url"] == f"/api/v1/webhooks/registry/{body['id']}"
    assert api.get("/integrations/local").json()["webhook_secret"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "registry", "name": "r", "url": "ftp://127.0.0.1"}, "url"),
        ({"type": "registry", "name": "r", "url": "http://user:pw@127.0.0.1:5000"}, "url"),
        (
            {
                "type": "registry",
                "name": "r",
                "url": "http://127.0.0.1:5000",
                "credentials_ref": "user:pass",
            },
            "credentials_ref",
        ),
        ({"type": "scm", "name": "r", "url": "http://127.0.0.1:5000"}, "type"),
    ],
    ids=["scheme", "userinfo", "literal-credentials", "unknown-type"],
)
def test_invalid_integration_is_422(api, body, field):
    response = api.post("/integrations", body)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]
    assert "pass" not in response.json()["detail"] or field != "credentials_ref"


def test_integration_connection_test_reaches_the_registry(api, registry_url):
    api.post("/integrations", {"type": "registry", "name": "local", "url": registry_url})
    assert api.post("/integrations/local/test").json() == {"status": "ok", "host": "127.0.0.1:5000"}
    api.post("/integrations", {"type": "registry", "name": "dead", "url": "http://127.0.0.1:9"})
    dead = api.post("/integrations/dead/test")
    assert dead.status_code == 502
    assert "127.0.0.1:9" in dead.json()["detail"]


@pytest.mark.parametrize(
    ("reference", "fragment"),
    [
        ("env:STELLA_DATABASE_URL", "names Stella's own configuration"),
        ("file:{home}/keys/decision-ed25519.pem", "outside the secret folders"),
        ("file:/etc/passwd", "outside the secret folders"),
    ],
    ids=["stella-config", "signing-key", "system-file"],
)
def test_secret_references_cannot_reach_stellas_own_secrets(api, container, reference, fragment):
    """A tenant admin must not be able to send the signing key or the database URL to a host of
    their choosing as registry credentials."""
    reference = reference.format(home=container.settings.home.resolve())
    api.post(
        "/integrations",
        {
            "type": "registry",
            "name": "exfil",
            "url": "http://127.0.0.1:9",
            "credentials_ref": reference,
        },
    )
    response = api.post("/integrations/exfil/test")
    assert response.status_code == 502
    assert fragment in response.json()["detail"]
    assert "PRIVATE KEY" not in response.text


def test_file_secret_references_read_the_first_line_inside_the_secret_folder(monkeypatch, tmp_path):
    from stella.adapters.secrets import resolve_secret

    (tmp_path / "registry").write_text("user:s3cret\nsecond line\n")
    monkeypatch.setenv("STELLA_SECRET_DIRS", str(tmp_path))
    assert resolve_secret(f"file:{tmp_path}/registry") == "user:s3cret"
    assert resolve_secret(f"file:{tmp_path}/../{tmp_path.name}/registry") == "user:s3cret"


def test_a_patch_setting_a_required_field_to_null_is_422_naming_it(api, dev):
    """Found by the fuzz run: a null merged into the resource's spec was a 500."""
    api.post("/targets", {"name": "web-1", "environment": "dev", "type": "ssh_remote"})
    api.post("/components", {"name": "api", "repository": "127.0.0.1:5000/app/api"})
    api.post("/integrations", {"type": "registry", "name": "local", "url": "http://127.0.0.1:5000"})
    for path, body, fields in (
        ("/targets/web-1", {"environment": None, "state": None}, ["environment", "state"]),
        ("/components/api", {"repository": None, "runtime": None}, ["repository", "runtime"]),
        ("/integrations/local", {"config": None}, ["config"]),
    ):
        response = api.patch(path, body)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"] == [
            {"field": field, "message": "may not be null"} for field in fields
        ]
    assert api.get("/targets/web-1").json()["state"] == "active"
    assert api.get("/components/api").json()["repository"] == "127.0.0.1:5000/app/api"
