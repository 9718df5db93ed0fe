"""Pushes small, unique images straight into the loopback registry through its HTTP API.

No image is pulled from anywhere: each image is a config blob plus one tiny layer whose bytes
are chosen by the test, so every push has its own digest. Each function takes an optional
`auth` (an `(user, password)` pair for Basic, or any `httpx.Auth`) for registries that require it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import httpx

Auth = httpx.Auth | tuple[str, str] | None

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _layer(content: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("www/index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def push_blob(registry_url: str, repository: str, data: bytes, *, auth: Auth = None) -> str:
    digest = _digest(data)
    with httpx.Client(base_url=registry_url, timeout=10, auth=auth) as http:
        if http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
            return digest
        start = http.post(f"/v2/{repository}/blobs/uploads/")
        start.raise_for_status()
        location = start.headers["location"]
        sep = "&" if "?" in location else "?"
        done = http.put(
            f"{location}{sep}digest={digest}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        done.raise_for_status()
    return digest


def push_manifest(
    registry_url: str,
    repository: str,
    reference: str,
    manifest: dict,
    media_type: str,
    *,
    auth: Auth = None,
) -> str:
    body = json.dumps(manifest, separators=(",", ":")).encode()
    response = httpx.put(
        f"{registry_url}/v2/{repository}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
        timeout=10,
        auth=auth,
    )
    response.raise_for_status()
    return _digest(body)


def push_image(
    registry_url: str,
    repository: str,
    tag: str,
    content: str,
    media_type: str = DOCKER_MANIFEST,
    *,
    auth: Auth = None,
) -> str:
    """Push a one-layer image tagged `tag`; returns the manifest digest."""
    layer = _layer(content)
    diff_id = _digest(gzip.decompress(layer))
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    config_digest = push_blob(registry_url, repository, config, auth=auth)
    layer_digest = push_blob(registry_url, repository, layer, auth=auth)
    oci = media_type == OCI_MANIFEST
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json"
            if oci
            else "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                if oci
                else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(layer),
                "digest": layer_digest,
            }
        ],
    }
    return push_manifest(registry_url, repository, tag, manifest, media_type, auth=auth)


def push_index(
    registry_url: str, repository: str, tag: str, content: str, *, auth: Auth = None
) -> tuple[str, list[str]]:
    """Push a two-platform OCI index; returns (index digest, platform manifest digests)."""
    children = []
    for arch in ("amd64", "arm64"):
        digest = push_image(
            registry_url, repository, f"{tag}-{arch}", f"{content}/{arch}", OCI_MANIFEST, auth=auth
        )
        size = len(
            httpx.get(
                f"{registry_url}/v2/{repository}/manifests/{digest}",
                headers={"Accept": OCI_MANIFEST},
                timeout=10,
                auth=auth,
            ).content
        )
        children.append((digest, size, arch))
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"architecture": arch, "os": "linux"},
            }
            for digest, size, arch in children
        ],
    }
    index_digest = push_manifest(registry_url, repository, tag, index, OCI_INDEX, auth=auth)
    return index_digest, [c[0] for c in children]
