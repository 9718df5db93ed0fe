"""Shared fixtures: both databases, the loopback registry, tenants and API clients.

Every storage-touching test runs twice, on SQLite and on PostgreSQL (`database` fixture).
A missing service skips locally but fails under CI=true, so CI can never go green by skipping.
"""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from stella.adapters.db.engine import make_engine
from stella.adapters.db.migrate import upgrade
from stella.api.app import create_app
from stella.bootstrap import Container, build_container, utc_now
from stella.config import Settings
from stella.services.auth import IssuedToken, create_tenant

IN_CI = os.environ.get("CI", "").lower() == "true"
PG_HOST = os.environ.get("STELLA_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("STELLA_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("STELLA_TEST_PG_USER", "postgres")
REGISTRY_URL = os.environ.get("TESTENV_REGISTRY_URL", "http://127.0.0.1:5000")
REGISTRY = REGISTRY_URL.removeprefix("http://")


def service_missing(what: str) -> None:
    """Skip when developing without the service; under CI=true the absence is a failure."""
    message = f"{what} is not available (run `make test`, which starts it)"
    if IN_CI:
        pytest.fail(f"CI=true: {message}")
    pytest.skip(f"{message}; under CI=true this fails instead of skipping")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url(dbname: str, driver: str = "postgresql+psycopg") -> str:
    return f"{driver}://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def _pg_admin(sql: str) -> None:
    with psycopg.connect(
        host=PG_HOST,
        port=PG_PORT,
        user=PG_USER,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    ) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@dataclass
class TestDatabase:
    """A migrated database owned by this test run; `url` is what STELLA_DATABASE_URL takes."""

    kind: str
    url: str
    engine: Engine


def create_database(kind: str, tmp: Path, migrate: bool = True) -> TestDatabase:
    """A fresh database of `kind` (PostgreSQL: its own database on the server), migrated unless
    `migrate` is False (to prove that the server migrates an empty database itself)."""
    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'stella-{secrets.token_hex(4)}.db'}"
        engine = make_engine(url)
    else:
        name = f"stella_test_{os.getpid()}_{secrets.token_hex(4)}"
        try:
            _pg_admin(f'CREATE DATABASE "{name}"')
        except psycopg.OperationalError:
            service_missing(f"PostgreSQL on {PG_HOST}:{PG_PORT}")
        url = pg_url(name, "postgresql")
        engine = make_engine(pg_url(name))
    if migrate:
        upgrade(engine)
    return TestDatabase(kind, url, engine)


def drop_database(database: TestDatabase) -> None:
    database.engine.dispose()
    if database.kind == "postgresql":
        name = database.url.rsplit("/", 1)[1]
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestDatabase]:
    """Each storage test runs once per backend; each run owns (and drops) its database."""
    db = create_database(request.param, tmp_path_factory.mktemp(request.param))
    yield db
    drop_database(db)


@pytest.fixture(scope="session")
def container(database: TestDatabase, tmp_path_factory: pytest.TempPathFactory) -> Container:
    home = tmp_path_factory.mktemp("home")
    settings = Settings(
        home=home,
        database_url=database.url,
        max_body_bytes=64 * 1024,
        auth_failures_per_minute=100_000,
    )
    return build_container(settings, database.engine)


@pytest.fixture(scope="session")
def client(container: Container) -> Iterator[TestClient]:
    with TestClient(create_app(container), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass
class TenantClient:
    """An API client acting as one tenant's admin; `as_token` switches identity."""

    http: TestClient
    issued: IssuedToken
    container: Container

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issued.token}"}

    def request(self, method: str, path: str, token: str | None = None, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.issued.token}"} | kwargs.pop(
            "headers", {}
        )
        return self.http.request(method, "/api/v1" + path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.request("POST", path, json=json, **kwargs)

    def patch(self, path: str, json=None, **kwargs) -> httpx.Response:
        return self.request("PATCH", path, json=json, **kwargs)

    def delete(self, path: str, **kwargs) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def user_token(self, role: str) -> str:
        response = self.post("/users", {"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})
        assert response.status_code == 201, response.text
        return str(response.json()["token"])


def new_tenant(container: Container) -> IssuedToken:
    return create_tenant(container.uow, f"tenant-{uuid.uuid4().hex[:10]}", "admin", utc_now)


@pytest.fixture
def api(client: TestClient, container: Container) -> TenantClient:
    """A fresh tenant per test: tests never see each other's rows, so nothing is truncated."""
    return TenantClient(client, new_tenant(container), container)


@pytest.fixture
def other_tenant(client: TestClient, container: Container) -> TenantClient:
    return TenantClient(client, new_tenant(container), container)


@pytest.fixture(scope="session")
def registry_url() -> str:
    try:
        httpx.get(f"{REGISTRY_URL}/v2/", timeout=3).raise_for_status()
    except httpx.HTTPError:
        service_missing(f"the OCI registry at {REGISTRY_URL}")
    return REGISTRY_URL


@pytest.fixture
def repository(registry_url: str) -> str:
    """A repository path no other test uses: `app/t-<random>`."""
    return f"app/t-{uuid.uuid4().hex[:10]}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test about a PostgreSQL feature (an index plan, LISTEN/NOTIFY) is not run against
    the SQLite `database` at all, rather than skipped there (a skip must mean a missing
    service, which CI=true turns into a failure)."""
    kept, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_sqlite = callspec is not None and callspec.params.get("database") == "sqlite"
        if on_sqlite and item.get_closest_marker("postgresql_only"):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
