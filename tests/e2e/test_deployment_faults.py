"""Deployments under faults, against a real server, real agents, a real Docker engine and sshd:
an agent killed mid-task, the control plane restarted mid-deployment, a container that never
gets healthy, a revoked agent, an SSH host whose key changed, a secret that must not leak."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import create_database, drop_database, free_port
from tests.support.deploy import (
    FAST,
    SSH_KEY,
    SSH_KNOWN_HOSTS,
    SSH_PORT,
    agent_state,
    docker_client,
    http_text,
    push_web_image,
    remove_containers,
    start_agent,
    wait_for,
    wait_settled,
    web_component,
)
from tests.support.live import STELLA, LiveServer, start_server

SLOW_START = ["sh", "-c", "sleep 4 && exec httpd -f -p 127.0.0.1:${PORT} -h /www"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    docker_client()
    db = create_database(request.param, tmp_path)
    yield db
    drop_database(db)


def _serve(tmp_path, database, port: int | None = None, env: dict | None = None) -> LiveServer:
    return start_server(
        [STELLA, "server"],
        tmp_path / "home",
        port or free_port(),
        database.url,
        extra_env=FAST | (env or {}),
    )


def _dev(live: LiveServer, component: dict, targets: list[dict], **deployment) -> None:
    with live.api() as api:
        created = api.post(
            "/environments",
            json={
                "name": "Dev",
                "slug": "dev",
                "promotion_order": 1,
                "gates": ["previous_environment"],
                "deployment": deployment,
            },
        )
        assert created.status_code == 201, created.text
        assert api.post("/components", json=component).status_code == 201
        for target in targets:
            response = api.post("/targets", json=target)
            assert response.status_code == 201, response.text


def _docker_target(name: str, port: int, **connection) -> dict:
    return {
        "name": name,
        "environment": "dev",
        "type": "docker_host",
        "connection": {"container_name_prefix": f"{name}-", "environment": {"PORT": str(port)}}
        | connection,
    }


def _promote(live: LiveServer, version: str) -> str:
    result = live.cli("promote", f"web@{version}", "--to", "dev", "-o", "json", check=True)
    return json.loads(result.stdout)["id"]


def _jobs(live: LiveServer, promotion_id: str) -> list[dict]:
    with live.api() as api:
        return api.get("/deployments", params={"promotion": promotion_id}).json()["items"]


def _job(live: LiveServer, job_id: str) -> dict:
    with live.api() as api:
        return api.get(f"/deployments/{job_id}").json()


def test_an_agent_killed_mid_task_hands_the_job_to_another_agent(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    image = push_web_image(f"app/kill-{suffix}", "v1", f"kill {suffix}\n", tmp_path)
    component = web_component("web", image.repository)
    component["runtime"]["command"] = SLOW_START
    _dev(live, component, [_docker_target(f"t-{suffix}", port)])
    agents = {}
    try:
        for n in (1, 2):
            name = f"a{n}-{suffix}"
            agents[name] = start_agent(live, name, "dev", tmp_path)
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        wait_for(
            lambda: any(j["state"] == "running" for j in _jobs(live, promotion)),
            30,
            "the job to start",
        )
        job = _jobs(live, promotion)[0]
        with live.api() as api:
            victim = api.get(f"/agents/{job['agent_id']}").json()["name"]
        agents[victim].kill()  # SIGKILL mid-task: no goodbye, no result

        assert wait_settled(live, promotion) == "deployed"
        done = _job(live, job["id"])
        survivor = next(n for n in agents if n != victim)
        with live.api() as api:
            assert api.get(f"/agents/{done['agent_id']}").json()["name"] == survivor
        assert done["attempt"] == 2
        assert f"agent {victim} went offline" in done["log"]
        assert agent_state(live, victim) == "offline"
        assert http_text(port) == image.content
    finally:
        for agent in agents.values():
            agent.stop()
        live.stop()
        remove_containers(f"t-{suffix}-web")


def test_a_job_with_no_agent_left_fails_with_the_reason(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    image = push_web_image(f"app/lone-{suffix}", "v1", f"lone {suffix}\n", tmp_path)
    component = web_component("web", image.repository)
    component["runtime"]["command"] = SLOW_START
    _dev(live, component, [_docker_target(f"t-{suffix}", free_port())])
    agent = start_agent(live, f"only-{suffix}", "dev", tmp_path)
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        wait_for(
            lambda: any(j["state"] == "running" for j in _jobs(live, promotion)),
            30,
            "the job to start",
        )
        agent.kill()
        assert wait_settled(live, promotion) == "failed"
        job = _jobs(live, promotion)[0]
        assert job["state"] == "failed"
        assert "no other online agent" in job["error"]
        with live.api() as api:
            events = api.get(f"/promotions/{promotion}/events").json()["items"]
        assert "no other online agent" in events[-1]["reason"]
    finally:
        agent.stop()
        live.stop()
        remove_containers(f"t-{suffix}-web")


def test_the_control_plane_restarts_mid_deployment(database, tmp_path):
    port = free_port()
    live = _serve(tmp_path, database, port)
    suffix = uuid.uuid4().hex[:6]
    web_port = free_port()
    image = push_web_image(f"app/restart-{suffix}", "v1", f"restart {suffix}\n", tmp_path)
    component = web_component("web", image.repository)
    component["runtime"]["command"] = SLOW_START
    _dev(live, component, [_docker_target(f"t-{suffix}", web_port)])
    agent = start_agent(live, f"r-{suffix}", "dev", tmp_path)
    agent_listen = _agent_listen(live)
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        wait_for(
            lambda: any(j["state"] == "running" for j in _jobs(live, promotion)),
            30,
            "the job to start",
        )
        os.killpg(live.process.pid, signal.SIGKILL)  # a crash, not a clean shutdown
        live.process.wait(timeout=10)
        time.sleep(1)
        live = _serve(tmp_path, database, port, {"STELLA_AGENT_LISTEN": agent_listen})
        assert wait_settled(live, promotion) == "deployed"
        assert http_text(web_port) == image.content
        jobs = _jobs(live, promotion)
        assert [j["state"] for j in jobs] == ["succeeded"]  # delivered once, not redeployed
    finally:
        agent.stop()
        live.stop()
        remove_containers(f"t-{suffix}-web")


def _agent_listen(live: LiveServer) -> str:
    for line in live.log.read_text().splitlines():
        if "agent listener on https://" in line:
            return line.split("https://")[1].split()[0]
    raise AssertionError("the server did not say where its agent listener is")


def test_a_container_that_never_gets_healthy_is_rolled_back(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    good = push_web_image(
        f"app/sick-{suffix}", "v1", f"good {suffix}\n", tmp_path, {"healthy": "ok\n"}
    )
    sick = push_web_image(f"app/sick-{suffix}", "v2", f"sick {suffix}\n", tmp_path)
    component = web_component("web", good.repository)
    # only v1 has the page the health check asks for: v2 never becomes healthy
    component["runtime"]["healthcheck"] = {
        "http": "http://127.0.0.1:${PORT}/healthy",
        "interval": "100ms",
        "retries": 15,
    }
    _dev(live, component, [_docker_target(f"t-{suffix}", port)], auto_rollback=True)
    agent = start_agent(live, f"s-{suffix}", "dev", tmp_path)
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        live.cli(
            "release", "create", "--name", "web", "--version", "2.0.0", "-c", "web=v2", check=True
        )
        assert wait_settled(live, _promote(live, "1.0.0")) == "deployed"
        promotion = _promote(live, "2.0.0")
        assert wait_settled(live, promotion) == "rolled_back"
        jobs = _jobs(live, promotion)
        kinds = sorted((j["kind"], j["state"]) for j in jobs)
        assert kinds == [("deploy", "failed"), ("rollback", "succeeded")]
        failed = next(j for j in jobs if j["kind"] == "deploy")
        assert "did not become healthy" in failed["error"]
        assert http_text(port) == good.content
        running = docker_client().containers.get(f"t-{suffix}-web")
        assert running.labels["org.stellaops.version"] == "1.0.0"
        assert sick.digest not in str(running.image.attrs["RepoDigests"])
    finally:
        agent.stop()
        live.stop()
        remove_containers(f"t-{suffix}-web")


def test_a_revoked_agent_stops_with_a_clear_message(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    with live.api() as api:
        assert (
            api.post(
                "/environments", json={"name": "Dev", "slug": "dev", "promotion_order": 1}
            ).status_code
            == 201
        )
    agent = start_agent(live, f"rev-{suffix}", "dev", tmp_path)
    try:
        result = live.cli("agent", "revoke", f"rev-{suffix}", "--yes", check=True)
        assert "revoked" in result.stdout
        agent.process.wait(timeout=30)
        assert agent.process.returncode != 0
        assert "revoked" in agent.log.read_text()
        # the same certificate on a fresh start is refused too
        again = subprocess.run(
            [STELLA, "agent", "run", "--data-dir", str(agent.data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert again.returncode != 0
        assert "revoked" in again.stderr
        assert "Traceback" not in again.stderr
    finally:
        agent.stop()
        live.stop()


def test_reused_join_token_fails_the_agent_command_in_one_line(database, tmp_path):
    live = _serve(tmp_path, database)
    with live.api() as api:
        assert (
            api.post(
                "/environments", json={"name": "Dev", "slug": "dev", "promotion_order": 1}
            ).status_code
            == 201
        )
    token = live.cli("agent", "token", "create", "--env", "dev", check=True).stdout.strip()
    first = start_agent(live, "once", "dev", tmp_path, token=token)
    try:
        second = subprocess.run(
            [
                STELLA,
                "agent",
                "run",
                "--server",
                live.url,
                "--join-token",
                token,
                "--name",
                "twice",
                "--data-dir",
                str(tmp_path / "two"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert "join token was already used" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.stop()
        live.stop()


def _ssh_target(name: str, port: int, known_hosts: str, sticker: str) -> dict:
    return {
        "name": name,
        "environment": "dev",
        "type": "ssh_remote",
        "connection": {
            "host": "127.0.0.1",
            "port": SSH_PORT,
            "user": "root",
            "identity_file": SSH_KEY,
            "known_hosts": known_hosts,
            "docker_socket": "/tmp/stella-testenv/docker.sock",
            "container_name_prefix": f"{name}-",
            "sticker_path": sticker,
            "environment": {"PORT": str(port)},
        },
    }


def test_ssh_targets_deploy_without_an_agent_and_refuse_a_changed_host_key(database, tmp_path):
    if not os.path.exists(SSH_KNOWN_HOSTS):
        from tests.conftest import service_missing

        service_missing("the loopback sshd")
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    port = free_port()
    image = push_web_image(f"app/ssh-{suffix}", "v1", f"ssh {suffix}\n", tmp_path)
    forged = tmp_path / "known_hosts"
    forged.write_text(_forged_known_hosts())
    sticker = tmp_path / "ssh-sticker.json"
    _dev(
        live,
        web_component("web", image.repository),
        [
            _ssh_target(f"s-{suffix}", port, SSH_KNOWN_HOSTS, str(sticker)),
        ],
    )
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        assert wait_settled(live, promotion) == "deployed", _jobs(live, promotion)
        assert http_text(port) == image.content
        assert json.loads(sticker.read_text())["version"] == "1.0.0"
        job = _jobs(live, promotion)[0]
        assert (job["executor"], job["agent_id"]) == ("worker", None)

        # the host key changes (or a man in the middle answers): the deployment is refused
        with live.api() as api:
            api.patch(
                f"/targets/s-{suffix}",
                json={
                    "connection": _ssh_target(f"s-{suffix}", port, str(forged), str(sticker))[
                        "connection"
                    ]
                },
            )
        live.cli(
            "release",
            "create",
            "--name",
            "web",
            "--version",
            "1.0.1",
            "-c",
            f"web={image.repository}@{image.digest}",
            check=True,
        )
        refused = _promote(live, "1.0.1")
        assert wait_settled(live, refused) == "failed"
        error = _jobs(live, refused)[0]["error"]
        assert "host key" in error
        assert "not trusted" in error
        assert json.loads(sticker.read_text())["version"] == "1.0.0"  # nothing changed there
    finally:
        live.stop()
        remove_containers(f"s-{suffix}-web")


def _forged_known_hosts() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    return f"[127.0.0.1]:{SSH_PORT} {public}\n"


def test_secret_values_reach_the_container_but_never_the_record(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    image = push_web_image(f"app/secret-{suffix}", "v1", f"secret {suffix}\n", tmp_path)
    component = web_component("web", image.repository)
    component["runtime"]["environment"]["API_TOKEN"] = "env:STELLA_SECRET_E2E_TOKEN"
    # the container prints its token and the health check can never pass: the failure
    # path, where logs and errors are written, is where a leak would show
    component["runtime"]["command"] = ["sh", "-c", "echo token=$API_TOKEN; sleep 30"]
    component["runtime"]["healthcheck"]["retries"] = 5
    _dev(live, component, [_docker_target(f"t-{suffix}", free_port())])
    os.environ["STELLA_SECRET_E2E_TOKEN"] = secret  # the agent's environment, not the server's
    try:
        agent = start_agent(live, f"sec-{suffix}", "dev", tmp_path)
    finally:
        del os.environ["STELLA_SECRET_E2E_TOKEN"]
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        assert wait_settled(live, promotion) == "failed"
        job = _jobs(live, promotion)[0]
        with live.api() as api:
            record = json.dumps(api.get(f"/deployments/{job['id']}").json())
            artifacts = [
                api.get(f"/deployments/{job['id']}/artifacts/{name}").text
                for name in job["artifacts"]
            ]
        assert secret not in record
        assert all(secret not in a for a in artifacts)
        assert any("env:STELLA_SECRET_E2E_TOKEN" in a for a in artifacts)  # references only
        assert secret not in live.log.read_text()
        assert secret not in agent.log.read_text()
    finally:
        agent.stop()
        live.stop()
        remove_containers(f"t-{suffix}-web")


def test_a_deployment_nobody_can_take_fails_with_the_reason(database, tmp_path):
    live = _serve(tmp_path, database)
    suffix = uuid.uuid4().hex[:6]
    image = push_web_image(f"app/none-{suffix}", "v1", f"none {suffix}\n", tmp_path)
    _dev(live, web_component("web", image.repository), [_docker_target(f"t-{suffix}", 18999)])
    try:
        live.cli(
            "release", "create", "--name", "web", "--version", "1.0.0", "-c", "web=v1", check=True
        )
        promotion = _promote(live, "1.0.0")
        assert wait_settled(live, promotion) == "failed"
        job = _jobs(live, promotion)[0]
        assert "no online agent in this environment has capability 'docker'" in job["error"]
    finally:
        live.stop()
