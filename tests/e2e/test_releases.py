"""Releases through the API: tags pinned to digests in the real registry, immutability, errors."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import REGISTRY
from tests.support.oci import OCI_MANIFEST, push_image, push_index


@pytest.fixture
def component(api, repository):
    response = api.post("/components", {"name": "api", "repository": f"{REGISTRY}/{repository}"})
    assert response.status_code == 201, response.text
    return response.json()


def release_count(api) -> int:
    return len(api.get("/releases").json()["items"])


def test_tag_is_resolved_to_the_registry_digest(api, registry_url, repository, component):
    digest = push_image(registry_url, repository, "v1", "one")
    response = api.post(
        "/releases",
        {
            "name": "api",
            "version": "2.3.1",
            "source_ref": "9fceb02",
            "components": {"api": f"{REGISTRY}/{repository}:v1"},
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["state"] == "active"
    assert body["components"] == [
        {
            "name": "api",
            "repository": f"{REGISTRY}/{repository}",
            "digest": digest,
            "resolved_from_tag": "v1",
            "media_type": "application/vnd.docker.distribution.manifest.v2+json",
        }
    ]
    assert api.get(f"/releases/{body['id']}").json() == body
    assert api.get("/releases/api@2.3.1").json()["id"] == body["id"]


def test_release_keeps_its_digest_when_the_tag_moves(api, registry_url, repository, component):
    first = push_image(registry_url, repository, "v1", "first")
    created = api.post(
        "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
    )
    push_image(registry_url, repository, "v1", "moved")
    again = api.get(f"/releases/{created.json()['id']}").json()
    assert again["components"][0]["digest"] == first


def test_oci_manifest_and_multi_platform_index_are_pinned(api, registry_url, repository, component):
    oci = push_image(registry_url, repository, "oci", "oci", OCI_MANIFEST)
    index, platform_digests = push_index(registry_url, repository, "multi", "multi")
    a = api.post("/releases", {"name": "api", "version": "1.0.0", "components": {"api": "oci"}})
    b = api.post("/releases", {"name": "api", "version": "1.0.1", "components": {"api": "multi"}})
    assert a.json()["components"][0]["digest"] == oci
    pinned = b.json()["components"][0]
    assert pinned["digest"] == index
    assert pinned["digest"] not in platform_digests
    assert pinned["media_type"] == "application/vnd.oci.image.index.v1+json"


def test_digest_reference_is_verified_in_the_registry(api, registry_url, repository, component):
    digest = push_image(registry_url, repository, "v1", "by-digest")
    ok = api.post(
        "/releases",
        {
            "name": "api",
            "version": "1.0.0",
            "components": {"api": f"{REGISTRY}/{repository}@{digest}"},
        },
    )
    assert ok.status_code == 201
    assert ok.json()["components"][0] == {
        "name": "api",
        "repository": f"{REGISTRY}/{repository}",
        "digest": digest,
        "resolved_from_tag": None,
        "media_type": ok.json()["components"][0]["media_type"],
    }
    missing = "sha256:" + "0" * 64
    bad = api.post(
        "/releases", {"name": "api", "version": "1.0.1", "components": {"api": f"@{missing}"}}
    )
    assert bad.status_code == 422
    assert bad.json()["errors"] == [
        {
            "field": "components.api",
            "message": f"digest {missing} not found in {REGISTRY}/{repository}",
        }
    ]


def test_missing_tag_is_422_naming_image_and_tag(api, registry_url, repository, component):
    response = api.post(
        "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v9"}}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "components.api", "message": f"tag v9 not found in {REGISTRY}/{repository}"}
    ]
    assert release_count(api) == 0


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (
            {"name": "api", "version": "1.0", "components": {"api": "v1"}},
            "version",
            "semantic version",
        ),
        (
            {"name": "api", "version": "v1.0.0", "components": {"api": "v1"}},
            "version",
            "semantic version",
        ),
        (
            {"name": "api", "version": "1.0.0", "components": {"nope": "v1"}},
            "components.nope",
            "unknown component",
        ),
        (
            {
                "name": "api",
                "version": "1.0.0",
                "components": {"api": "127.0.0.1:5000/Bad Repo:v1"},
            },
            "components.api",
            "not a valid",
        ),
        (
            {"name": "api", "version": "1.0.0", "components": {"api": "v1@sha256:abc"}},
            "components.api",
            "not a valid digest",
        ),
        (
            {
                "name": "api",
                "version": "1.0.0",
                "components": {"api": "127.0.0.1:5000/other/repo:v1"},
            },
            "components.api",
            "is not the repository of component",
        ),
        ({"name": "api", "version": "1.0.0", "components": {}}, "components", "at least 1"),
        (
            {"name": "api", "version": "1.0.0", "components": {"api": "v1"}, "extra": 1},
            "extra",
            "unknown field",
        ),
        ({"name": "api", "version": 100, "components": {"api": "v1"}}, "version", "string"),
        (
            {"name": "api", "version": "1.0.0", "components": {"api": "v1"}, "state": "deprecated"},
            "state",
            "draft or active",
        ),
    ],
    ids=[
        "two-part-version",
        "v-prefix",
        "unknown-component",
        "malformed-repo",
        "malformed-digest",
        "foreign-repository",
        "no-components",
        "unknown-field",
        "wrong-type",
        "born-deprecated",
    ],
)
def test_bad_release_input_is_422_naming_the_field(api, component, body, field, fragment):
    response = api.post("/releases", body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in problem["errors"]]
    assert fragment in problem["detail"]
    assert release_count(api) == 0


def test_unreachable_registry_is_502_naming_the_host_and_creates_nothing(api):
    with socket.socket() as sock:  # a loopback port that is certainly closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api.post("/components", {"name": "api", "repository": f"127.0.0.1:{port}/app/api"})
    response = api.post(
        "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
    )
    assert response.status_code == 502
    assert f"127.0.0.1:{port}" in response.json()["detail"]
    assert release_count(api) == 0
    assert api.get("/components/api/versions").json()["items"] == []


def test_same_name_and_version_twice_is_409(api, registry_url, repository, component):
    push_image(registry_url, repository, "v1", "dup")
    body = {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
    assert api.post("/releases", body).status_code == 201
    again = api.post("/releases", body)
    assert again.status_code == 409
    assert "immutable" in again.json()["detail"]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_any_modification_of_a_release_is_405(api, registry_url, repository, component, method):
    digest = push_image(registry_url, repository, "v1", "immutable")
    created = api.post(
        "/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}}
    )
    rid = created.json()["id"]
    response = api.request(method, f"/releases/{rid}", json={"version": "9.9.9"})
    assert response.status_code == 405
    assert response.json()["detail"] == "releases are immutable; create a new release"
    assert api.get(f"/releases/{rid}").json()["components"][0]["digest"] == digest
    unknown = api.request(method, "/releases/00000000-0000-0000-0000-000000000000", json={})
    assert unknown.status_code == 404


def test_state_changes_are_the_only_update_and_are_audited(
    api, registry_url, repository, component
):
    push_image(registry_url, repository, "v1", "states")
    created = api.post(
        "/releases",
        {"name": "api", "version": "1.0.0", "components": {"api": "v1"}, "state": "draft"},
    ).json()
    assert created["state"] == "draft"
    assert api.post(f"/releases/{created['id']}/activate").json()["state"] == "active"
    assert api.post(f"/releases/{created['id']}/deprecate").json()["state"] == "deprecated"
    again = api.post(f"/releases/{created['id']}/deprecate")
    assert again.status_code == 409
    actions = [
        e["action"]
        for e in api.get("/audit-events", params={"resource_type": "release"}).json()["items"]
    ]
    assert actions == ["release.deprecated", "release.active", "release.created"]


def test_list_is_paginated_newest_first_and_filterable(api, registry_url, repository, component):
    push_image(registry_url, repository, "v1", "list")
    for patch in range(5):
        api.post(
            "/releases", {"name": "api", "version": f"1.0.{patch}", "components": {"api": "v1"}}
        )
    first = api.get("/releases", params={"limit": 2}).json()
    assert [r["version"] for r in first["items"]] == ["1.0.4", "1.0.3"]
    second = api.get("/releases", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["version"] for r in second["items"]] == ["1.0.2", "1.0.1"]
    third = api.get("/releases", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [r["version"] for r in third["items"]] == ["1.0.0"]
    assert third["next_cursor"] is None
    assert api.get("/releases", params={"name": "other"}).json()["items"] == []
    assert len(api.get("/releases", params={"state": "active"}).json()["items"]) == 5
    found = api.get("/releases", params={"q": "0.3"}).json()["items"]
    assert [r["version"] for r in found] == ["1.0.3"]
    assert len(api.get("/releases", params={"q": "API@1.0"}).json()["items"]) == 5
    assert api.get("/releases", params={"q": "%"}).json()["items"] == []  # not a wildcard


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 501}, "limit"),
        ({"limit": 0}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"state": "gone"}, "state"),
    ],
)
def test_bad_list_parameters_are_422(api, params, field):
    response = api.get("/releases", params=params)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


def test_pushed_digest_is_recorded_as_component_version(api, registry_url, repository, component):
    digest = push_image(registry_url, repository, "v1", "versions")
    api.post("/releases", {"name": "api", "version": "1.0.0", "components": {"api": "v1"}})
    versions = api.get("/components/api/versions").json()["items"]
    assert [(v["digest"], v["tag"]) for v in versions] == [(digest, "v1")]


def test_a_method_no_route_answers_is_405_with_every_allowed_method(api):
    """`Allow` names every method of the path, across routes (RFC 9110), for API and pages."""
    for method, path, allowed in (
        ("DELETE", "/api/v1/releases", "GET, POST"),
        ("OPTIONS", "/api/v1/releases/abc", "DELETE, GET, PATCH, PUT"),
        ("TRACE", "/healthz", "GET"),
        ("PUT", "/login", "GET, POST"),
        # a concrete path is its own resource (as in OpenAPI), not an id of `/agents/{ref}`
        ("OPTIONS", "/api/v1/agents/enroll", "POST"),
        ("PUT", "/api/v1/advisories/import", "POST"),
        ("OPTIONS", "/api/v1/agents/abc", "GET"),
    ):
        response = api.http.request(method, path, headers=api.headers)
        assert response.status_code == 405, (method, path)
        assert response.headers["allow"] == allowed, (method, path)
