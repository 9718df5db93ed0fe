"""Agent certificates are renewed over mutual TLS before they expire; the replaced one stops
working at once; an expired one stops the agent with the way out."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stella.agent.runner import (
    CERT_FILE,
    KEY_FILE,
    Agent,
    AgentError,
    AgentOptions,
    enrol_if_needed,
    mtls_client,
)
from tests.conftest import create_database, drop_database, free_port
from tests.support.deploy import FAST, join_token
from tests.support.live import STELLA, start_server


@pytest.fixture(params=["sqlite", "postgresql"])
def live(request, tmp_path):
    database = create_database(request.param, tmp_path)
    server = start_server(
        [STELLA, "server"], tmp_path / "home", free_port(), database.url, extra_env=FAST
    )
    with server.api() as api:
        api.post("/environments", json={"name": "Dev", "slug": "dev", "promotion_order": 1})
    yield server
    server.stop()
    drop_database(database)


def _options(live, tmp_path, name: str) -> AgentOptions:
    return AgentOptions(
        data_dir=tmp_path / name,
        server=live.url,
        join_token=join_token(live, "dev", "docker"),
        name=name,
        docker_host=None,
        work_dir=tmp_path / name / "work",
    )


def test_a_certificate_is_renewed_and_the_old_one_refused(live, tmp_path):
    name = f"renew-{uuid.uuid4().hex[:6]}"
    options = _options(live, tmp_path, name)
    identity = enrol_if_needed(options)
    old = tmp_path / "old"
    old.mkdir()
    for file in (KEY_FILE, CERT_FILE, "ca.crt"):
        shutil.copy(options.data_dir / file, old / file)
    agent = Agent(options, identity)
    assert not agent.renew_if_due()  # fresh: nothing to do
    assert agent.renew_if_due(datetime.now(UTC) + timedelta(days=25))  # 25 of 30 days gone
    with live.api() as api:
        shown = api.get(f"/agents/{name}").json()
        events = api.get("/audit-events").json()["items"]
    assert any(e["action"] == "agent.certificate_renewed" for e in events)
    beat = agent.client.post("/agent/v1/heartbeat", json={"version": "t"})
    assert beat.status_code == 200, beat.text
    with mtls_client(old, identity.agent_url) as stale:
        refused = stale.post("/agent/v1/heartbeat", json={"version": "t"})
    assert refused.status_code == 401
    assert "replaced" in refused.json()["detail"]
    assert shown["certificate_serial"] != ""
    assert not list(options.data_dir.glob("*.new"))
    agent.client.close()


def test_an_expired_certificate_stops_the_agent_with_the_way_out(live, tmp_path):
    name = f"old-{uuid.uuid4().hex[:6]}"
    options = _options(live, tmp_path, name)
    identity = enrol_if_needed(options)
    expired = _expired_certificate(live, options, identity.agent_id)
    (options.data_dir / CERT_FILE).write_text(expired)
    with pytest.raises(AgentError, match=r"expired .* enrol again"):
        Agent(options, identity)


def _expired_certificate(live, options, agent_id: str) -> str:
    """A certificate of the server's own CA for this agent, already expired."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from stella.adapters.pki import AgentCA

    ca = AgentCA.load_or_create(live.home / "keys")
    key = serialization.load_pem_private_key(
        (options.data_dir / KEY_FILE).read_bytes(), password=None
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    issued = ca.issue_client_certificate(
        csr.public_bytes(serialization.Encoding.PEM).decode(),
        uuid.UUID(agent_id),
        timedelta(minutes=1),
        now=datetime.now(UTC) - timedelta(days=1),
    )
    return issued.cert_pem
