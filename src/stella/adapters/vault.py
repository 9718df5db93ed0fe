"""HashiCorp Vault KV v2 secret references (`vault:path#key`), read through `hvac`.

Settings come from the environment of the process that resolves the reference:
`STELLA_VAULT_ADDR` (required), `STELLA_VAULT_NAMESPACE` (optional), `STELLA_VAULT_MOUNT`
(KV v2 mount, default `secret`), and either `STELLA_VAULT_TOKEN` or AppRole credentials
(`STELLA_VAULT_ROLE_ID` + `STELLA_VAULT_SECRET_ID`). The token and the secret-id may be given as
`env:NAME` / `file:/path` references (resolved with the usual confinement) or as the value.

AppRole tokens are short-lived: the client token is cached until shortly before its lease ends,
then Stella logs in again. A 403 on a cached AppRole token (revoked early) triggers one fresh login.

Error messages name the reference only: never the value, the token or Vault's own answer text.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hvac
import requests
from hvac import exceptions as vault_errors

from stella.adapters.secrets import SecretUnavailable
from stella.domain.secrets import SecretRef

DEFAULT_MOUNT = "secret"
TIMEOUT_SECONDS = 10.0
# A cached AppRole token is dropped this long before its lease ends (at most 10% of the lease).
RENEW_MARGIN_SECONDS = 30.0

# Path segments allowed in `vault:path#key`: no `.`/`..`, no query or percent escapes, so a
# reference cannot leave the KV mount and reach other Vault endpoints with Stella's token.
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_@=+,~:-][A-Za-z0-9_.@=+,~:-]*$")
_MOUNT_RE = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


@dataclass(frozen=True, slots=True)
class VaultSettings:
    """Connection settings; `token_ref` / `secret_id_ref` hold references or raw values."""

    addr: str
    namespace: str | None
    mount: str
    token_ref: str | None
    role_id: str | None
    secret_id_ref: str | None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> VaultSettings | None:
        """Settings from `STELLA_VAULT_*`, or None when Vault is not configured at all."""
        env = dict(os.environ) if environ is None else environ
        addr = env.get("STELLA_VAULT_ADDR", "").strip()
        if not addr:
            return None
        return cls(
            addr=addr.rstrip("/"),
            namespace=env.get("STELLA_VAULT_NAMESPACE", "").strip() or None,
            mount=env.get("STELLA_VAULT_MOUNT", "").strip().strip("/") or DEFAULT_MOUNT,
            token_ref=env.get("STELLA_VAULT_TOKEN", "").strip() or None,
            role_id=env.get("STELLA_VAULT_ROLE_ID", "").strip() or None,
            secret_id_ref=env.get("STELLA_VAULT_SECRET_ID", "").strip() or None,
        )


def split_vault_location(ref: SecretRef) -> tuple[str, str]:
    """`path#key` of a vault reference as (path, key); raise SecretUnavailable if malformed."""
    path, sep, key = ref.location.rpartition("#")
    path = path.strip("/")
    segments = path.split("/")
    if not sep or not key or not path or not all(_SEGMENT_RE.match(s) for s in segments):
        msg = (
            f"secret reference {ref} is not of the form vault:path#key "
            "(path segments of letters, digits and _ . @ = + , ~ : -; no . or ..)"
        )
        raise SecretUnavailable(msg)
    return path, key


class VaultResolver:
    """Reads KV v2 fields with one cached hvac client; safe to share between threads."""

    def __init__(
        self,
        settings: VaultSettings,
        resolve_credential: Callable[[str], str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._resolve_credential = resolve_credential
        self._clock = clock
        self._lock = threading.Lock()
        self._client: hvac.Client | None = None
        self._token_expires_at: float | None = None  # None: no expiry known (static token)
        self.logins = 0

    def read(self, ref: SecretRef) -> str:
        """The field `key` of the KV v2 secret `path` named by `vault:path#key`."""
        path, key = split_vault_location(ref)
        if not _MOUNT_RE.match(self.settings.mount):
            msg = f"secret reference {ref}: STELLA_VAULT_MOUNT is not a valid mount path"
            raise SecretUnavailable(msg)
        try:
            response = self._read_with_retry(ref, path)
        except vault_errors.Forbidden:
            msg = f"secret reference {ref}: Vault denied access (403 permission denied)"
            raise SecretUnavailable(msg) from None
        except vault_errors.InvalidPath:
            msg = f"secret reference {ref}: no secret at this path in KV v2 mount "
            msg += f"'{self.settings.mount}' (or it was deleted)"
            raise SecretUnavailable(msg) from None
        except vault_errors.Unauthorized:
            msg = f"secret reference {ref}: Vault rejected Stella's credentials (401)"
            raise SecretUnavailable(msg) from None
        except (vault_errors.VaultDown, vault_errors.VaultNotInitialized):
            msg = f"secret reference {ref}: Vault is sealed or not initialised"
            raise SecretUnavailable(msg) from None
        except vault_errors.VaultError as exc:
            status = getattr(exc, "status_code", None) or "error"
            msg = f"secret reference {ref}: Vault answered {status}"
            raise SecretUnavailable(msg) from None
        except requests.RequestException:
            msg = f"secret reference {ref}: Vault at {self.settings.addr} is unreachable"
            raise SecretUnavailable(msg) from None
        value = _field(response, key)
        if value is None:
            msg = f"secret reference {ref}: the secret has no key '{key}'"
            raise SecretUnavailable(msg)
        return value

    def _read_with_retry(self, ref: SecretRef, path: str) -> Any:
        client = self._authenticated_client(ref)
        try:
            return self._read_kv(client, path)
        except vault_errors.Forbidden:
            if not self._uses_approle():
                raise
            # The cached AppRole token may have been revoked before its lease ended.
            self._forget_token()
            return self._read_kv(self._authenticated_client(ref), path)

    def _read_kv(self, client: hvac.Client, path: str) -> Any:
        return client.secrets.kv.v2.read_secret_version(
            path=path, mount_point=self.settings.mount, raise_on_deleted_version=True
        )

    def _uses_approle(self) -> bool:
        return self.settings.token_ref is None

    def _forget_token(self) -> None:
        with self._lock:
            self._client = None
            self._token_expires_at = None

    def _new_client(self, token: str) -> hvac.Client:
        return hvac.Client(
            url=self.settings.addr,
            token=token,
            namespace=self.settings.namespace,
            timeout=TIMEOUT_SECONDS,
        )

    def _authenticated_client(self, ref: SecretRef) -> hvac.Client:
        with self._lock:
            now = self._clock()
            if self._client is not None and (
                self._token_expires_at is None or now < self._token_expires_at
            ):
                return self._client
            if self.settings.token_ref is not None:
                token = self._credential(ref, "STELLA_VAULT_TOKEN", self.settings.token_ref)
                self._client = self._new_client(token)
                self._token_expires_at = None
                return self._client
            if not self.settings.role_id or not self.settings.secret_id_ref:
                msg = (
                    f"secret reference {ref}: Vault is configured (STELLA_VAULT_ADDR) but has no "
                    "credentials; set STELLA_VAULT_TOKEN, or STELLA_VAULT_ROLE_ID and "
                    "STELLA_VAULT_SECRET_ID"
                )
                raise SecretUnavailable(msg)
            secret_id = self._credential(ref, "STELLA_VAULT_SECRET_ID", self.settings.secret_id_ref)
            self._client, self._token_expires_at = self._approle_login(ref, secret_id, now)
            return self._client

    def _approle_login(
        self, ref: SecretRef, secret_id: str, now: float
    ) -> tuple[hvac.Client, float | None]:
        client = self._new_client("")
        try:
            answer = client.auth.approle.login(
                role_id=self.settings.role_id, secret_id=secret_id, use_token=True
            )
        except (vault_errors.Forbidden, vault_errors.InvalidRequest, vault_errors.Unauthorized):
            msg = f"secret reference {ref}: Vault refused the AppRole login (role or secret id)"
            raise SecretUnavailable(msg) from None
        except vault_errors.VaultError as exc:
            status = getattr(exc, "status_code", None) or "error"
            msg = f"secret reference {ref}: Vault AppRole login answered {status}"
            raise SecretUnavailable(msg) from None
        except requests.RequestException:
            msg = f"secret reference {ref}: Vault at {self.settings.addr} is unreachable"
            raise SecretUnavailable(msg) from None
        auth = answer.get("auth") if isinstance(answer, dict) else None
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            msg = f"secret reference {ref}: Vault AppRole login returned no client token"
            raise SecretUnavailable(msg)
        self.logins += 1
        lease = auth.get("lease_duration") if isinstance(auth, dict) else None
        if not isinstance(lease, int | float) or lease <= 0:
            return client, None  # a token without a TTL
        margin = min(RENEW_MARGIN_SECONDS, lease * 0.1)
        return client, now + lease - margin

    def _credential(self, ref: SecretRef, variable: str, configured: str) -> str:
        """A credential setting: an `env:`/`file:` reference is resolved, anything else is used."""
        scheme = configured.partition(":")[0]
        if scheme == "vault":
            msg = f"secret reference {ref}: {variable} cannot itself be a vault: reference"
            raise SecretUnavailable(msg)
        if scheme not in ("env", "file"):
            return configured
        try:
            return self._resolve_credential(configured)
        except SecretUnavailable:
            msg = f"secret reference {ref}: {variable} ({configured}) cannot be resolved"
            raise SecretUnavailable(msg) from None


def _field(response: Any, key: str) -> str | None:
    data = response.get("data") if isinstance(response, dict) else None
    fields = data.get("data") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or key not in fields:
        return None
    value = fields[key]
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


_resolver: VaultResolver | None = None
_resolver_lock = threading.Lock()


def read_vault_secret(ref: SecretRef, resolve_credential: Callable[[str], str]) -> str:
    """Resolve `vault:path#key` with the process's `STELLA_VAULT_*` settings."""
    global _resolver  # one cached client (and AppRole token) per process
    settings = VaultSettings.from_env()
    if settings is None:
        msg = f"secret reference {ref}: the Vault integration is not configured (STELLA_VAULT_ADDR)"
        raise SecretUnavailable(msg)
    with _resolver_lock:
        if _resolver is None or _resolver.settings != settings:
            _resolver = VaultResolver(settings, resolve_credential)
        resolver = _resolver
    return resolver.read(ref)
