"""The connector type registry: integration types map to connector builders.

The built-in OCI connector is registered like any plugin will be, under the name `oci`;
an integration picks another with `config: {connector: NAME}`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from threading import Lock

from stella.adapters.registry.oci import OciRegistryClient, shared_client
from stella.adapters.secrets import resolve_secret
from stella.domain.errors import ValidationFailed
from stella.domain.integrations import Integration
from stella.domain.references import ImageReference
from stella.services.ports import RegistryConnector, RegistryConnectorFactory, ResolvedImage

ConnectorBuilder = Callable[[str, Integration | None, "ConnectorResources"], RegistryConnector]
_BUILDERS: dict[str, ConnectorBuilder] = {}


def register_connector(name: str, builder: ConnectorBuilder) -> None:
    """Make a registry connector type available to integrations (plugins call this)."""
    _BUILDERS[name] = builder


class ConnectorResources:
    """What connectors of one process share: an HTTP connection pool and bearer tokens."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.http = shared_client()
        self._tokens: dict[str, dict[str, str]] = {}
        self._lock = Lock()

    def tokens_for(self, key: str) -> dict[str, str]:
        """The token store of one registry host and one set of credentials."""
        with self._lock:
            return self._tokens.setdefault(key, {})


def _build_oci(
    host: str, integration: Integration | None, resources: ConnectorResources
) -> RegistryConnector:
    credentials = None
    if integration is not None and integration.credentials_ref:
        user, _, password = resolve_secret(integration.credentials_ref).partition(":")
        credentials = (user, password)
    base_url = integration.url if integration is not None else None
    # tokens are shared only between identical credentials, never across integrations
    key = f"{host}|{integration.id if integration is not None else 'anonymous'}"
    return OciRegistryClient(
        host, base_url, credentials, resources.timeout, resources.http, resources.tokens_for(key)
    )


register_connector("oci", _build_oci)


class VerifiedDigestCache:
    """Digests are content addresses: once verified to exist, the answer cannot change.

    Tags are never cached, since they move.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._items: OrderedDict[str, ResolvedImage] = OrderedDict()
        self._lock = Lock()

    def get(self, key: str) -> ResolvedImage | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: ResolvedImage) -> None:
        with self._lock:
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)


class _CachingConnector:
    def __init__(self, inner: RegistryConnector, cache: VerifiedDigestCache, scope: str) -> None:
        self._inner = inner
        self._cache = cache
        self._scope = scope  # whose credentials verified it: never shared across integrations

    def test_connection(self) -> None:
        self._inner.test_connection()

    def resolve_digest(self, reference: ImageReference) -> ResolvedImage:
        return self._inner.resolve_digest(reference)

    def verify_digest(self, reference: ImageReference) -> ResolvedImage:
        key = f"{self._scope}|{reference.repository}@{reference.digest}"
        cached = self._cache.get(key)
        if cached is None:
            cached = self._inner.verify_digest(reference)
            self._cache.put(key, cached)
        return cached


def connector_factory(
    timeout: float, cache: VerifiedDigestCache | None = None
) -> RegistryConnectorFactory:
    """A factory building the right connector for a registry host and its integration."""
    shared_cache = cache or VerifiedDigestCache()
    resources = ConnectorResources(timeout)

    def build(host: str, integration: Integration | None) -> RegistryConnector:
        name = str(integration.config.get("connector", "oci")) if integration else "oci"
        builder = _BUILDERS.get(name)
        if builder is None:
            known = ", ".join(sorted(_BUILDERS))
            msg = f"unknown connector '{name}'; known: {known}"
            raise ValidationFailed.single("config.connector", msg)
        scope = str(integration.id) if integration is not None else "anonymous"
        return _CachingConnector(builder(host, integration, resources), shared_cache, scope)

    return build
