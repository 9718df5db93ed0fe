"""SBOMs, VEX, scan reports and attestations attached to image digests: uploads through the
API, byte-exact storage, every rejection as a problem document, the CLI against a live server,
and referrer discovery in the real registry."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid

import httpx
import pytest
import yaml

from tests.conftest import (
    REGISTRY,
    create_database,
    drop_database,
    free_port,
    service_missing,
)
from tests.support import documents as docs
from tests.support.live import STELLA, start_server
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, push_blob, push_image, push_manifest

EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"


def new_digest() -> str:
    return "sha256:" + hashlib.sha256(uuid.uuid4().bytes).hexdigest()


def upload(api, path, content, digest, fmt=None, **kwargs):
    params = {"digest": digest} | ({"format": fmt} if fmt else {})
    headers = {"Content-Type": "application/json"}
    return api.post(path, content=content, params=params, headers=headers, **kwargs)


UPLOADS = [
    ("/sboms", lambda d: docs.cyclonedx(), "sbom", "cyclonedx", "application/vnd.cyclonedx+json"),
    ("/sboms", lambda d: docs.spdx2(), "sbom", "spdx", "application/spdx+json"),
    ("/sboms", lambda d: docs.spdx3(), "sbom", "spdx", "application/spdx+json"),
    ("/vex", docs.openvex, "vex", "openvex", "application/openvex+json"),
    (
        "/vex",
        lambda d: docs.cyclonedx_vex(),
        "vex",
        "cyclonedx-vex",
        "application/vnd.cyclonedx+json",
    ),
    ("/attestations", docs.in_toto, "attestation", "in-toto", "application/vnd.in-toto+json"),
    ("/attestations", docs.dsse, "attestation", "dsse", "application/vnd.dsse.envelope.v1+json"),
    ("/attachments", lambda d: docs.trivy(), "scan", "trivy", None),
    ("/attachments", lambda d: docs.grype(), "scan", "grype", None),
    ("/attachments", lambda d: docs.sarif(), "scan", "sarif", "application/sarif+json"),
    ("/attachments", lambda d: docs.native(), "scan", "native", None),
]


@pytest.mark.parametrize(
    ("path", "build", "kind", "fmt", "media_type"),
    UPLOADS,
    ids=[f"{u[0][1:]}-{u[3]}-{i}" for i, u in enumerate(UPLOADS)],
)
def test_each_format_is_detected_stored_byte_exact_and_audited(
    api, path, build, kind, fmt, media_type
):
    digest = new_digest()
    content = docs.dumps(build(digest))
    response = upload(api, path, content, digest)
    assert response.status_code == 201, response.text
    attachment = response.json()
    assert (attachment["kind"], attachment["format"], attachment["subject_digest"]) == (
        kind,
        fmt,
        digest,
    )
    assert attachment["digest"] == "sha256:" + hashlib.sha256(content).hexdigest()
    assert (attachment["size"], attachment["source"], attachment["source_ref"]) == (
        len(content),
        "upload",
        None,
    )
    if media_type:
        assert attachment["media_type"] == media_type
    assert api.get(f"/attachments/{attachment['id']}").json() == attachment
    body = api.get(f"/attachments/{attachment['id']}/content")
    assert body.status_code == 200
    assert body.content == content
    assert body.headers["content-type"].startswith(attachment["media_type"])
    audit = api.get("/audit-events", params={"action": "attachment.added"}).json()["items"]
    assert audit[0]["resource_id"] == attachment["id"]
    assert audit[0]["details"]["subject_digest"] == digest


def test_the_format_can_be_named_instead_of_detected(api):
    digest = new_digest()
    response = upload(api, "/sboms", docs.dumps(docs.cyclonedx()), digest, "cyclonedx")
    assert response.status_code == 201, response.text
    response = upload(api, "/attachments", docs.dumps(docs.sarif()), digest, "sarif")
    assert (response.status_code, response.json()["kind"]) == (201, "scan")


def test_re_uploading_the_same_document_is_idempotent(api):
    digest = new_digest()
    content = docs.dumps(docs.cyclonedx())
    first = upload(api, "/sboms", content, digest)
    again = upload(api, "/sboms", content, digest)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    other_image = upload(api, "/sboms", content, new_digest())
    assert other_image.status_code == 201
    assert other_image.json()["id"] != first.json()["id"]
    listed = api.get("/attachments", params={"digest": digest}).json()
    assert [a["id"] for a in listed["items"]] == [first.json()["id"]]
    audit = api.get("/audit-events", params={"action": "attachment.added"}).json()["items"]
    assert len(audit) == 2


BAD_INPUTS = [
    ("malformed-json", "/sboms", b'{\n  "bomFormat": "CycloneDX"\n  "specVersion": "1.6"\n}', None,
     "document", "not JSON: Expecting ',' delimiter: line 3 column 3"),
    ("truncated-json", "/sboms", docs.dumps(docs.cyclonedx())[:-40], None,
     "document", "not JSON: "),
    ("empty-body", "/sboms", b"", None, "document", "not JSON: Expecting value: line 1 column 1"),
    ("not-cyclonedx", "/sboms", docs.dumps(docs.cyclonedx() | {"bomFormat": "cdx"}), None,
     "document", "not CycloneDX: bomFormat must be 'CycloneDX'"),
    ("not-spdx", "/sboms", docs.dumps(docs.cyclonedx()), "spdx",
     "document", "not SPDX: spdxVersion missing"),
    ("sbom-not-recognised", "/sboms", b'{"name": "x"}', None,
     "document", "format not recognised; accepted: cyclonedx, spdx"),
    ("invalid-openvex", "/vex", docs.dumps(docs.openvex(new_digest(), status="maybe")), None,
     "document", "not OpenVEX: statements[0].status must be one of"),
    ("openvex-without-justification", "/vex",
     docs.dumps(docs.openvex(new_digest(), justification=None)), None,
     "document", "not OpenVEX: statements[0]: status not_affected needs a justification"),
    ("sbom-sent-as-attestation", "/attestations", docs.dumps(docs.cyclonedx()), None,
     "document", "format not recognised; accepted: in-toto, dsse"),
    ("unknown-format", "/sboms", docs.dumps(docs.cyclonedx()), "syft-table",
     "format", "unknown format 'syft-table'; accepted: cyclonedx, spdx"),
    ("format-of-another-kind", "/vex", docs.dumps(docs.cyclonedx()), "spdx",
     "format", "unknown format 'spdx'; accepted: cyclonedx-vex, openvex"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("path", "content", "fmt", "field", "reason"),
    [b[1:] for b in BAD_INPUTS],
    ids=[b[0] for b in BAD_INPUTS],
)
def test_bad_documents_are_422_naming_the_field_and_the_reason(
    api, path, content, fmt, field, reason
):
    digest = new_digest()
    response = upload(api, path, content, digest, fmt)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert error["message"].startswith(reason), error["message"]
    assert api.get("/attachments", params={"digest": digest}).json()["items"] == []


@pytest.mark.parametrize(
    "digest",
    ["sha256:abc", "SHA256:" + "a" * 64, "sha256:" + "A" * 64, "md5:" + "a" * 32, ""],
    ids=["short", "upper-algorithm", "upper-hex", "md5", "empty"],
)
def test_an_invalid_digest_is_422_naming_digest(api, digest):
    response = upload(api, "/sboms", docs.dumps(docs.cyclonedx()), digest)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "digest"
    listed = api.get("/attachments", params={"digest": digest})
    assert listed.status_code == 422
    assert listed.json()["errors"][0]["field"] == "digest"


def test_a_missing_digest_is_422(api):
    response = api.post("/sboms", content=docs.dumps(docs.cyclonedx()))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "digest"


def test_documents_may_exceed_the_general_body_limit_up_to_the_attachment_limit(api, container):
    """The test server allows 64 KiB bodies in general; SBOM uploads get the attachment limit."""
    big = docs.dumps(docs.cyclonedx(components=1500))
    assert len(big) > container.settings.max_body_bytes
    assert upload(api, "/sboms", big, new_digest()).status_code == 201
    elsewhere = api.post("/apply", content=big, headers={"Content-Type": "application/json"})
    assert elsewhere.status_code == 413
    assert "STELLA_MAX_BODY_BYTES" in elsewhere.json()["detail"]


def test_an_oversized_document_is_413_naming_the_limit(api, container):
    limit = container.settings.attachment_max_bytes
    content = b'{"bomFormat": "CycloneDX", "pad": "' + b"x" * limit + b'"}'
    response = upload(api, "/sboms", content, new_digest())
    assert response.status_code == 413
    problem = response.json()
    assert problem["status"] == 413
    assert f"{limit} bytes" in problem["detail"]
    assert "STELLA_ATTACHMENT_MAX_BYTES" in problem["detail"]


def test_listing_pages_filters_by_kind_and_never_shows_other_tenants(api, other_tenant):
    digest = new_digest()
    ids = [upload(api, "/sboms", docs.dumps(docs.cyclonedx(name=f"v{i}")), digest).json()["id"]
           for i in range(3)]  # fmt: skip
    vex = upload(api, "/vex", docs.dumps(docs.openvex(digest)), digest).json()
    first = api.get("/attachments", params={"digest": digest, "limit": 2}).json()
    assert len(first["items"]) == 2
    second = api.get(
        "/attachments", params={"digest": digest, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert second["next_cursor"] is None
    seen = [a["id"] for a in first["items"] + second["items"]]
    assert sorted(seen) == sorted([*ids, vex["id"]])
    assert all("content" not in a for a in first["items"])
    only_vex = api.get("/attachments", params={"digest": digest, "kind": "vex"}).json()
    assert [a["id"] for a in only_vex["items"]] == [vex["id"]]
    assert other_tenant.get("/attachments", params={"digest": digest}).json()["items"] == []
    assert other_tenant.get(f"/attachments/{vex['id']}").status_code == 404
    assert other_tenant.get(f"/attachments/{vex['id']}/content").status_code == 404
    assert api.get("/attachments/not-an-id").status_code == 404
    assert api.get(f"/attachments/{uuid.uuid4()}/content").status_code == 404


def test_viewers_read_but_only_releasers_upload(api):
    digest = new_digest()
    viewer = api.user_token("viewer")
    releaser = api.user_token("releaser")
    content = docs.dumps(docs.cyclonedx())
    denied = api.post("/sboms", content=content, params={"digest": digest}, token=viewer)
    assert denied.status_code == 403
    allowed = api.post("/sboms", content=content, params={"digest": digest}, token=releaser)
    assert allowed.status_code == 201
    assert allowed.json()["created_by"].startswith("releaser-")
    listed = api.get("/attachments", params={"digest": digest}, token=viewer)
    assert [a["id"] for a in listed.json()["items"]] == [allowed.json()["id"]]


# --- Referrers ---------------------------------------------------------------------------------


def push_referrer(registry_url, repository, subject, artifact_type, content, layer_type=None):
    """An OCI artifact manifest whose `subject` is the image; returns (manifest digest, size)."""
    empty = push_blob(registry_url, repository, b"{}")
    blob = push_blob(registry_url, repository, content)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": empty, "size": 2},
        "layers": [
            {"mediaType": layer_type or artifact_type, "digest": blob, "size": len(content)}
        ],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject[0], "size": subject[1]},
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    digest = push_manifest(registry_url, repository, f"ref-{uuid.uuid4().hex[:8]}", manifest,
                           OCI_MANIFEST)  # fmt: skip
    return {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": len(body),
        "artifactType": artifact_type,
    }


def push_referrers_tag(registry_url, repository, subject_digest, descriptors):
    """The referrers tag schema: an OCI index tagged `sha256-<hex>` listing the referrers."""
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    tag = subject_digest.replace(":", "-")
    push_manifest(registry_url, repository, tag, index, OCI_INDEX)


def push_image_with_size(registry_url, repository, content):
    digest = push_image(registry_url, repository, "v1", content, OCI_MANIFEST)
    size = len(
        httpx.get(
            f"{registry_url}/v2/{repository}/manifests/{digest}",
            headers={"Accept": OCI_MANIFEST},
            timeout=10,
        ).content
    )
    return digest, size


def release_of(api, registry, repository, name="api"):
    component = api.post("/components", {"name": name, "repository": f"{registry}/{repository}"})
    assert component.status_code == 201, component.text
    release = api.post("/releases", {"name": name, "version": "1.0.0", "components": {name: "v1"}})
    assert release.status_code == 201, release.text
    return release.json()


def test_referrers_are_discovered_through_the_tag_schema_fallback_when_the_registry_has_no_api(
    api, registry_url, repository
):
    """distribution 2.8 answers 404 to /referrers/, so the `sha256-<hex>` tag is read instead."""
    subject = push_image_with_size(registry_url, repository, f"referrers {repository}")
    digest = subject[0]
    sbom = docs.dumps(docs.cyclonedx())
    vex = docs.dumps(docs.openvex(digest))
    statement = docs.dumps(docs.in_toto(digest))
    descriptors = [
        push_referrer(registry_url, repository, subject, "application/vnd.cyclonedx+json", sbom),
        push_referrer(registry_url, repository, subject, "application/openvex+json", vex),
        push_referrer(registry_url, repository, subject, "application/vnd.in-toto+json", statement),
        push_referrer(
            registry_url, repository, subject, "application/vnd.example.signature", b"sig"
        ),
        push_referrer(
            registry_url, repository, subject, "application/spdx+json", b'{"spdxVersion": 2'
        ),
    ]
    push_referrers_tag(registry_url, repository, digest, descriptors)
    release = release_of(api, REGISTRY, repository)

    found = api.post("/attachments/discover", {"release": release["id"]})
    assert found.status_code == 200, found.text
    result = found.json()
    assert result["subjects"] == [
        {
            "repository": f"{REGISTRY}/{repository}",
            "digest": digest,
            "method": "referrers-tag",
            "referrers": 5,
        }
    ]
    added = {a["format"]: a for a in result["added"]}
    assert sorted(added) == ["cyclonedx", "in-toto", "openvex"]
    assert added["cyclonedx"]["source"] == "referrers"
    assert added["cyclonedx"]["source_ref"] == descriptors[0]["digest"]
    assert added["openvex"]["kind"] == "vex"
    skipped = {s["referrer"]: s["reason"] for s in result["skipped"]}
    assert skipped[descriptors[3]["digest"]].startswith(
        "artifact type 'application/vnd.example.signature' is not"
    )
    assert skipped[descriptors[4]["digest"]].startswith("not JSON: ")
    content = api.get(f"/attachments/{added['cyclonedx']['id']}/content").content
    assert content == sbom

    again = api.post("/attachments/discover", {"digest": digest}).json()
    assert again["added"] == []
    assert sorted(a["id"] for a in again["existing"]) == sorted(a["id"] for a in added.values())
    listed = api.get("/attachments", params={"digest": digest}).json()["items"]
    assert len(listed) == 3


def test_an_image_without_referrers_discovers_nothing(api, registry_url, repository):
    push_image_with_size(registry_url, repository, f"lonely {repository}")
    release = release_of(api, REGISTRY, repository)
    found = api.post("/attachments/discover", {"release": f"api@{release['version']}"}).json()
    assert found["subjects"][0]["referrers"] == 0
    assert (found["added"], found["existing"], found["skipped"]) == ([], [], [])


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({}, 422, "body"),
        ({"digest": "sha256:" + "0" * 64, "release": "x@1"}, 422, "body"),
        ({"digest": "sha256:nope"}, 422, "digest"),
        ({"digest": "sha256:" + "0" * 64}, 422, "digest"),  # no component has it
        ({"release": "missing@9.9.9"}, 404, None),
        ({"repository": "evil.example.com/x"}, 422, "repository"),
    ],
    ids=["nothing", "both", "bad-digest", "unknown-digest", "unknown-release", "unknown-field"],
)
def test_discovery_input_errors(api, body, status, field):
    response = api.post("/attachments/discover", body)
    assert response.status_code == status, response.text
    if field:
        assert response.json()["errors"][0]["field"] == field


@pytest.fixture
def private_registry(tmp_path):
    """A second docker-registry on a free loopback port, which the test can stop."""
    binary = shutil.which("docker-registry")
    if binary is None:
        service_missing("docker-registry (Debian package docker-registry)")
    port = free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {
            "filesystem": {"rootdirectory": str(tmp_path / "data")},
            "delete": {"enabled": True},
        },
        "http": {"addr": f"127.0.0.1:{port}"},
    }
    (tmp_path / "config.yml").write_text(yaml.safe_dump(config))
    with (tmp_path / "registry.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(tmp_path / "config.yml")], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/v2/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url, process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def test_a_deleted_referrer_still_listed_in_the_tag_index_is_skipped(api, private_registry):
    url, _ = private_registry
    host = url.removeprefix("http://")
    subject = push_image_with_size(url, "app/pruned", "pruned referrers")
    kept = push_referrer(
        url, "app/pruned", subject, "application/spdx+json", docs.dumps(docs.spdx2())
    )
    gone = push_referrer(
        url, "app/pruned", subject, "application/vnd.cyclonedx+json", docs.dumps(docs.cyclonedx())
    )
    push_referrers_tag(url, "app/pruned", subject[0], [kept, gone])
    deleted = httpx.delete(f"{url}/v2/app/pruned/manifests/{gone['digest']}", timeout=10)
    assert deleted.status_code == 202, deleted.text
    release_of(api, host, "app/pruned")
    found = api.post("/attachments/discover", {"digest": subject[0]})
    assert found.status_code == 200, found.text
    assert [a["source_ref"] for a in found.json()["added"]] == [kept["digest"]]
    assert found.json()["skipped"] == [
        {
            "subject_digest": subject[0],
            "referrer": gone["digest"],
            "reason": "the referrer manifest is no longer in the registry",
        }
    ]


def test_a_registry_that_is_down_is_502_naming_it(api, private_registry):
    url, process = private_registry
    host = url.removeprefix("http://")
    subject = push_image_with_size(url, "app/gone", "soon gone")
    release_of(api, host, "app/gone")
    process.terminate()
    process.wait(timeout=10)
    response = api.post("/attachments/discover", {"digest": subject[0]})
    assert response.status_code == 502, response.text
    assert host in response.json()["detail"]


# --- CLI against a live server -------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"attachments-{request.param}")
    database = create_database(request.param, tmp, migrate=False)
    server = start_server(
        [STELLA, "server", "--no-worker"], tmp / "home", free_port(), database.url
    )
    yield server
    server.stop()
    drop_database(database)


def test_cli_uploads_lists_shows_and_downloads_byte_exact(live, tmp_path):
    digest = new_digest()
    sbom = tmp_path / "sbom.json"
    sbom.write_bytes(docs.dumps(docs.spdx2()))
    out = live.cli("sbom", "upload", "--digest", digest, str(sbom), "-o", "json", check=True)
    attachment = json.loads(out.stdout)
    assert (attachment["kind"], attachment["format"]) == ("sbom", "spdx")
    again = live.cli("sbom", "upload", "--digest", digest, str(sbom), check=True)
    assert "already attached" in again.stdout

    statement = tmp_path / "provenance.json"
    statement.write_bytes(docs.dumps(docs.dsse(digest)))
    live.cli("attestation", "upload", "--digest", digest, str(statement), check=True)

    listed = json.loads(live.cli("attachment", "list", "--digest", digest, "-o", "json").stdout)
    assert sorted(a["format"] for a in listed) == ["dsse", "spdx"]
    shown = json.loads(live.cli("attachment", "show", attachment["id"], "-o", "json").stdout)
    assert shown == attachment
    target = tmp_path / "copy.json"
    live.cli("attachment", "download", attachment["id"], "-o", str(target), check=True)
    assert target.read_bytes() == sbom.read_bytes()


def test_cli_vex_upload_takes_the_digests_from_the_products(live, tmp_path):
    first, second = new_digest(), new_digest()
    document = docs.openvex(first)
    document["statements"][0]["products"].append({"@id": second})
    vex = tmp_path / "vex.json"
    vex.write_bytes(docs.dumps(document))
    result = live.cli("vex", "upload", str(vex), check=True)
    assert first in result.stdout
    assert second in result.stdout
    for digest in (first, second):
        listed = live.cli("attachment", "list", "--digest", digest, "-o", "json", check=True)
        assert [a["format"] for a in json.loads(listed.stdout)] == ["openvex"]
    again = json.loads(live.cli("vex", "upload", str(vex), "-o", "json", check=True).stdout)
    assert [a["subject_digest"] for a in again] == [first, second]


@pytest.mark.parametrize(
    ("args", "content", "message"),
    [
        (["vex", "upload"], docs.dumps(docs.openvex("none") ), "names no image digest"),
        (["sbom", "upload", "--digest", "sha256:" + "1" * 64], b'{"bomFormat": "CycloneDX"',
         "422 document: not JSON: "),
        (["sbom", "upload", "--digest", "sha256:" + "1" * 64, "--format", "spdx"],
         docs.dumps(docs.cyclonedx()), "422 document: not SPDX: spdxVersion missing"),
        (["attestation", "upload", "--digest", "sha256:x"], docs.dumps(docs.in_toto(
         "sha256:" + "1" * 64)), "422 digest: must be sha256:<64 lowercase hex>"),
    ],
    ids=["vex-without-digest", "truncated-sbom", "not-spdx", "bad-digest"],
)  # fmt: skip
def test_cli_errors_are_one_line_and_non_zero(live, tmp_path, args, content, message):
    document = tmp_path / "doc.json"
    document.write_bytes(content)
    result = live.cli(*args, str(document))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_cli_discovers_referrers_of_a_release(live, registry_url, repository):
    subject = push_image_with_size(registry_url, repository, f"cli {repository}")
    sbom = docs.dumps(docs.cyclonedx())
    descriptor = push_referrer(
        registry_url, repository, subject, "application/vnd.cyclonedx+json", sbom
    )
    push_referrers_tag(registry_url, repository, subject[0], [descriptor])
    with live.api() as http:
        assert http.post(
            "/components", json={"name": "web", "repository": f"{REGISTRY}/{repository}"}
        ).status_code in (200, 201)
        release = http.post(
            "/releases", json={"name": "web", "version": "1.0.0", "components": {"web": "v1"}}
        )
        assert release.status_code == 201, release.text
    result = live.cli("attachment", "discover", "--release", "web@1.0.0", check=True)
    assert "1 referrer(s) via referrers-tag" in result.stdout
    assert "1 added" in result.stdout
    again = live.cli("attachment", "discover", "--digest", subject[0], "-o", "json", check=True)
    assert [a["source_ref"] for a in json.loads(again.stdout)["existing"]] == [descriptor["digest"]]
    both = live.cli("attachment", "discover", "--digest", subject[0], "--release", "web@1.0.0")
    assert both.returncode == 1
    assert "exactly one of --digest or --release" in both.stderr
