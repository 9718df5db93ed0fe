"""OCI distribution API client: resolve tags to digests, verify digests, test connections.

Every manifest request sends all four manifest media types in `Accept`; without them a
registry converts the manifest to schema 1 and answers a different digest. Authentication
follows the registry's challenge: Bearer (token service) or Basic.
"""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import urlsplit

import httpx

from stella.domain.errors import ImageNotFound, UpstreamUnavailable
from stella.domain.references import ImageReference
from stella.services.ports import ResolvedImage

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
_CHALLENGE_PARAM_RE = re.compile(r'(\w+)="([^"]*)"')
_IPV4_LOOPBACK_RE = re.compile(r"^127(?:\.\d{1,3}){3}$")


_SHARED: list[httpx.Client] = []


def shared_client() -> httpx.Client:
    """One pooled client for the process, for clients built without one."""
    if not _SHARED:
        _SHARED.append(httpx.Client(limits=httpx.Limits(max_connections=50)))
    return _SHARED[0]


def _basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def is_loopback(host: str) -> bool:
    """True for 127.x.y.z, localhost and [::1] (with or without a port), nothing else."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
    if host.startswith("[") is False and host.count(":") > 1:
        name = host  # a bare IPv6 address without brackets
    return name in {"localhost", "[::1]", "::1"} or bool(_IPV4_LOOPBACK_RE.match(name))


def default_scheme(host: str) -> str:
    """Plain HTTP only for loopback registries; TLS everywhere else (credentials included)."""
    return "http" if is_loopback(host) else "https"


class OciRegistryClient:
    """One registry host, optionally with `user:password` credentials (already resolved)."""

    def __init__(
        self,
        host: str,
        base_url: str | None = None,
        credentials: tuple[str, str] | None = None,
        timeout: float = 10.0,
        http: httpx.Client | None = None,
        tokens: dict[str, str] | None = None,
    ) -> None:
        self._host = host
        self._base = (base_url or f"{default_scheme(host)}://{host}").rstrip("/")
        self._credentials = credentials
        self._timeout = timeout
        # A shared client keeps connections (and TLS sessions) alive across calls; building a
        # client per call costs ~20 ms of TLS context setup alone.
        self._http = http or shared_client()
        # scope → bearer token; shared by the factory between clients of the same credentials
        self._bearer: dict[str, str] = {} if tokens is None else tokens

    def test_connection(self) -> None:
        response = self._request("GET", "/v2/", scope=None)
        if response.status_code != 200:
            msg = f"registry {self._host} answered {response.status_code} to GET /v2/"
            raise UpstreamUnavailable(msg)

    def resolve_digest(self, reference: ImageReference) -> ResolvedImage:
        if reference.tag is None:
            msg = "resolve_digest needs a tag"
            raise ValueError(msg)
        return self._manifest(reference, reference.tag)

    def verify_digest(self, reference: ImageReference) -> ResolvedImage:
        if reference.digest is None:
            msg = "verify_digest needs a digest"
            raise ValueError(msg)
        resolved = self._manifest(reference, reference.digest)
        if resolved.digest != reference.digest:
            msg = (
                f"registry {self._host} returned digest {resolved.digest} "
                f"for {reference.repository}@{reference.digest}"
            )
            raise UpstreamUnavailable(msg)
        return resolved

    def _manifest(self, reference: ImageReference, tag_or_digest: str) -> ResolvedImage:
        path = reference.repository.path
        scope = f"repository:{path}:pull"
        url = f"/v2/{path}/manifests/{tag_or_digest}"
        response = self._request("HEAD", url, scope)
        if response.status_code == 200 and not response.headers.get("docker-content-digest"):
            response = self._request("GET", url, scope)  # old registries omit the header on HEAD
        if response.status_code == 404:
            what = "digest" if tag_or_digest == reference.digest else "tag"
            msg = f"{what} {tag_or_digest} not found in {reference.repository}"
            raise ImageNotFound(msg)
        if response.status_code != 200:
            msg = f"registry {self._host} answered {response.status_code} for {reference}"
            raise UpstreamUnavailable(msg)
        digest = response.headers.get("docker-content-digest")
        if not digest:
            digest = "sha256:" + hashlib.sha256(response.content).hexdigest()
        media_type = response.headers.get("content-type", "").split(";")[0] or None
        return ResolvedImage(digest=digest, media_type=media_type)

    def _request(self, method: str, path: str, scope: str | None) -> httpx.Response:
        headers = {"Accept": ", ".join(MANIFEST_MEDIA_TYPES)}
        token = self._bearer.get(scope or "")
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._send(method, path, headers)
        challenge = response.headers.get("www-authenticate", "")
        if response.status_code == 401 and challenge:
            headers["Authorization"] = self._answer_challenge(challenge, scope)
            response = self._send(method, path, headers)
            if response.status_code == 401:
                msg = f"registry {self._host} refused the configured credentials"
                raise UpstreamUnavailable(msg)
        return response

    def _send(self, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
        try:
            return self._http.request(
                method, self._base + path, headers=headers, timeout=self._timeout
            )
        except httpx.TimeoutException:
            msg = f"registry {self._host} did not answer within {self._timeout:g}s"
            raise UpstreamUnavailable(msg) from None
        except httpx.HTTPError as exc:
            msg = f"registry {self._host} is unreachable: {type(exc).__name__}"
            raise UpstreamUnavailable(msg) from None

    def _answer_challenge(self, challenge: str, scope: str | None) -> str:
        kind, _, params_text = challenge.partition(" ")
        if kind.lower() == "basic":
            if self._credentials is None:
                msg = f"registry {self._host} needs credentials; set credentials_ref"
                raise UpstreamUnavailable(msg)
            return _basic_header(*self._credentials)
        params = dict(_CHALLENGE_PARAM_RE.findall(params_text))
        realm = params.pop("realm", "")
        if urlsplit(realm).scheme not in {"http", "https"}:
            msg = f"registry {self._host} sent an unusable auth challenge"
            raise UpstreamUnavailable(msg)
        realm_url = urlsplit(realm)
        cleartext = realm_url.scheme == "http" and not is_loopback(realm_url.netloc)
        if self._credentials and cleartext and realm_url.netloc != urlsplit(self._base).netloc:
            # a registry must not be able to collect our credentials over plain HTTP elsewhere
            msg = (
                f"registry {self._host} asks for credentials at {realm_url.netloc} over plain "
                "HTTP; they are only sent over HTTPS"
            )
            raise UpstreamUnavailable(msg)
        if scope:
            params["scope"] = scope
        auth = httpx.BasicAuth(*self._credentials) if self._credentials else None
        try:
            reply = self._http.get(realm, params=params, auth=auth, timeout=self._timeout)
        except httpx.HTTPError as exc:
            msg = f"token service of registry {self._host} is unreachable: {type(exc).__name__}"
            raise UpstreamUnavailable(msg) from None
        if reply.status_code != 200:
            msg = f"token service of registry {self._host} answered {reply.status_code}"
            raise UpstreamUnavailable(msg)
        try:
            body = reply.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not (body.get("token") or body.get("access_token")):
            msg = f"token service of registry {self._host} did not answer with a token"
            raise UpstreamUnavailable(msg)
        token = str(body.get("token") or body.get("access_token"))
        self._bearer[scope or ""] = token
        return f"Bearer {token}"
