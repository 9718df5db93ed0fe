"""Vault KV v2 references against a RECORDED-RESPONSE FAKE of Vault's HTTP API (not real Vault).

Vault cannot run here, so a small `http.server` on 127.0.0.1 answers the few endpoints Stella
uses with the JSON shapes from Vault's API documentation:

- `POST /v1/auth/approle/login` (https://developer.hashicorp.com/vault/api-docs/auth/approle)
- `GET /v1/<mount>/data/<path>` (https://developer.hashicorp.com/vault/api-docs/secret/kv/kv-v2)
- `GET /v1/auth/token/lookup-self` (https://developer.hashicorp.com/vault/api-docs/auth/token)

It checks `X-Vault-Token` (403 `{"errors":["permission denied"]}` for a wrong one), answers 404
`{"errors":[]}` for a missing path, and honours `X-Vault-Namespace` only by recording it.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from stella.adapters import vault as vault_adapter
from stella.adapters.secrets import SecretUnavailable, resolve_secret
from stella.adapters.vault import VaultResolver, VaultSettings
from stella.domain.secrets import parse_secret_ref

STATIC_TOKEN = "hvs.fake-static-token-0001"
ROLE_ID = "role-id-fake-0001"
SECRET_ID = "secret-id-fake-0001"
SECRET_VALUE = "s3cr3t-db-password-value"


@dataclass
class FakeVaultState:
    """What the fake knows and what it saw."""

    secrets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # mount→path→data
    valid_tokens: set[str] = field(default_factory=lambda: {STATIC_TOKEN})
    lease_duration: int = 3600
    logins: int = 0
    reads: int = 0
    seen_tokens: list[str] = field(default_factory=list)
    seen_namespaces: list[str | None] = field(default_factory=list)


def _kv2_read_response(data: dict[str, Any]) -> dict[str, Any]:
    """The documented KV v2 "Read Secret Version" answer."""
    return {
        "request_id": "a1b2c3d4-0000-0000-0000-000000000001",
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": {
            "data": data,
            "metadata": {
                "created_time": "2018-03-22T02:24:06.945319214Z",
                "custom_metadata": None,
                "deletion_time": "",
                "destroyed": False,
                "version": 2,
            },
        },
        "wrap_info": None,
        "warnings": None,
        "auth": None,
    }


def _make_handler(state: FakeVaultState) -> type[BaseHTTPRequestHandler]:
    class FakeVaultHandler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _token_ok(self) -> bool:
            token = self.headers.get("X-Vault-Token") or ""
            state.seen_tokens.append(token)
            state.seen_namespaces.append(self.headers.get("X-Vault-Namespace"))
            if token not in state.valid_tokens:
                self._send(403, {"errors": ["permission denied"]})
                return False
            return True

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v1/auth/approle/login":
                self._send(404, {"errors": []})
                return
            if body.get("role_id") != ROLE_ID or body.get("secret_id") != SECRET_ID:
                self._send(400, {"errors": ["invalid role or secret ID"]})
                return
            state.logins += 1
            token = f"hvs.approle-token-{state.logins:04d}"
            state.valid_tokens.add(token)
            self._send(
                200,
                {
                    "auth": {
                        "renewable": True,
                        "lease_duration": state.lease_duration,
                        "metadata": {"role_name": "stella"},
                        "policies": ["default", "stella-read"],
                        "accessor": f"accessor-{state.logins}",
                        "client_token": token,
                    }
                },
            )

        def do_GET(self) -> None:
            if not self._token_ok():
                return
            path = self.path.split("?", 1)[0]
            if path == "/v1/auth/token/lookup-self":
                token = self.headers.get("X-Vault-Token")
                self._send(200, {"data": {"id": token, "ttl": state.lease_duration}})
                return
            prefix, sep, rest = path.removeprefix("/v1/").partition("/data/")
            if not sep or prefix not in state.secrets or rest not in state.secrets[prefix]:
                self._send(404, {"errors": []})
                return
            state.reads += 1
            self._send(200, _kv2_read_response(state.secrets[prefix][rest]))

    return FakeVaultHandler


@pytest.fixture
def fake_vault() -> Iterator[tuple[str, FakeVaultState]]:
    state = FakeVaultState(
        secrets={
            "secret": {"stella/db": {"password": SECRET_VALUE, "user": "stella"}},
            "kv": {"team/app": {"api_key": "other-mount-value"}},
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _clean_vault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "STELLA_VAULT_ADDR",
        "STELLA_VAULT_NAMESPACE",
        "STELLA_VAULT_MOUNT",
        "STELLA_VAULT_TOKEN",
        "STELLA_VAULT_ROLE_ID",
        "STELLA_VAULT_SECRET_ID",
        "VAULT_TOKEN",
        "VAULT_ADDR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(vault_adapter, "_resolver", None)


def _assert_clean(exc: pytest.ExceptionInfo[SecretUnavailable], reference: str) -> str:
    text = str(exc.value)
    assert reference in text
    for secret in (SECRET_VALUE, STATIC_TOKEN, SECRET_ID, "hvs.approle-token"):
        assert secret not in text
    return text


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _approle_settings(addr: str) -> VaultSettings:
    return VaultSettings(
        addr=addr,
        namespace=None,
        mount="secret",
        token_ref=None,
        role_id=ROLE_ID,
        secret_id_ref="env:TEST_VAULT_SECRET_ID",
    )


def test_fake_vault_token_auth_reads_kv2_field(fake_vault, monkeypatch):
    addr, state = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    monkeypatch.setenv("STELLA_VAULT_NAMESPACE", "team-a")

    assert resolve_secret("vault:stella/db#password") == SECRET_VALUE
    assert resolve_secret("vault:stella/db#user") == "stella"
    assert state.seen_tokens == [STATIC_TOKEN, STATIC_TOKEN]
    assert state.seen_namespaces == ["team-a", "team-a"]


def test_fake_vault_token_given_as_env_reference_and_custom_mount(fake_vault, monkeypatch):
    addr, state = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_MOUNT", "kv")
    monkeypatch.setenv("STELLA_VAULT_TOKEN", "env:TEST_VAULT_TOKEN")
    monkeypatch.setenv("TEST_VAULT_TOKEN", STATIC_TOKEN)

    assert resolve_secret("vault:team/app#api_key") == "other-mount-value"
    assert state.seen_tokens == [STATIC_TOKEN]


def test_fake_vault_token_given_as_file_reference(fake_vault, monkeypatch, tmp_path):
    addr, _ = fake_vault
    (tmp_path / "vault-token").write_text(STATIC_TOKEN + "\n")
    monkeypatch.setenv("STELLA_SECRET_DIRS", str(tmp_path))
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", f"file:{tmp_path / 'vault-token'}")

    assert resolve_secret("vault:stella/db#password") == SECRET_VALUE


def test_fake_vault_approle_login_caches_token_and_relogs_after_expiry(fake_vault, monkeypatch):
    addr, state = fake_vault
    state.lease_duration = 2  # short-lived AppRole tokens
    monkeypatch.setenv("TEST_VAULT_SECRET_ID", SECRET_ID)
    clock = FakeClock()
    resolver = VaultResolver(_approle_settings(addr), resolve_secret, clock=clock)
    ref = parse_secret_ref("vault:stella/db#password")

    assert resolver.read(ref) == SECRET_VALUE
    clock.now += 1.0  # within the lease: the cached token is reused
    assert resolver.read(ref) == SECRET_VALUE
    assert state.logins == 1
    assert state.seen_tokens == ["hvs.approle-token-0001"] * 2

    clock.now += 1.0  # past the lease (less the safety margin): log in again
    assert resolver.read(ref) == SECRET_VALUE
    assert state.logins == 2
    assert state.seen_tokens[-1] == "hvs.approle-token-0002"


def test_fake_vault_approle_through_resolve_secret(fake_vault, monkeypatch):
    addr, state = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_ROLE_ID", ROLE_ID)
    monkeypatch.setenv("STELLA_VAULT_SECRET_ID", "env:TEST_VAULT_SECRET_ID")
    monkeypatch.setenv("TEST_VAULT_SECRET_ID", SECRET_ID)

    for _ in range(3):
        assert resolve_secret("vault:stella/db#password") == SECRET_VALUE
    assert state.logins == 1


def test_fake_vault_revoked_approle_token_logs_in_again(fake_vault, monkeypatch):
    addr, state = fake_vault
    monkeypatch.setenv("TEST_VAULT_SECRET_ID", SECRET_ID)
    resolver = VaultResolver(_approle_settings(addr), resolve_secret, clock=FakeClock())
    ref = parse_secret_ref("vault:stella/db#password")
    assert resolver.read(ref) == SECRET_VALUE
    state.valid_tokens.discard("hvs.approle-token-0001")  # revoked before its lease ended

    assert resolver.read(ref) == SECRET_VALUE
    assert state.logins == 2


def test_fake_vault_wrong_approle_secret_id(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("TEST_VAULT_SECRET_ID", "wrong-secret-id-value")
    resolver = VaultResolver(_approle_settings(addr), resolve_secret)
    with pytest.raises(SecretUnavailable, match="AppRole login") as exc:
        resolver.read(parse_secret_ref("vault:stella/db#password"))
    assert "wrong-secret-id-value" not in _assert_clean(exc, "vault:stella/db#password")


def test_fake_vault_missing_key(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    with pytest.raises(SecretUnavailable, match="no key 'nope'") as exc:
        resolve_secret("vault:stella/db#nope")
    _assert_clean(exc, "vault:stella/db#nope")


def test_fake_vault_missing_path(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    with pytest.raises(SecretUnavailable, match="no secret at this path") as exc:
        resolve_secret("vault:stella/missing#password")
    _assert_clean(exc, "vault:stella/missing#password")


def test_fake_vault_wrong_token_is_permission_denied(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", "hvs.wrong-token-value")
    with pytest.raises(SecretUnavailable, match="403 permission denied") as exc:
        resolve_secret("vault:stella/db#password")
    assert "hvs.wrong-token-value" not in _assert_clean(exc, "vault:stella/db#password")


def test_fake_vault_unreachable(monkeypatch):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("STELLA_VAULT_ADDR", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    with pytest.raises(SecretUnavailable, match="unreachable") as exc:
        resolve_secret("vault:stella/db#password")
    _assert_clean(exc, "vault:stella/db#password")


def test_fake_vault_not_configured():
    with pytest.raises(SecretUnavailable, match="not configured") as exc:
        resolve_secret("vault:stella/db#password")
    _assert_clean(exc, "vault:stella/db#password")


def test_fake_vault_configured_without_credentials(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    with pytest.raises(SecretUnavailable, match="STELLA_VAULT_TOKEN") as exc:
        resolve_secret("vault:stella/db#password")
    _assert_clean(exc, "vault:stella/db#password")


def test_fake_vault_token_reference_keeps_env_confinement(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", "env:STELLA_DATABASE_URL")
    with pytest.raises(SecretUnavailable, match="cannot be resolved") as exc:
        resolve_secret("vault:stella/db#password")
    _assert_clean(exc, "vault:stella/db#password")


@pytest.mark.parametrize(
    "reference",
    [
        "vault:stella/db",
        "vault:stella/db#",
        "vault:#password",
        "vault:../../auth/token/lookup-self#id",
        "vault:stella/./db#password",
        "vault:stella/db?version=1#password",
        "vault:stella/%2e%2e/db#password",
    ],
)
def test_fake_vault_rejects_malformed_or_escaping_paths(fake_vault, monkeypatch, reference):
    addr, state = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    with pytest.raises(SecretUnavailable, match="vault:path#key") as exc:
        resolve_secret(reference)
    _assert_clean(exc, reference)
    assert state.seen_tokens == []  # nothing was sent to Vault


def test_fake_vault_lookup_self_answers_for_valid_token(fake_vault):
    """The fake itself: lookup-self checks X-Vault-Token like the real endpoint."""
    import hvac
    import hvac.exceptions

    addr, _ = fake_vault
    assert hvac.Client(url=addr, token=STATIC_TOKEN).auth.token.lookup_self()["data"]["id"] == (
        STATIC_TOKEN
    )
    with pytest.raises(hvac.exceptions.Forbidden):
        hvac.Client(url=addr, token="hvs.bad").auth.token.lookup_self()


def test_fake_vault_value_never_in_error_text(fake_vault, monkeypatch):
    addr, _ = fake_vault
    monkeypatch.setenv("STELLA_VAULT_ADDR", addr)
    monkeypatch.setenv("STELLA_VAULT_TOKEN", STATIC_TOKEN)
    for reference in ("vault:stella/db#absent", "vault:stella/gone#password"):
        with pytest.raises(SecretUnavailable) as exc:
            resolve_secret(reference)
        assert SECRET_VALUE not in str(exc.value)
        assert SECRET_VALUE not in repr(exc.value)
        assert STATIC_TOKEN not in str(exc.value)
