"""The agent listener over real mutual TLS: only certificates from our CA get in, and the app
sees the right certificate on every request of a connection, never another connection's."""

from __future__ import annotations

import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from stella.adapters.pki import AgentCA, CertificateRejected, generate_agent_key_and_csr
from stella.api.mtls import mtls_server_config, peer_certificate

# What a failed client-certificate check looks like to httpx. With TLS 1.2 the handshake fails
# (ConnectError). With TLS 1.3 the client finishes its half of the handshake before the server
# has checked the certificate, sends its request, and then finds the connection closed: asyncio
# drops the server's TLS alert when the handshake fails, so the client sees a plain EOF
# (RemoteProtocolError "Server disconnected"), or ReadError/WriteError depending on timing.
REFUSED = (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)


@dataclass
class Listener:
    url: str
    ca: AgentCA
    ca_file: Path


def make_app(ca: AgentCA) -> FastAPI:
    app = FastAPI()

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, object]:
        der = peer_certificate(request)
        if der is None:
            return {"agent_id": None}
        try:
            agent_id = str(ca.identity(der).agent_id)
        except CertificateRejected as exc:
            return {"rejected": str(exc)}
        client = request.scope["client"]
        return {"agent_id": agent_id, "client_port": client[1] if client else None}

    return app


@contextmanager
def serving(tmp_path: Path, configure=None) -> Iterator[Listener]:
    ca = AgentCA.load_or_create(tmp_path / "ca")
    ca_file = tmp_path / "ca" / "agent-ca.crt"
    cert_file, key_file = ca.server_certificate_files(tmp_path / "listener", ["127.0.0.1"])
    config = mtls_server_config(make_app(ca), "127.0.0.1", 0, ca_file, cert_file, key_file)
    if configure is not None:
        configure(config)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mtls-listener", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the listener did not start"
        assert time.monotonic() < deadline, "the listener did not start within 10s"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Listener(url=f"https://127.0.0.1:{port}", ca=ca, ca_file=ca_file)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive()


@pytest.fixture
def listener(tmp_path) -> Iterator[Listener]:
    with serving(tmp_path) as running:
        yield running


def agent_files(ca: AgentCA, directory: Path, agent_id: uuid.UUID, **issue) -> tuple[Path, Path]:
    key_pem, csr_pem = generate_agent_key_and_csr(f"agent-{agent_id}")
    issued = ca.issue_client_certificate(
        csr_pem, agent_id, issue.pop("validity", timedelta(days=1)), **issue
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{agent_id}.crt", directory / f"{agent_id}.key"
    cert_file.write_text(issued.cert_pem)
    key_file.write_text(key_pem)
    return cert_file, key_file


def client(
    listener: Listener,
    cert: tuple[Path, Path] | None,
    max_version: ssl.TLSVersion | None = None,
) -> httpx.Client:
    # httpx 0.28 deprecates `verify=<path>` and `cert=...` (DeprecationWarning, an error in
    # this suite), so the client's certificate and trusted CA go in through an SSLContext.
    context = ssl.create_default_context(cafile=str(listener.ca_file))
    if cert is not None:
        context.load_cert_chain(*cert)
    if max_version is not None:
        context.maximum_version = max_version
    return httpx.Client(base_url=listener.url, verify=context, timeout=10)


def test_a_ca_issued_certificate_is_seen_on_every_request_of_its_connection(listener, tmp_path):
    agent_id = uuid.uuid4()
    with client(listener, agent_files(listener.ca, tmp_path / "agent", agent_id)) as http:
        first = http.get("/whoami")
        second = http.get("/whoami")
    assert first.status_code == second.status_code == 200
    assert first.json()["agent_id"] == second.json()["agent_id"] == str(agent_id)
    # Same client port: the second request really reused the keep-alive connection.
    assert first.json()["client_port"] == second.json()["client_port"]


def test_concurrent_clients_each_see_their_own_identity(listener, tmp_path):
    ids = [uuid.uuid4() for _ in range(4)]
    files = [agent_files(listener.ca, tmp_path / "agents", agent_id) for agent_id in ids]
    barrier = threading.Barrier(len(ids))

    def run(agent_id: uuid.UUID, cert: tuple[Path, Path]) -> tuple[uuid.UUID, list[str]]:
        with client(listener, cert) as http:
            barrier.wait(timeout=10)
            return agent_id, [http.get("/whoami").json()["agent_id"] for _ in range(10)]

    with ThreadPoolExecutor(max_workers=len(ids)) as pool:
        seen = dict(pool.map(run, ids, files, timeout=30))
    assert seen == {agent_id: [str(agent_id)] * 10 for agent_id in ids}


def test_sequential_connections_do_not_inherit_identity(listener, tmp_path):
    first, second = uuid.uuid4(), uuid.uuid4()
    for agent_id in (first, second, first):
        with client(listener, agent_files(listener.ca, tmp_path / "a", agent_id)) as http:
            assert http.get("/whoami").json()["agent_id"] == str(agent_id)


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_a_client_without_certificate_is_refused(listener, max_version):
    with client(listener, None, max_version) as http, pytest.raises(REFUSED):
        http.get("/whoami")


@pytest.mark.parametrize("max_version", [None, ssl.TLSVersion.TLSv1_2], ids=["tls1.3", "tls1.2"])
def test_a_certificate_from_another_ca_is_refused(listener, tmp_path, max_version):
    other = AgentCA.load_or_create(tmp_path / "other-ca")
    cert = agent_files(other, tmp_path / "foreign", uuid.uuid4())
    with client(listener, cert, max_version) as http, pytest.raises(REFUSED):
        http.get("/whoami")


def test_an_expired_certificate_is_refused(listener, tmp_path):
    long_ago = datetime.now(UTC) - timedelta(days=10)
    cert = agent_files(listener.ca, tmp_path / "old", uuid.uuid4(), now=long_ago)
    with client(listener, cert) as http, pytest.raises(REFUSED):
        http.get("/whoami")


def test_the_listener_closes_connections_without_certificate_if_tls_lets_them_through(tmp_path):
    """Defence in depth: even with client certificates made optional by mistake, the app is
    never called for a connection that has no certificate."""

    def optional(config: uvicorn.Config) -> None:
        config.ssl_cert_reqs = ssl.CERT_OPTIONAL

    with serving(tmp_path, optional) as running:
        with client(running, None) as http, pytest.raises(REFUSED):
            http.get("/whoami")
        # A certificate still works on the same listener.
        agent_id = uuid.uuid4()
        with client(running, agent_files(running.ca, tmp_path / "a", agent_id)) as http:
            assert http.get("/whoami").json()["agent_id"] == str(agent_id)


def test_tls_settings():
    config = mtls_server_config(
        FastAPI(),
        "127.0.0.1",
        0,
        Path("unused-ca"),
        Path("unused-cert"),
        Path("unused-key"),
    )
    assert config.ssl_cert_reqs == ssl.CERT_REQUIRED
    context = config.ssl_context_factory(config, ssl.create_default_context)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_flags & ssl.VERIFY_X509_STRICT


def test_peer_certificate_is_none_without_tls():
    app = FastAPI()

    @app.get("/")
    def root(request: Request) -> dict[str, object]:
        return {"cert": peer_certificate(request)}

    with TestClient(app) as test_client:
        assert test_client.get("/").json() == {"cert": None}
