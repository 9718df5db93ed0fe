"""A secret resolved by the server and by an agent appears nowhere: not in either process's log,
not in any API answer, not in any column of any table — even when a log line carries it."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import select

from stella.adapters.db.engine import make_engine
from stella.adapters.db.tables import metadata
from tests.conftest import free_port
from tests.support.deploy import (
    deploy_server,
    push_web_image,
    remove_containers,
    start_agent,
    wait_settled,
    web_component,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def secret_server(request, tmp_path, registry_url, monkeypatch):
    secret = f"m4sk-{uuid.uuid4().hex}"
    # the server and the agent both inherit os.environ
    monkeypatch.setenv("STELLA_SECRET_APP", secret)
    with deploy_server(request.param, tmp_path) as server:
        yield server, secret


def _database_text(url: str) -> list[str]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return [
                f"{table.name}: {value}"
                for table in metadata.sorted_tables
                for row in connection.execute(select(table))
                for value in row
            ]
    finally:
        engine.dispose()


def test_a_resolved_secret_appears_in_no_log_answer_or_table(secret_server, tmp_path):
    live, secret = secret_server
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    image = push_web_image(f"app/mask-{suffix}", "v1", f"mask {suffix}\n", tmp_path)
    component = web_component("web", image.repository)
    component["runtime"]["environment"]["APP_SECRET"] = "env:STELLA_SECRET_APP"
    # the container prints the value at start: container output is where a leak would show
    component["runtime"]["command"] = [
        "sh",
        "-c",
        "echo app_secret=$APP_SECRET; exec httpd -f -p 127.0.0.1:${PORT} -h /www",
    ]
    bodies: list[str] = []
    agent = None
    try:
        with live.api() as api:
            env = {
                "name": "Dev",
                "slug": "dev",
                "promotion_order": 1,
                "gates": ["previous_environment"],
            }
            assert api.post("/environments", json=env).status_code == 201
            assert api.post("/components", json=component).status_code == 201
            target = {
                "name": f"t-{suffix}",
                "environment": "dev",
                "type": "docker_host",
                "connection": {
                    "container_name_prefix": f"t-{suffix}-",
                    "environment": {"PORT": str(port)},
                },
            }
            created = api.post("/targets", json=target)
            assert created.status_code == 201, created.text
            # the server resolves the same secret (a registry webhook authenticated by it) ...
            integration = api.post(
                "/integrations",
                json={
                    "type": "registry",
                    "name": "reg",
                    "url": "http://127.0.0.1:5000",
                    "webhook_secret_ref": "env:STELLA_SECRET_APP",
                },
            )
            assert integration.status_code == 201, integration.text
            bodies.append(integration.text)
        hook = httpx.post(
            f"{live.url}/api/v1/webhooks/registry/{integration.json()['id']}",
            json={"events": []},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )
        assert hook.status_code == 200, hook.text
        bodies.append(hook.text)
        # ... and then logs it on purpose: the access log line carries the request path
        leak = httpx.get(f"{live.url}/api/v1/no-such-thing/{secret}", timeout=30)
        assert leak.status_code == 404
        bodies.append(leak.text)

        agent = start_agent(live, f"mask-{suffix}", "dev", tmp_path)
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        result = live.cli("promote", "web@1.0.0", "--to", "dev", "-o", "json", check=True)
        promotion = json.loads(result.stdout)["id"]
        settled = wait_settled(live, promotion)
        with live.api() as api:
            detail = api.get(f"/promotions/{promotion}").text
        assert settled == "deployed", detail

        with live.api() as api:
            jobs = api.get("/deployments", params={"promotion": promotion})
            bodies.append(jobs.text)
            for job in jobs.json()["items"]:
                shown = api.get(f"/deployments/{job['id']}")
                bodies.append(shown.text)
                for name in job["artifacts"]:
                    bodies.append(api.get(f"/deployments/{job['id']}/artifacts/{name}").text)
            bodies.append(api.get(f"/promotions/{promotion}").text)
            packets = api.get("/evidence")
            bodies.append(packets.text)
            for packet in packets.json()["items"]:
                bodies.append(api.get(f"/evidence/{packet['id']}").text)
            bodies.append(api.get("/audit-events", params={"limit": 200}).text)
            bodies.append(api.get("/integrations").text)
            bodies.append(api.get("/components/web").text)
    finally:
        if agent is not None:
            agent.stop()
        remove_containers(f"t-{suffix}-web")

    server_log = live.log.read_text()
    agent_log = agent.log.read_text()
    assert secret not in server_log
    assert secret not in agent_log
    assert "/no-such-thing/***" in server_log  # the line was written, masked
    assert any("env:STELLA_SECRET_APP" in body for body in bodies)  # references are shown
    leaking = [body[:300] for body in bodies if secret in body]
    assert not leaking
    rows = _database_text(live.database_url)
    assert any("env:STELLA_SECRET_APP" in value for value in rows)
    assert not [value[:300] for value in rows if secret in value]
