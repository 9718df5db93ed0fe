"""A release walks dev → stage → prod through real agents on a real Docker engine: pinned by
digest, stickered, drift detected after a hand change, rolled back through the gates."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.conftest import free_port
from tests.support.deploy import (
    deploy_server,
    docker_cli,
    docker_client,
    http_text,
    push_web_image,
    remove_containers,
    start_agent,
    wait_for,
    wait_settled,
    web_component,
)
from tests.support.live import STELLA


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path, registry_url):
    with deploy_server(request.param, tmp_path) as server:
        yield server


def _estate(live, tmp_path, suffix: str, ports: dict[str, int]) -> dict:
    stickers = {env: tmp_path / f"sticker-{env}.json" for env in ports}
    environments = [
        {"name": "Dev", "slug": "dev", "promotion_order": 1, "gates": ["previous_environment"]},
        {
            "name": "Stage",
            "slug": "stage",
            "promotion_order": 2,
            "gates": ["previous_environment", "health_check"],
        },
        {
            "name": "Prod",
            "slug": "prod",
            "promotion_order": 3,
            "is_production": True,
            "gates": ["previous_environment", "approval", "health_check"],
            "approval_policy": {"required_approvals": 1, "separation_of_duties": True},
        },
    ]
    targets = [
        {
            "name": f"{env}-{suffix}",
            "environment": env,
            # stage runs on Compose (docker-compose v1 here), dev and prod on plain Docker
            "type": "compose_host" if env == "stage" else "docker_host",
            "connection": {
                "container_name_prefix": f"{env}-{suffix}-",
                "environment": {"PORT": str(port)},
                "sticker_path": str(stickers[env]),
            },
        }
        for env, port in ports.items()
    ]
    return {"environments": environments, "targets": targets, "stickers": stickers}


def test_release_walks_to_prod_drifts_and_rolls_back(live, tmp_path):
    suffix = uuid.uuid4().hex[:6]
    ports = {env: free_port() for env in ("dev", "stage", "prod")}
    containers = [f"{env}-{suffix}-web" for env in ports]
    repository = f"app/web-{suffix}"
    v1 = push_web_image(repository, "v1", f"web v1 {suffix}\n", tmp_path)
    v2 = push_web_image(repository, "v2", f"web v2 {suffix}\n", tmp_path)
    estate = _estate(live, tmp_path, suffix, ports)
    stage_project = f"stella-stage-{suffix}"
    agents = []
    try:
        with live.api() as api:
            for env in estate["environments"]:
                assert api.post("/environments", json=env).status_code == 201
            assert (
                api.post("/components", json=web_component("web", v1.repository)).status_code == 201
            )
            for target in estate["targets"]:
                assert api.post("/targets", json=target).status_code == 201, target
            alice = api.post("/users", json={"name": "alice", "role": "approver"}).json()["token"]
        agents = [start_agent(live, f"agent-{env}-{suffix}", env, tmp_path) for env in ports]
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        # a tag moved after release creation must not matter: the release is pinned by digest
        live.cli(
            "release",
            "create",
            "--name",
            "web",
            "--version",
            "2.0.0",
            "-c",
            f"web={v2.repository}@{v2.digest}",
            check=True,
        )
        docker_cli("tag", f"{v2.repository}:v2", f"{v1.repository}:v1")
        docker_cli("push", f"{v1.repository}:v1")

        for version, image in (("1.0.0", v1), ("2.0.0", v2)):
            for env in ("dev", "stage", "prod"):
                promoted = json.loads(
                    live.cli(
                        "promote", f"web@{version}", "--to", env, "-o", "json", check=True
                    ).stdout
                )
                if env == "prod":
                    assert promoted["state"] == "awaiting_approval", promoted
                    approve = live.cli("approve", promoted["id"], check=False)
                    assert approve.returncode == 1  # separation of duties: not by the requester
                    env_token = {"STELLA_TOKEN": alice}
                    _cli_as(live, env_token, "approve", promoted["id"])
                assert wait_settled(live, promoted["id"]) == "deployed", _deployments(live, env)
                assert http_text(ports[env]) == image.content
        prod_promotion = promoted["id"]
        composed = docker_client().containers.get(containers[1])
        assert composed.labels["com.docker.compose.project"] == stage_project
        assert composed.labels["org.stellaops.version"] == "2.0.0"

        client = docker_client()
        running = client.containers.get(containers[2])
        assert running.labels["org.stellaops.version"] == "2.0.0"
        assert running.labels["org.stellaops.digest"] == v2.digest
        assert running.labels["org.stellaops.release"] == "web"
        assert f"{v2.repository}@{v2.digest}" in running.image.attrs["RepoDigests"]
        sticker = json.loads(estate["stickers"]["prod"].read_text())
        assert sticker["version"] == "2.0.0"
        assert sticker["components"]["web"]["digest"] == v2.digest
        assert sticker["promotion"] == prod_promotion
        jobs = _deployments(live, "prod")
        assert sticker["deployment"] == jobs[0]["id"] or sticker["deployment"] in {
            j["id"] for j in jobs
        }
        lockfile = live.cli("deployment", "artifact", jobs[0]["id"], check=True).stdout
        assert "@sha256:" in lockfile
        assert ":v1" not in lockfile
        assert ":v2" not in lockfile

        # someone replaces the prod container by hand with the old image
        running.remove(force=True)
        docker_cli(
            "run",
            "-d",
            "--init",
            "--network",
            "host",
            "--name",
            containers[2],
            f"{v1.repository}@{v1.digest}",
            "httpd",
            "-f",
            "-p",
            f"127.0.0.1:{ports['prod']}",
            "-h",
            "/www",
        )
        # wait for the agent's inventory of the hand-made container: one taken earlier (mid-swap,
        # or while the deployment still had the old container set aside) names other findings
        wait_for(
            lambda: (
                '"changed_digest"'
                in live.cli("drift", "check", "--env", "prod", "-o", "json").stdout
            ),
            20,
            "the swapped container's drift to show",
        )
        report = json.loads(live.cli("drift", "check", "--env", "prod", "-o", "json").stdout)
        assert report["drifted"] == 1
        finding = report["items"][0]["findings"][0]
        assert (finding["kind"], finding["expected"], finding["actual"]) == (
            "changed_digest",
            v2.digest,
            v1.digest,
        )

        # a gated rollback: needs an approval like any production change
        rollback = json.loads(
            live.cli("rollback", "--env", "prod", "--yes", "-o", "json", check=True).stdout
        )
        assert rollback["kind"] == "rollback"
        assert rollback["state"] == "awaiting_approval"
        _cli_as(live, {"STELLA_TOKEN": alice}, "approve", rollback["id"])
        assert wait_settled(live, rollback["id"]) == "deployed"
        assert http_text(ports["prod"]) == v1.content
        with live.api() as api:
            undo = api.get("/deployments", params={"promotion": rollback["id"]}).json()["items"]
        assert [(j["kind"], j["state"]) for j in undo] == [("rollback", "succeeded")]
        sticker = json.loads(estate["stickers"]["prod"].read_text())
        assert (sticker["kind"], sticker["version"]) == ("rollback", "1.0.0")
        with live.api() as api:
            assert api.get(f"/promotions/{prod_promotion}").json()["state"] == "rolled_back"
        wait_for(
            lambda: live.cli("drift", "check", "--env", "prod").returncode == 0,
            20,
            "prod back in sync",
        )
    finally:
        for agent in agents:
            agent.stop()
        remove_containers(*containers)


def _cli_as(live, env: dict[str, str], *args: str) -> None:
    import subprocess

    result = subprocess.run(
        [STELLA, *args],
        env=live.cli_env() | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def _deployments(live, env: str) -> list[dict]:
    with live.api() as api:
        return api.get("/deployments", params={"environment": env}).json()["items"]
