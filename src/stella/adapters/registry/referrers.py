"""OCI referrers: the artifacts (SBOMs, VEX, attestations) whose manifest names an image as
its `subject`.

The referrers API (`GET /v2/<name>/referrers/<digest>`, OCI distribution 1.1) is asked first.
A registry without it answers 404, and then the referrers tag schema is read instead: an OCI
index tagged `sha256-<hex>` that clients pushing artifacts maintain next to the image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx

from stella.adapters.registry.oci import OciRegistryClient, shared_client
from stella.adapters.secrets import resolve_secret
from stella.domain.errors import ImageNotFound, UpstreamUnavailable
from stella.domain.integrations import Integration
from stella.services.attachments import ReferrerListing, ReferrerSource

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Answers of registries that do not implement the referrers API (the spec names 404).
_NO_REFERRERS_API = {400, 404, 405, 501}


def referrers_tag(digest: str) -> str:
    """The tag schema's tag for `digest`: `sha256:<hex>` → `sha256-<hex>`."""
    algorithm, _, encoded = digest.partition(":")
    return f"{algorithm[:32]}-{encoded[:64]}"


class OciReferrersClient(OciRegistryClient):
    """Reads referrer lists, manifests and blobs of one registry host."""

    def referrers(self, path: str, digest: str) -> ReferrerListing:
        scope = f"repository:{path}:pull"
        response = self._request("GET", f"/v2/{path}/referrers/{digest}", scope)
        if response.status_code == 200 and _is_index(response):
            return ReferrerListing("referrers-api", self._descriptors(response, "referrers list"))
        if response.status_code not in _NO_REFERRERS_API and response.status_code != 200:
            self._refused(response, f"the referrers of {path}@{digest}")
        tagged = self._request("GET", f"/v2/{path}/manifests/{referrers_tag(digest)}", scope)
        if tagged.status_code == 404:
            return ReferrerListing("referrers-tag", [])
        if tagged.status_code != 200:
            self._refused(tagged, f"the referrers tag of {path}@{digest}")
        return ReferrerListing("referrers-tag", self._descriptors(tagged, "referrers tag index"))

    def manifest(self, path: str, digest: str) -> dict[str, Any]:
        """The manifest `digest` of `path`, checked against its digest; ImageNotFound if gone."""
        response = self._request("GET", f"/v2/{path}/manifests/{digest}", f"repository:{path}:pull")
        if response.status_code == 404:
            msg = f"manifest {digest} not found in {self._host}/{path}"
            raise ImageNotFound(msg)
        if response.status_code != 200:
            self._refused(response, f"manifest {path}@{digest}")
        body = self._verified(response.content, digest, f"manifest {path}@{digest}")
        document = _json(body)
        if not isinstance(document, dict):
            msg = f"registry {self._host} answered manifest {digest} that is not a JSON object"
            raise UpstreamUnavailable(msg)
        return document

    def blob(self, path: str, digest: str, max_bytes: int) -> bytes:
        """The blob `digest` of `path` (at most `max_bytes`), checked; ImageNotFound if gone."""
        scope = f"repository:{path}:pull"
        response = self._request("GET", f"/v2/{path}/blobs/{digest}", scope)
        if response.status_code in {301, 302, 303, 307, 308} and "location" in response.headers:
            # storage back ends hand out pre-signed URLs: follow once, without our credentials
            location = str(response.url.join(response.headers["location"]))
            try:
                response = shared_client().get(location, timeout=self._timeout)
            except httpx.HTTPError as exc:
                msg = f"blob storage of registry {self._host} is unreachable: {type(exc).__name__}"
                raise UpstreamUnavailable(msg) from None
        if response.status_code == 404:
            msg = f"blob {digest} not found in {self._host}/{path}"
            raise ImageNotFound(msg)
        if response.status_code != 200:
            self._refused(response, f"blob {path}@{digest}")
        if len(response.content) > max_bytes:
            msg = f"blob {digest} of {path} is larger than {max_bytes} bytes"
            raise UpstreamUnavailable(msg)
        return self._verified(response.content, digest, f"blob {path}@{digest}")

    def _descriptors(self, response: httpx.Response, what: str) -> list[dict[str, Any]]:
        document = _json(response.content[:MAX_MANIFEST_BYTES])
        manifests = document.get("manifests") if isinstance(document, dict) else None
        if not isinstance(manifests, list):
            msg = f"registry {self._host} answered a {what} that is not an OCI index"
            raise UpstreamUnavailable(msg)
        return [m for m in manifests if isinstance(m, dict) and isinstance(m.get("digest"), str)]

    def _verified(self, content: bytes, digest: str, what: str) -> bytes:
        algorithm, _, expected = digest.partition(":")
        if algorithm != "sha256" or hashlib.sha256(content).hexdigest() != expected:
            msg = f"registry {self._host} answered {what} with content of another digest"
            raise UpstreamUnavailable(msg)
        return content

    def _refused(self, response: httpx.Response, what: str) -> None:
        msg = f"registry {self._host} answered {response.status_code} for {what}"
        raise UpstreamUnavailable(msg)


def _is_index(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").split(";")[0].strip() in {
        OCI_INDEX,
        "application/json",
    }


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def referrer_source_factory(
    timeout: float,
) -> Callable[[str, Integration | None], ReferrerSource]:
    """Builds a referrers client for a registry host, with its integration's credentials."""

    def build(host: str, integration: Integration | None) -> ReferrerSource:
        credentials = None
        if integration is not None and integration.credentials_ref:
            user, _, password = resolve_secret(integration.credentials_ref).partition(":")
            credentials = (user, password)
        base_url = integration.url if integration is not None else None
        return OciReferrersClient(host, base_url, credentials, timeout)

    return build
