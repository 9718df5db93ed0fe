"""Periodic audit checkpoints, on SQLite and PostgreSQL: a real worker (`Container.make_worker`,
configured from `STELLA_AUDIT_CHECKPOINT_SECONDS`) signs a checkpoint of every tenant chain that
grew, signs nothing while no chain grows, checkpoints only the tenants that grew, and waits its
interval between two rounds."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stella.adapters.signing.dsse import verify_envelope
from stella.api.app import create_app
from stella.bootstrap import build_container
from stella.config import Settings
from stella.services import agents, audit_chain
from tests.conftest import TenantClient, create_database, drop_database, new_tenant
from tests.support.waiting import wait_until


class Calls:
    """Counts calls of a wrapped module function (and what each returned), thread-safely."""

    def __init__(self) -> None:
        self.results: list[object] = []
        self.lock = threading.Lock()

    def wrap(self, function):
        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            with self.lock:
                self.results.append(result)
            return result

        return wrapped

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def since(self, start: int) -> list[object]:
        with self.lock:
            return list(self.results[start:])


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request) -> str:
    return str(request.param)


@pytest.fixture
def stack(kind, tmp_path, monkeypatch) -> Iterator:
    """A fresh database (nothing but this test's tenants in it), and a factory for a container
    whose settings come from the environment like `stella worker`'s do."""
    database = create_database(kind, tmp_path)
    monkeypatch.setenv("STELLA_WORKER_LEASE_SECONDS", "0.5")  # periodic jobs every 0.25 s
    monkeypatch.setenv("STELLA_WORKER_POLL_SECONDS", "0.05")
    monkeypatch.setenv("STELLA_WORKER_GRACE_SECONDS", "1")
    started = []

    def build(checkpoint_seconds: str):
        monkeypatch.setenv("STELLA_AUDIT_CHECKPOINT_SECONDS", checkpoint_seconds)
        settings = Settings(home=tmp_path / "home", database_url=database.url)
        assert settings.audit_checkpoint_seconds == float(checkpoint_seconds)
        container = build_container(settings, database.engine)
        http = TestClient(create_app(container), raise_server_exceptions=False)
        started.append(http)
        return container, http

    yield build
    for http in started:
        http.close()
    drop_database(database)


@pytest.fixture
def counted(monkeypatch):
    """(checkpoint rounds, periodic passes): the worker looks both functions up at call time."""
    rounds, passes = Calls(), Calls()
    monkeypatch.setattr(audit_chain, "checkpoint_grown", rounds.wrap(audit_chain.checkpoint_grown))
    monkeypatch.setattr(agents, "sweep", passes.wrap(agents.sweep))
    return rounds, passes


def checkpoints(api: TenantClient) -> list[dict]:
    response = api.get("/audit/checkpoints")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def chain_size(api: TenantClient) -> int:
    report = api.get("/audit/verify").json()
    assert report["ok"], report
    return int(report["size"])


def grow(api: TenantClient, slug: str, order: int) -> None:
    body = {"name": slug.title(), "slug": slug, "promotion_order": order}
    assert api.post("/environments", body).status_code == 201


def test_a_worker_checkpoints_grown_chains_and_signs_nothing_while_none_grows(stack, counted):
    rounds, _ = counted
    container, http = stack("1")
    busy = TenantClient(http, new_tenant(container), container)
    quiet = TenantClient(http, new_tenant(container), container)
    grow(busy, "dev", 1)
    assert checkpoints(busy) == []
    assert checkpoints(quiet) == []
    worker = container.make_worker("checkpointer")
    worker.start()
    try:
        # the first round signs both chains (each grew from nothing: tenant and admin created)
        wait_until(lambda: checkpoints(busy) and checkpoints(quiet), "the first checkpoints")
        first = checkpoints(busy)
        assert len(first) == 1
        assert first[0]["size"] == chain_size(busy)
        key = busy.get("/keys").json()["keys"][0]
        assert first[0]["keyid"] == key["keyid"]
        signed = verify_envelope(first[0]["envelope"], key["public_key_pem"].encode())
        assert signed["predicate"]["size"] == first[0]["size"]
        assert signed["predicate"]["root_hash"] == first[0]["root_hash"]

        # nothing grows: two more rounds run and sign nothing
        seen = rounds.count
        wait_until(lambda: rounds.count >= seen + 2, "two more checkpoint rounds")
        assert set(rounds.since(seen)) == {0}
        assert checkpoints(busy) == first
        assert len(checkpoints(quiet)) == 1

        # one tenant's chain grows: the next round checkpoints it, and only it
        grow(busy, "stage", 2)
        grown = chain_size(busy)
        assert grown > first[0]["size"]
        wait_until(lambda: len(checkpoints(busy)) == 2, "a checkpoint of the grown chain")
        latest = checkpoints(busy)[0]
        assert latest["size"] == grown
        assert latest["root_hash"] != first[0]["root_hash"]
        assert len(checkpoints(quiet)) == 1
        report = busy.get("/audit/verify").json()
        assert report["ok"], report
        assert report["checkpoint"]["size"] == grown
        assert report["warnings"] == []
    finally:
        worker.stop()


def test_the_interval_separates_two_rounds(stack, counted):
    """With STELLA_AUDIT_CHECKPOINT_SECONDS=3600 the worker's first round comes at once (on its
    first periodic pass, whatever the host's uptime), and a chain that grows afterwards waits for
    the next round, however often the worker's periodic jobs run meanwhile."""
    rounds, passes = counted
    container, http = stack("3600")
    api = TenantClient(http, new_tenant(container), container)
    worker = container.make_worker("hourly")
    worker.start()
    try:
        wait_until(lambda: passes.count >= 5, "five periodic passes")
        assert rounds.count == 1
        before = checkpoints(api)
        assert len(before) == rounds.count
        grow(api, "dev", 1)
        assert chain_size(api) > (before[0]["size"] if before else 0)
        seen, done = passes.count, rounds.count
        wait_until(lambda: passes.count >= seen + 5, "five more periodic passes")
        assert rounds.count == done
        assert checkpoints(api) == before
    finally:
        worker.stop()
