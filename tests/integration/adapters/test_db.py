"""Storage on SQLite and PostgreSQL: schema, history, time zones, concurrency, outages."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from stella.adapters.db.engine import make_engine
from stella.adapters.db.migrate import current_revision, head_revision, upgrade
from stella.adapters.db.unit_of_work import SqlAlchemyUnitOfWork
from stella.api.app import create_app
from stella.bootstrap import build_container
from stella.config import Settings
from stella.domain.components import Component
from stella.domain.errors import Conflict, StorageUnavailable
from stella.domain.evidence import ChainEntryType
from stella.domain.ids import new_id
from stella.domain.pagination import PageRequest
from tests.conftest import create_database, drop_database, free_port, new_tenant

FOUNDATION_TABLES = {
    "tenants",
    "users",
    "api_tokens",
    "environments",
    "targets",
    "components",
    "component_versions",
    "integrations",
    "releases",
    "release_components",
    "audit_events",
}


def test_migrations_are_at_head_and_idempotent(database):
    assert current_revision(database.engine) == head_revision()
    upgrade(database.engine)  # a second run changes nothing and does not fail
    assert current_revision(database.engine) == head_revision()


def test_postgres_tables_live_in_the_release_schema(tmp_path):
    """PostgreSQL only: SQLite has no schemas."""
    database = create_database("postgresql", tmp_path)
    try:
        _assert_release_schema(database)
    finally:
        drop_database(database)


def _assert_release_schema(database):
    with database.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'release'")
        )
        assert {r[0] for r in rows} >= FOUNDATION_TABLES
        public = conn.execute(
            text("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        ).scalar()
        assert public == 0


def _statement(database, sql):
    # Plain SQL with the schema spelled out, as an attacker with database access would write it.
    prefix = "release." if database.kind == "postgresql" else ""
    with database.engine.begin() as conn:
        conn.execute(text(sql.format(p=prefix)))


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {p}audit_events SET action = 'rewritten'",
        "DELETE FROM {p}audit_events",
        "UPDATE {p}release_components SET digest = 'sha256:0'",
        "DELETE FROM {p}release_components",
        "UPDATE {p}releases SET version = '9.9.9'",
        "DELETE FROM {p}releases",
    ],
    ids=[
        "update-audit",
        "delete-audit",
        "rewrite-digest",
        "drop-components",
        "rename-release",
        "delete-release",
    ],
)
def test_the_database_refuses_to_rewrite_history(api, registry_url, repository, database, sql):
    from tests.conftest import REGISTRY
    from tests.support.oci import push_image

    push_image(registry_url, repository, "v1", "history")
    api.post("/components", {"name": "api", "repository": f"{REGISTRY}/{repository}"})
    assert (
        api.post(
            "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
        ).status_code
        == 201
    )
    with pytest.raises(DBAPIError, match=r"append-only|immutable"):
        _statement(database, sql)
    assert api.get("/releases/api@1.0.0").json()["version"] == "1.0.0"


def test_release_state_may_still_change_in_the_database(api, registry_url, repository, database):
    from tests.conftest import REGISTRY
    from tests.support.oci import push_image

    push_image(registry_url, repository, "v1", "state")
    api.post("/components", {"name": "api", "repository": f"{REGISTRY}/{repository}"})
    release = api.post(
        "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
    ).json()
    assert api.post(f"/releases/{release['id']}/deprecate").status_code == 200


def test_times_come_back_as_utc_aware(container):
    tenant = new_tenant(container)
    created = datetime(2026, 11, 27, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    component = Component(
        new_id(), tenant.user.tenant_id, "c", "127.0.0.1:5000/a/c", {}, created, created
    )
    with container.uow() as uow:
        uow.components.add(component)
        uow.commit()
    with container.read_uow() as uow:
        loaded = uow.components.get(tenant.user.tenant_id, "c")
    assert loaded is not None
    assert loaded.created_at == created
    assert loaded.created_at.tzinfo == UTC


def test_concurrent_writers_all_succeed(container):
    tenant = new_tenant(container)
    now = datetime.now(UTC)
    failures: list[BaseException] = []

    def write(index: int) -> None:
        try:
            with container.uow() as uow:
                uow.components.add(
                    Component(
                        new_id(),
                        tenant.user.tenant_id,
                        f"c{index}",
                        f"127.0.0.1:5000/a/c{index}",
                        {},
                        now,
                        now,
                    )
                )
                uow.commit()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    with container.read_uow() as uow:
        assert len(uow.components.page(tenant.user.tenant_id, PageRequest(limit=100)).items) == 20


def test_duplicate_insert_racing_past_the_check_is_a_conflict(container):
    tenant = new_tenant(container)
    now = datetime.now(UTC)
    with container.uow() as uow:
        uow.components.add(
            Component(new_id(), tenant.user.tenant_id, "dup", "127.0.0.1:5000/a/b", {}, now, now)
        )
        uow.commit()
    with container.uow() as uow, pytest.raises(Conflict):
        uow.components.add(
            Component(new_id(), tenant.user.tenant_id, "dup", "127.0.0.1:5000/a/b", {}, now, now)
        )


def test_unreachable_database_is_503_with_retry_after(tmp_path):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    settings = Settings(home=tmp_path, database_url=url)
    container = build_container(settings, make_engine(settings.resolved_database_url))
    with pytest.raises(StorageUnavailable), SqlAlchemyUnitOfWork(container.engine):
        pass
    with TestClient(create_app(container), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/environments", headers={"Authorization": "Bearer stl_x"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "unavailable" in response.json()["detail"]
        # a POST with an Idempotency-Key is looked up before the route: still a 503, not a 500
        keyed = client.post(
            "/api/v1/environments",
            json={"name": "Dev", "slug": "dev", "promotion_order": 1},
            headers={"Authorization": "Bearer stl_x", "Idempotency-Key": "k-1"},
        )
        assert keyed.status_code == 503, keyed.text
        assert keyed.headers["retry-after"] == "5"
        assert client.get("/readyz").status_code == 503
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE {p}workflow_run_events SET message = 'rewritten'",
        "DELETE FROM {p}workflow_run_events",
        "UPDATE {p}workflows SET version = 99",
        "DELETE FROM {p}workflows",
    ],
    ids=["update-event", "delete-event", "renumber-template", "delete-template"],
)
def test_run_events_and_template_versions_cannot_be_rewritten(api, database, sql):
    assert (
        api.post(
            "/workflows", {"name": "kept", "steps": [{"id": "a", "type": "approval"}]}
        ).status_code
        == 201
    )
    run = api.post("/workflow-runs", {"workflow": "kept"}).json()
    with pytest.raises(DBAPIError, match="append-only"):
        _statement(database, sql)
    events = api.get(f"/workflow-runs/{run['id']}/events").json()["items"]
    assert events[0]["message"].startswith("run of kept v1 created")


@pytest.mark.parametrize(
    "table",
    [
        "promotion_events",
        "approvals",
        "promotion_evaluations",
        "promotion_overrides",
        "decisions",
        "policies",
    ],
)
def test_promotion_history_cannot_be_rewritten_in_the_database(
    api, registry_url, repository, database, table
):
    from tests.support.promotions import build_estate

    estate = build_estate(api, registry_url, repository)
    promotion = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "dev"}
    ).json()
    # every history table gets at least one row, so UPDATE and DELETE have something to refuse
    stage = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "stage"}
    ).json()
    api.post(f"/promotions/{stage['id']}/approve", token=estate.approvers[0])
    api.patch("/environments/prod", {"state": "frozen"})
    prod = api.post(
        "/promotions", {"release_id": estate.release_id, "target_environment": "prod"}
    ).json()
    api.post(
        f"/promotions/{prod['id']}/override",
        {"gate": "freeze_window", "reason": "testing break-glass"},
    )
    for verb in ("UPDATE {p}" + table + " SET {col} = {col}", "DELETE FROM {p}" + table):
        column = (
            "reason"
            if table in {"promotion_events", "promotion_overrides", "decisions"}
            else (
                "comment"
                if table == "approvals"
                else ("outcome" if table == "promotion_evaluations" else "name")
            )
        )
        with pytest.raises(DBAPIError, match="append-only"):
            _statement(database, verb.replace("{col}", column))
    assert api.get(f"/promotions/{promotion['id']}").json()["state"] == "approved"


def test_lookups_by_many_ids_stay_under_the_bound_parameter_limit(container):
    """A month's export or a whole chain's verification looks rows up by tens of thousands of
    ids; one `IN` list of them would exceed what a statement may bind (PostgreSQL 65,535)."""
    tenant = new_tenant(container)  # its creation is audited and chained
    with container.read_uow() as uow:
        events = uow.audit.page(tenant.user.tenant_id, PageRequest(limit=10)).items
        known = [e.id for e in events]
        assert known, "creating a tenant is audited"
        ids = [uuid.uuid4() for _ in range(70_000)] + known
        found = uow.chain.audit_events(ids)
        assert set(found) == set(known)
        assert uow.evidence.by_ids(ids[:-1]) == {}
        linked = uow.chain.entries_for(tenant.user.tenant_id, ChainEntryType.AUDIT_EVENT, ids)
        assert set(linked) == set(known)
