"""OciRegistryClient against real `docker-registry` processes: anonymous, htpasswd and token auth.

The anonymous registry is the shared loopback one (`registry_url`). The authenticated ones are
started here on free loopback ports, with their storage under pytest's temp dir. The token
service of the Bearer flow is a small JWT issuer served from a thread of this process: a real HTTP
peer that checks Basic credentials and signs with a key whose self-signed certificate is the
registry's `rootcertbundle` (sent in the `x5c` header, which distribution 2.8 verifies).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from stella.adapters.registry.connectors import connector_factory
from stella.adapters.registry.oci import OciRegistryClient
from stella.domain.errors import ImageNotFound, UpstreamUnavailable
from stella.domain.integrations import Integration, IntegrationType
from stella.domain.references import parse_image_reference
from tests.conftest import free_port, service_missing
from tests.support.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, push_image, push_index

try:  # dev dependency; the token-auth fixture reports its absence through service_missing
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    from cryptography.x509.oid import NameOID
except ImportError:
    x509 = None  # type: ignore[assignment]

try:  # dev dependency, used when `htpasswd` (Debian apache2-utils) is not on PATH
    import bcrypt
except ImportError:
    bcrypt = None  # type: ignore[assignment]

pytestmark = pytest.mark.registry

USER = "alice"
PASSWORD = "correct-horse-battery"
SERVICE = "stella-test-registry"
ISSUER = "stella-test-token-issuer"
START_TIMEOUT = 15.0  # seconds for a registry process to answer /v2/


def ref(host: str, repository: str, suffix: str):
    """`suffix` is `:tag` or `@digest`."""
    return parse_image_reference(f"{host}/{repository}{suffix}")


def host_of(url: str) -> str:
    return urlsplit(url).netloc


def missing_digest() -> str:
    return "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


# --- registry processes ------------------------------------------------------------------------


@dataclass
class RegistryProcess:
    """A `docker-registry serve` child on 127.0.0.1; `host` is `127.0.0.1:PORT`."""

    url: str
    log: Path

    @property
    def host(self) -> str:
        return host_of(self.url)


def _log_tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:])


def _wait_until_serving(process: subprocess.Popen, url: str, log: Path) -> None:
    """Any answer to /v2/ (401 included) means the registry is up; bounded in count and time."""
    deadline = time.monotonic() + START_TIMEOUT
    for _ in range(int(START_TIMEOUT / 0.05)):
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited with {process.returncode}:\n{_log_tail(log)}")
        try:
            httpx.get(f"{url}/v2/", timeout=1)
        except httpx.TransportError:
            pass
        else:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    pytest.fail(
        f"docker-registry did not answer {url}/v2/ in {START_TIMEOUT:g}s:\n{_log_tail(log)}"
    )


@pytest.fixture(scope="module")
def start_registry(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[[dict], RegistryProcess]]:
    """Start `docker-registry serve` with the given `auth` section; every child is terminated."""
    binary = shutil.which("docker-registry")
    if binary is None:
        service_missing("the `docker-registry` binary (Debian package docker-registry)")
    processes: list[subprocess.Popen] = []
    # REGISTRY_* variables override the config file; none of the caller's may leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}

    def start(auth: dict) -> RegistryProcess:
        home = tmp_path_factory.mktemp("registry")
        url = f"http://127.0.0.1:{free_port()}"
        config = {
            "version": "0.1",
            "log": {"level": "info", "formatter": "text"},
            "storage": {"filesystem": {"rootdirectory": str(home / "data")}},
            "http": {"addr": host_of(url), "secret": secrets.token_hex(16)},
            "auth": auth,
        }
        config_path = home / "config.yml"
        config_path.write_text(yaml.safe_dump(config))
        log = home / "registry.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [binary, "serve", str(config_path)], stdout=sink, stderr=subprocess.STDOUT, env=env
            )
        processes.append(process)
        _wait_until_serving(process, url, log)
        return RegistryProcess(url, log)

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# --- htpasswd --------------------------------------------------------------------------------


def htpasswd_entry(user: str, password: str) -> str:
    """A bcrypt `user:hash` line: `htpasswd -Bbn` when installed, else the `bcrypt` package.

    Cost 4 (the minimum) keeps the registry's per-request hash check fast.
    """
    tool = shutil.which("htpasswd")
    if tool is not None:
        done = subprocess.run(
            [tool, "-Bbn", "-C", "4", user, password],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
        return done.stdout.strip()
    if bcrypt is not None:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        return f"{user}:{hashed}"
    service_missing(
        "bcrypt hashing for htpasswd (`htpasswd` from Debian apache2-utils, "
        "or the PyPI `bcrypt` package)"
    )
    raise AssertionError("unreachable")  # service_missing skips or fails


@pytest.fixture(scope="module")
def htpasswd_registry(
    start_registry: Callable[[dict], RegistryProcess], tmp_path_factory: pytest.TempPathFactory
) -> RegistryProcess:
    users = tmp_path_factory.mktemp("htpasswd") / "htpasswd"
    users.write_text(htpasswd_entry(USER, PASSWORD) + "\n")
    return start_registry({"htpasswd": {"realm": "stella-test", "path": str(users)}})


# --- token service -----------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class TokenCall:
    """One request the token service answered with a token."""

    user: str
    service: str
    scopes: tuple[str, ...]


@dataclass
class TokenService:
    """Issues registry JWTs (ES256, `x5c` header) to `USER:PASSWORD` over Basic auth.

    Every requested `repository:NAME:...` scope is granted `pull` and `push` on NAME.
    """

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    calls: list[TokenCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls) -> TokenService:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.now(UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(hours=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def mint(self, subject: str, repositories: list[str]) -> str:
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": [
                {"type": "repository", "name": name, "actions": ["pull", "push"]}
                for name in repositories
            ],
        }
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        return signing_input + "." + _b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def answer(self, query: str, authorization: str | None) -> tuple[int, dict]:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if authorization is None or not secrets.compare_digest(authorization, expected):
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]}
        params = parse_qs(query)
        scopes = tuple(params.get("scope", []))
        with self.lock:
            self.calls.append(TokenCall(USER, params.get("service", [""])[0], scopes))
        names = [
            s.split(":")[1] for s in scopes if s.startswith("repository:") and s.count(":") == 2
        ]
        token = self.mint(USER, names)
        return 200, {"token": token, "access_token": token, "expires_in": 300}

    def calls_for(self, scope: str) -> list[TokenCall]:
        with self.lock:
            return [call for call in self.calls if scope in call.scopes]


class _TokenHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    token_service: TokenService


class _TokenHandler(BaseHTTPRequestHandler):
    server: _TokenHTTPServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/token":
            status, body = self.server.token_service.answer(
                parts.query, self.headers.get("Authorization")
            )
            self._reply(status, "application/json", json.dumps(body).encode())
        elif parts.path == "/login":  # what a realm pointing at a web sign-in page answers
            self._reply(200, "text/html", b"<html><body>Sign in</body></html>")
        else:
            self._reply(404, "text/plain", b"not found")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not every token request."""


@dataclass
class TokenRegistry:
    registry: RegistryProcess
    tokens: TokenService
    token_url: str

    def push_auth(self, repository: str) -> httpx.Auth:
        return BearerToken(self.tokens.mint("pusher", [repository]))


class BearerToken(httpx.Auth):
    """Sends one already-issued registry token (for pushes)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


@pytest.fixture(scope="module")
def token_server() -> Iterator[tuple[TokenService, str]]:
    if x509 is None:
        service_missing("the `cryptography` package (dev dependency) for signing registry tokens")
    server = _TokenHTTPServer(("127.0.0.1", 0), _TokenHandler)
    server.token_service = TokenService.create()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.token_service, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _token_auth(realm: str, bundle: Path) -> dict:
    return {
        "token": {
            "realm": realm,
            "service": SERVICE,
            "issuer": ISSUER,
            "rootcertbundle": str(bundle),
        }
    }


@pytest.fixture(scope="module")
def token_bundle(
    token_server: tuple[TokenService, str], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    bundle = tmp_path_factory.mktemp("token") / "root.pem"
    bundle.write_bytes(token_server[0].certificate_pem())
    return bundle


@pytest.fixture(scope="module")
def token_registry(
    start_registry: Callable[[dict], RegistryProcess],
    token_server: tuple[TokenService, str],
    token_bundle: Path,
) -> TokenRegistry:
    tokens, token_url = token_server
    registry = start_registry(_token_auth(f"{token_url}/token", token_bundle))
    return TokenRegistry(registry, tokens, token_url)


# === anonymous loopback registry ===============================================================

PUSHES = [
    pytest.param(
        lambda url, repo: push_image(url, repo, "v1", "docker"), DOCKER_MANIFEST, id="docker-v2"
    ),
    pytest.param(
        lambda url, repo: push_image(url, repo, "v1", "oci", OCI_MANIFEST),
        OCI_MANIFEST,
        id="oci-manifest",
    ),
    pytest.param(
        lambda url, repo: push_index(url, repo, "v1", "index")[0], OCI_INDEX, id="oci-index"
    ),
]


@pytest.mark.parametrize(("push", "media_type"), PUSHES)
def test_resolves_tag_and_verifies_digest(registry_url, repository, push, media_type):
    pushed = push(registry_url, repository)
    host = host_of(registry_url)
    client = OciRegistryClient(host)

    resolved = client.resolve_digest(ref(host, repository, ":v1"))
    assert (resolved.digest, resolved.media_type) == (pushed, media_type)

    verified = client.verify_digest(ref(host, repository, f"@{pushed}"))
    assert (verified.digest, verified.media_type) == (pushed, media_type)


def test_index_platform_manifests_verify_by_digest(registry_url, repository):
    _, platforms = push_index(registry_url, repository, "multi", "platforms")
    host = host_of(registry_url)
    client = OciRegistryClient(host)
    for digest in platforms:
        assert client.verify_digest(ref(host, repository, f"@{digest}")).digest == digest


def test_moved_tag_resolves_to_its_new_digest_through_the_connector(registry_url, repository):
    """The connector caches verified digests, never tags."""
    host = host_of(registry_url)
    connector = connector_factory(timeout=5)(host, None)
    first = push_image(registry_url, repository, "stable", "first")
    assert connector.resolve_digest(ref(host, repository, ":stable")).digest == first
    second = push_image(registry_url, repository, "stable", "second")
    assert second != first
    assert connector.resolve_digest(ref(host, repository, ":stable")).digest == second


MISSING = [
    pytest.param("resolve_digest", ":absent", "tag absent not found", id="missing-tag"),
    pytest.param(
        "resolve_digest",
        ":sha-0c1d2e3",
        "tag sha-0c1d2e3 not found",
        id="missing-tag-starting-with-sha",
    ),
    pytest.param("verify_digest", "@MISSING", "digest sha256:", id="missing-digest"),
]


@pytest.mark.parametrize("existing_repository", [True, False], ids=["known-repo", "unknown-repo"])
@pytest.mark.parametrize(("operation", "suffix", "message"), MISSING)
def test_missing_tag_or_digest_is_image_not_found(
    registry_url, repository, existing_repository, operation, suffix, message
):
    if existing_repository:
        push_image(registry_url, repository, "v1", "present")
    host = host_of(registry_url)
    reference = ref(host, repository, suffix.replace("MISSING", missing_digest()))

    with pytest.raises(ImageNotFound) as caught:
        getattr(OciRegistryClient(host), operation)(reference)
    assert message in str(caught.value)
    assert f"{host}/{repository}" in str(caught.value)


@pytest.mark.parametrize(
    ("operation", "suffix"),
    [
        ("test_connection", None),
        ("resolve_digest", ":v1"),
        ("verify_digest", "@sha256:" + "0" * 64),
    ],
    ids=["test-connection", "resolve-digest", "verify-digest"],
)
def test_closed_loopback_port_is_upstream_unavailable_naming_host_and_port(operation, suffix):
    host = f"127.0.0.1:{free_port()}"  # bound, then released: nothing listens there
    client = OciRegistryClient(host, timeout=3)
    args = [] if suffix is None else [ref(host, "app/api", suffix)]

    with pytest.raises(UpstreamUnavailable) as caught:
        getattr(client, operation)(*args)
    assert f"registry {host} is unreachable" in str(caught.value)


def test_connection_to_anonymous_registry_succeeds(registry_url):
    assert OciRegistryClient(host_of(registry_url)).test_connection() is None


# === htpasswd (Basic) registry ================================================================

BASIC_FAILURES = [
    pytest.param(None, "needs credentials; set credentials_ref", id="no-credentials"),
    pytest.param((USER, "wrong-password"), "refused the configured credentials", id="wrong-pw"),
    pytest.param(("mallory", PASSWORD), "refused the configured credentials", id="unknown-user"),
]


@pytest.mark.parametrize(("credentials", "message"), BASIC_FAILURES)
@pytest.mark.parametrize("operation", ["test_connection", "resolve_digest"])
def test_basic_auth_registry_rejects_missing_or_wrong_credentials(
    htpasswd_registry, repository, credentials, message, operation
):
    host = htpasswd_registry.host
    client = OciRegistryClient(host, credentials=credentials, timeout=5)
    args = [] if operation == "test_connection" else [ref(host, repository, ":v1")]

    with pytest.raises(UpstreamUnavailable) as caught:
        getattr(client, operation)(*args)
    assert str(caught.value) == f"registry {host} {message}"


def test_basic_auth_registry_resolves_with_the_right_credentials(htpasswd_registry, repository):
    registry = htpasswd_registry
    unauthenticated = httpx.get(f"{registry.url}/v2/", timeout=5)
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["www-authenticate"].startswith("Basic ")

    pushed = push_image(registry.url, repository, "v1", "basic", auth=(USER, PASSWORD))
    client = OciRegistryClient(registry.host, credentials=(USER, PASSWORD), timeout=5)

    client.test_connection()
    assert client.resolve_digest(ref(registry.host, repository, ":v1")).digest == pushed
    assert client.verify_digest(ref(registry.host, repository, f"@{pushed}")).digest == pushed
    with pytest.raises(ImageNotFound):
        client.resolve_digest(ref(registry.host, repository, ":absent"))

    index, _ = push_index(registry.url, repository, "multi", "basic", auth=(USER, PASSWORD))
    resolved = client.resolve_digest(ref(registry.host, repository, ":multi"))
    assert (resolved.digest, resolved.media_type) == (index, OCI_INDEX)


def test_basic_auth_credentials_come_from_the_integration_credentials_ref(
    htpasswd_registry, repository, monkeypatch
):
    registry = htpasswd_registry
    pushed = push_image(registry.url, repository, "v1", "via-ref", auth=(USER, PASSWORD))
    monkeypatch.setenv("STELLA_SECRET_TEST_REGISTRY_CREDENTIALS", f"{USER}:{PASSWORD}")
    now = datetime.now(UTC)
    integration = Integration(
        id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        type=IntegrationType.REGISTRY,
        name="htpasswd-registry",
        url=registry.url,
        credentials_ref="env:STELLA_SECRET_TEST_REGISTRY_CREDENTIALS",
        webhook_secret_ref=None,
        webhook_secret_hash=None,
        config={},
        created_at=now,
        updated_at=now,
    )
    connector = connector_factory(timeout=5)(integration.host, integration)

    connector.test_connection()
    assert connector.resolve_digest(ref(registry.host, repository, ":v1")).digest == pushed


# === token (Bearer) registry ==================================================================


def test_bearer_flow_gets_a_pull_token_with_the_credentials_and_reuses_it(
    token_registry, repository
):
    registry, tokens = token_registry.registry, token_registry.tokens
    challenge = httpx.head(f"{registry.url}/v2/{repository}/manifests/v1", timeout=5)
    assert challenge.status_code == 401
    assert challenge.headers["www-authenticate"].startswith(
        f'Bearer realm="{token_registry.token_url}/token",service="{SERVICE}"'
    )
    pushed = push_image(
        registry.url, repository, "v1", "bearer", auth=token_registry.push_auth(repository)
    )
    scope = f"repository:{repository}:pull"
    assert tokens.calls_for(scope) == []  # the push used a token minted directly

    client = OciRegistryClient(registry.host, credentials=(USER, PASSWORD), timeout=5)
    assert client.resolve_digest(ref(registry.host, repository, ":v1")).digest == pushed
    assert tokens.calls_for(scope) == [TokenCall(USER, SERVICE, (scope,))]

    # Same client, same scope: the cached token is sent and the token service is not asked again.
    assert client.verify_digest(ref(registry.host, repository, f"@{pushed}")).digest == pushed
    assert client.resolve_digest(ref(registry.host, repository, ":v1")).digest == pushed
    assert len(tokens.calls_for(scope)) == 1


def test_bearer_flow_answers_the_scopeless_challenge_of_test_connection(token_registry):
    client = OciRegistryClient(token_registry.registry.host, credentials=(USER, PASSWORD))
    assert client.test_connection() is None


def test_bearer_flow_reports_a_missing_tag_as_image_not_found(token_registry, repository):
    client = OciRegistryClient(token_registry.registry.host, credentials=(USER, PASSWORD))
    with pytest.raises(ImageNotFound, match="tag absent not found"):
        client.resolve_digest(ref(token_registry.registry.host, repository, ":absent"))


@pytest.mark.parametrize(
    "credentials",
    [(USER, "wrong-password"), ("mallory", PASSWORD), None],
    ids=["wrong-password", "unknown-user", "no-credentials"],
)
def test_bearer_flow_with_credentials_the_token_service_refuses_is_upstream_unavailable(
    token_registry, repository, credentials
):
    registry = token_registry.registry
    push_image(registry.url, repository, "v1", "refused", auth=token_registry.push_auth(repository))
    client = OciRegistryClient(registry.host, credentials=credentials, timeout=5)

    with pytest.raises(UpstreamUnavailable) as caught:
        client.resolve_digest(ref(registry.host, repository, ":v1"))
    assert str(caught.value) == f"token service of registry {registry.host} answered 401"
    assert token_registry.tokens.calls_for(f"repository:{repository}:pull") == []


def test_realm_answering_a_non_json_page_is_upstream_unavailable(
    start_registry, token_server, token_bundle, repository
):
    _, token_url = token_server
    registry = start_registry(_token_auth(f"{token_url}/login", token_bundle))
    client = OciRegistryClient(registry.host, credentials=(USER, PASSWORD), timeout=5)

    with pytest.raises(UpstreamUnavailable, match="token service"):
        client.resolve_digest(ref(registry.host, repository, ":v1"))
