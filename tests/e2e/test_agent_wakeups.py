"""Agents over real mutual TLS against an in-process listener: heartbeats keep their
connection, authenticate in the transaction that records them, and a long poll is woken by a
new job instead of waiting for its next look at the database."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import select, update

from stella.adapters.db import tables as t
from stella.adapters.db.deployment_repositories import start_listener
from stella.adapters.executors import render_compose_lockfile
from stella.adapters.pki import CA_CERT_FILE, generate_agent_key_and_csr
from stella.agent.runner import Agent, AgentError, AgentOptions, Identity
from stella.api import agent_app
from stella.api.mtls import LISTENER_KEEPALIVE_SECONDS, MutualTLSProtocol, mtls_server_config
from stella.bootstrap import utc_now
from stella.domain.deployments import DeploymentOutcome, JobKind, JobState, ObservedContainer
from stella.domain.errors import PermissionDenied
from stella.domain.ids import new_id
from stella.domain.releases import ComponentDigest, Release, ReleaseState
from stella.domain.targets import HealthStatus, Target, TargetState, TargetType
from stella.services import agents, deployments
from tests.conftest import create_database, drop_database, free_port


@dataclass
class Listener:
    url: str
    connections: list[object]


@pytest.fixture
def listener(container) -> Iterator[Listener]:
    keys = container.settings.keys_dir
    cert_file, key_file = container.agent_ca.server_certificate_files(keys, ["127.0.0.1"])
    connections: list[object] = []

    class Counting(MutualTLSProtocol):
        def connection_made(self, transport) -> None:  # type: ignore[override]
            connections.append(transport)
            super().connection_made(transport)

    port = free_port()
    config = mtls_server_config(
        agent_app.create_agent_app(container),
        "127.0.0.1",
        port,
        keys / CA_CERT_FILE,
        cert_file,
        key_file,
    )
    config.http = Counting
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started
    yield Listener(f"https://127.0.0.1:{port}", connections)
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Enrolled:
    agent: Agent
    agent_id: uuid.UUID
    tenant_id: uuid.UUID
    environment_id: uuid.UUID
    name: str


def _enrolled(api, client, container, listener: Listener, tmp_path: Path) -> Enrolled:
    slug = f"w{uuid.uuid4().hex[:6]}"
    assert api.post("/environments", {"name": slug, "slug": slug, "promotion_order": 1}).is_success
    token = api.post("/agents/join-tokens", {"environment": slug, "capabilities": ["docker"]})
    name = f"a-{uuid.uuid4().hex[:6]}"
    key_pem, csr_pem = generate_agent_key_and_csr(name)
    body = client.post(
        "/api/v1/agents/enroll",
        json={"join_token": token.json()["token"], "name": name, "csr": csr_pem},
    ).json()
    folder = tmp_path / name
    folder.mkdir()
    (folder / "agent.key").write_text(key_pem)
    (folder / "agent.crt").write_text(body["certificate"])
    (folder / "ca.crt").write_text(body["ca_certificate"])
    identity = Identity(body["agent_id"], name, listener.url, 30.0)
    (folder / "agent.json").write_text(json.dumps(identity.__dict__))
    options = AgentOptions(
        data_dir=folder,
        server=None,
        join_token=None,
        name=None,
        docker_host="unix:///nonexistent/docker.sock",  # inventory fails: reported, not fatal
        work_dir=folder / "work",
        poll_wait_seconds=30,
    )
    with container.engine.connect() as conn:
        env = conn.execute(
            select(t.environments.c.id, t.environments.c.tenant_id).where(
                t.environments.c.slug == slug
            )
        ).one()
    return Enrolled(
        Agent(options, identity), uuid.UUID(body["agent_id"]), env.tenant_id, env.id, name
    )


def test_heartbeats_reuse_one_tls_connection(api, client, container, listener, tmp_path):
    enrolled = _enrolled(api, client, container, listener, tmp_path)
    before = len(listener.connections)
    for _ in range(3):
        enrolled.agent.heartbeat_once()
    assert len(listener.connections) - before == 1  # one handshake, three heartbeats
    # ... and at the real pace too: both ends keep the connection longer than an interval
    # (httpx's default would drop it after 5 s, so every 30 s heartbeat was a new handshake)
    pool = enrolled.agent.client._transport._pool  # httpx exposes no public accessor
    assert 30.0 < pool._keepalive_expiry < LISTENER_KEEPALIVE_SECONDS
    assert api.get(f"/agents/{enrolled.name}").json()["state"] == "degraded"  # no engine
    enrolled.agent.client.close()


def test_a_revoked_agent_heartbeat_is_refused_and_does_not_bring_it_back(
    api, client, container, listener, tmp_path
):
    enrolled = _enrolled(api, client, container, listener, tmp_path)
    enrolled.agent.heartbeat_once()
    assert api.post(f"/agents/{enrolled.name}/revoke").json()["state"] == "revoked"
    with pytest.raises(AgentError, match="revoked"):
        enrolled.agent.heartbeat_once()  # same kept-alive connection: refused all the same
    assert api.get(f"/agents/{enrolled.name}").json()["state"] == "revoked"
    enrolled.agent.client.close()


def test_an_unchanged_inventory_only_moves_observed_at(api, client, container, listener, tmp_path):
    enrolled = _enrolled(api, client, container, listener, tmp_path)
    target = _target(container, enrolled, pinned=True)
    with container.uow(read_only=True) as uow:
        serial = uow.agents.by_id(enrolled.agent_id).cert_serial
    seen = ObservedContainer.from_json(
        {"name": "web", "image": "r/web@sha256:" + "1" * 64, "digests": [], "state": "running"}
    )
    beat = lambda inventory: agents.heartbeat(  # noqa: E731
        container.uow, utc_now, enrolled.agent_id, serial, "t", {"status": "healthy"}, inventory
    )
    beat([seen])
    with container.uow() as uow:  # not committed: only asks what it would write
        first = uow.observations.get(target.id)
        written = uow.observations.report(
            enrolled.tenant_id, [target.id], f"agent:{enrolled.name}", [seen], utc_now()
        )
    assert written == 0  # same observer, same containers: nothing to rewrite
    beat([seen])
    with container.uow(read_only=True) as uow:
        second = uow.observations.get(target.id)
        health = uow.targets.get(enrolled.tenant_id, str(target.id)).health
    assert first is not None
    assert second is not None
    assert second[0] == first[0] == [seen]
    assert second[1] > first[1]
    assert str(health) == "healthy"
    beat([])
    with container.uow(read_only=True) as uow:
        assert uow.observations.get(target.id)[0] == []  # a change is written
    enrolled.agent.client.close()


def test_a_waiting_long_poll_is_woken_by_a_new_job(
    api, client, container, listener, tmp_path, monkeypatch
):
    enrolled = _enrolled(api, client, container, listener, tmp_path)
    monkeypatch.setattr(agent_app, "POLL_SECONDS", 3600.0)  # no fallback look in this test
    claims: list[bool] = []
    real_claim = deployments.claim_for_agent

    def counted(*args):
        found = real_claim(*args)
        claims.append(found is not None)
        return found

    monkeypatch.setattr(deployments, "claim_for_agent", counted)
    key = deployments.environment_key(enrolled.environment_id)
    answers: list = []
    poll = threading.Thread(
        target=lambda: answers.append(
            enrolled.agent.client.post("/agent/v1/tasks/next?wait=30", timeout=60)
        )
    )
    poll.start()
    _until(lambda: key in deployments.JOB_EVENTS._waiters)  # the poll looked, found nothing
    assert claims == [False]

    target = _target(container, enrolled, pinned=False)
    job = _create_job(api, container, enrolled, target)  # as the deploy step does: commit, notify
    poll.join(timeout=20)  # well before the 30 s wait ends

    assert not poll.is_alive()
    answer = answers[0]
    assert answer.status_code == 200, answer.text
    assert answer.json()["job_id"] == str(job.id)
    assert claims == [False, True]  # woken once, took the job

    # the result wakes whoever waits for the batch (the deploy step)
    batch = deployments.batch_key(job.batch)
    seen = deployments.JOB_EVENTS.generation(batch)
    enrolled.agent.report(
        str(job.id), answer.json()["task_token"], DeploymentOutcome(True, None, [], {}, {})
    )
    assert deployments.JOB_EVENTS.generation(batch) > seen
    with container.uow(read_only=True) as uow:
        assert uow.jobs.by_id(job.id).state is JobState.SUCCEEDED
    enrolled.agent.client.close()


@pytest.mark.postgresql_only  # NOTIFY is PostgreSQL's; SQLite waiters poll
def test_postgresql_notifications_reach_another_connection(container):
    assert container.engine.dialect.name == "postgresql"
    events = deployments.JobEvents()  # as in another process: its own LISTEN connection
    start_listener(container.engine.url, events)
    key = f"batch:{uuid.uuid4()}"
    woken = False
    for _ in range(100):  # the LISTEN thread may still be connecting: announce again
        seen = events.generation(key)
        with container.uow() as uow:
            deployments.announce(uow, {key})
            uow.commit()  # delivered on commit
        if events.wait(key, seen, 0.2):
            woken = True
            break
    assert woken
    seen = events.generation(key)
    with container.uow() as uow:
        deployments.announce(uow, {key})  # left without commit: rolled back
    assert not events.wait(key, seen, 0.5)  # nothing is announced by a rolled-back change


def _target(container, enrolled: Enrolled, pinned: bool) -> Target:
    now = utc_now()
    target = Target(
        new_id(), enrolled.tenant_id, enrolled.environment_id, f"h-{uuid.uuid4().hex[:6]}",
        TargetType.DOCKER_HOST, {}, {}, enrolled.agent_id if pinned else None,
        TargetState.ACTIVE, HealthStatus.UNKNOWN, now, now,
    )  # fmt: skip
    with container.uow() as uow:
        uow.targets.add(target)
        uow.commit()
    return target


def _create_job(api, container, enrolled: Enrolled, target: Target):
    now = utc_now()
    repository = "127.0.0.1:5000/app/web"
    assert api.post("/components", {"name": "web", "repository": repository}).is_success
    pinned = ComponentDigest("web", repository, "sha256:" + "2" * 64, None)
    release = Release(
        new_id(), enrolled.tenant_id, "app", f"1.0.{uuid.uuid4().int % 10_000}", None,
        ReleaseState.ACTIVE, (pinned,), now, None, "test",
    )  # fmt: skip
    with container.uow() as uow:
        uow.releases.add(release)
        environment = uow.environments.get_by_id(enrolled.tenant_id, enrolled.environment_id)
        jobs = deployments.create_batch(
            uow, render_compose_lockfile, f"b-{uuid.uuid4().hex[:8]}", release, environment,
            JobKind.DEPLOY, None, None, None, now, [target],
        )  # fmt: skip
        uow.commit()
    deployments.JOB_EVENTS.notify(deployments.environment_key(enrolled.environment_id))
    assert [j.state for j in jobs] == [JobState.PENDING]
    return jobs[0]


def _until(condition) -> None:
    pause = threading.Event()
    for _ in range(3000):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition never became true")


def test_a_listener_stops_when_its_database_is_dropped(tmp_path):
    """A dropped database (a finished test run, a decommissioned install) ends the LISTEN
    thread instead of leaving it to reconnect and warn forever."""
    database = create_database("postgresql", tmp_path)
    events = deployments.JobEvents()
    try:
        start_listener(database.engine.url, events)
        assert len(events.listening) == 1
    finally:
        drop_database(database)
    deadline = time.monotonic() + 60  # bounded: one reconnect after LISTEN_RETRY_SECONDS
    while events.listening and time.monotonic() < deadline:
        time.sleep(0.2)
    assert events.listening == set(), "the listener still runs for a dropped database"


@pytest.mark.postgresql_only  # SQLite has no LISTEN: its waiters poll
def test_the_agent_listener_and_workers_listen_from_start_up(container):
    """Cross-process wake-ups need this process's LISTEN thread: the agent listener and every
    worker start it when they are built, not on each long poll or batch wait."""
    url = container.engine.url.render_as_string(hide_password=True)
    agent_app.create_agent_app(container)
    assert url in deployments.JOB_EVENTS.listening
    container.make_worker("listening-test")
    assert url in deployments.JOB_EVENTS.listening


@pytest.mark.postgresql_only  # SQLite serialises writers with its file lock instead
def test_a_heartbeat_waits_for_a_revocation_in_flight_and_is_refused(
    api, client, container, listener, tmp_path
):
    """The heartbeat reads its agent FOR UPDATE in the transaction that writes it: one that
    arrives while a revocation is being committed waits for it and is refused, rather than
    reading the old row and writing `online` over `revoked`."""
    enrolled = _enrolled(api, client, container, listener, tmp_path)
    enrolled.agent.heartbeat_once()
    enrolled.agent.client.close()
    with container.read_uow() as uow:
        serial = uow.agents.by_id(enrolled.agent_id).cert_serial
    outcome: list[object] = []

    def beat() -> None:
        try:
            agents.heartbeat(
                container.uow, utc_now, enrolled.agent_id, serial, "t", {"status": "ok"}, None
            )
            outcome.append("recorded")
        except PermissionDenied as exc:
            outcome.append(exc)

    with container.engine.connect() as revoking:  # a revocation, not yet committed
        revoking.execute(
            update(t.agents).where(t.agents.c.id == enrolled.agent_id).values(state="revoked")
        )
        heartbeat = threading.Thread(target=beat)
        heartbeat.start()
        heartbeat.join(timeout=0.5)  # it reaches the locked row and waits there
        revoking.commit()
    heartbeat.join(timeout=30)
    assert len(outcome) == 1
    assert isinstance(outcome[0], PermissionDenied), outcome
    assert api.get(f"/agents/{enrolled.name}").json()["state"] == "revoked"
