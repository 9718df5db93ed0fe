"""Image references, repositories and digests (stella.domain.references)."""

from __future__ import annotations

import pytest

from stella.domain.references import InvalidReference, parse_image_reference, parse_repository

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("127.0.0.1:5000/app/api:v1", "127.0.0.1:5000/app/api", "v1", None),
        (f"127.0.0.1:5000/app/api@{D}", "127.0.0.1:5000/app/api", None, D),
        (f"registry.example.com/app/api:v2.3.1@{D}", "registry.example.com/app/api", "v2.3.1", D),
        ("localhost/app:latest", "localhost/app", "latest", None),
        ("[::1]:5000/team/app_x-y.z:1.0-rc.1", "[::1]:5000/team/app_x-y.z", "1.0-rc.1", None),
    ],
    ids=["host-port-tag", "digest", "tag-and-digest", "localhost", "ipv6-and-separators"],
)
def test_valid_references_parse(text, repository, tag, digest):
    reference = parse_image_reference(text)
    assert (str(reference.repository), reference.tag, reference.digest) == (repository, tag, digest)
    assert str(reference) == text


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app/api:v1", "does not start with a registry host"),
        ("api:v1", "has no registry host"),
        ("127.0.0.1:5000/app/api", "names neither a tag nor a digest"),
        ("127.0.0.1:5000/App/api:v1", "not a valid repository path"),
        ("127.0.0.1:5000/app/api:-bad", "not a valid tag"),
        ("127.0.0.1:5000/app/api@sha256:123", "not a valid digest"),
        ("127.0.0.1:5000/app/api@md5:" + "a" * 32, "not a valid digest"),
        (" 127.0.0.1:5000/app/api:v1", "surrounding spaces"),
        ("bad_host!:5000/app:v1", "not a valid registry host"),
    ],
)
def test_invalid_references_say_why(text, fragment):
    with pytest.raises(InvalidReference, match=fragment):
        parse_image_reference(text)


def test_repository_longer_than_255_characters_is_rejected():
    with pytest.raises(InvalidReference, match="longer than 255"):
        parse_repository("127.0.0.1:5000/" + "a" * 250)
