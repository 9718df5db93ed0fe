"""SemVer, durations, ids, secret references and release state transitions."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from stella.domain.durations import parse_duration
from stella.domain.errors import Conflict
from stella.domain.ids import new_id
from stella.domain.releases import Release, ReleaseState
from stella.domain.secrets import looks_secret, parse_secret_ref
from stella.domain.targets import validate_connection
from stella.domain.versions import parse_semver


@pytest.mark.parametrize(
    "text", ["0.0.0", "2.3.1", "1.0.0-rc.1", "1.0.0-alpha+build.5", "10.20.30"]
)
def test_semver_accepts_valid_versions(text):
    parse_semver(text)


@pytest.mark.parametrize("text", ["1.0", "v1.0.0", "01.0.0", "1.0.0-", "1.0.0+", "1.0.0-01", ""])
def test_semver_rejects_invalid_versions(text):
    with pytest.raises(ValueError, match="not a semantic version"):
        parse_semver(text)


def test_semver_precedence_follows_the_specification():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.10.0",
    ]
    shuffled = sorted(ordered, key=lambda v: v[::-1])
    assert sorted(shuffled, key=lambda v: parse_semver(v).precedence_key()) == ordered


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("PT48H", timedelta(hours=48)),
        ("P1DT30M", timedelta(days=1, minutes=30)),
        ("P2W", timedelta(weeks=2)),
    ],
)
def test_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "P", "PT", "-1s", "1y"])
def test_bad_durations_are_rejected(text):
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_ids_are_uuid7_and_ordered_by_time():
    early, late = new_id(now_ms=1_000), new_id(now_ms=2_000)
    assert early.version == 7
    assert early.variant == uuid.RFC_4122
    assert early < late
    assert len({new_id(now_ms=5) for _ in range(1000)}) == 1000


@pytest.mark.parametrize(
    "text", ["env:REGISTRY_PASSWORD", "file:/run/secrets/pw", "vault:kv/app#pw"]
)
def test_secret_references_parse(text):
    assert str(parse_secret_ref(text)) == text


@pytest.mark.parametrize("text", ["hunter2", "env:", "env:bad name", "file:relative", "s3:bucket"])
def test_literal_secrets_are_not_references(text):
    with pytest.raises(ValueError, match=r"reference|name|absolute"):
        parse_secret_ref(text)


def test_connection_settings_reject_literal_secrets_at_any_depth():
    errors = validate_connection(
        {
            "host": "127.0.0.1",
            "ssh_password": "x",
            "tls": {"client_key_passphrase": 5, "ca": "file:/ca.pem"},
        }
    )
    assert [e.field for e in errors] == [
        "connection.ssh_password",
        "connection.tls.client_key_passphrase",
    ]
    assert looks_secret("API_TOKEN")
    assert not looks_secret("host")


def _release(state: ReleaseState) -> Release:
    return Release(
        new_id(), new_id(), "api", "1.0.0", None, state, (), datetime.now(UTC), None, "x"
    )


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        (ReleaseState.DRAFT, ReleaseState.ACTIVE, True),
        (ReleaseState.DRAFT, ReleaseState.DEPRECATED, True),
        (ReleaseState.ACTIVE, ReleaseState.DEPRECATED, True),
        (ReleaseState.DEPRECATED, ReleaseState.ACTIVE, True),
        (ReleaseState.ACTIVE, ReleaseState.DRAFT, False),
        (ReleaseState.DEPRECATED, ReleaseState.DRAFT, False),
        (ReleaseState.ACTIVE, ReleaseState.ACTIVE, False),
    ],
)
def test_release_state_machine(start, target, allowed):
    release = _release(start)
    if allowed:
        assert release.transition_to(target) is target
    else:
        with pytest.raises(Conflict, match=f"cannot become {target}"):
            release.transition_to(target)


@pytest.mark.parametrize(
    ("host", "scheme"),
    [
        ("127.0.0.1:5000", "http"),
        ("127.1.2.3", "http"),
        ("localhost:5000", "http"),
        ("localhost", "http"),
        ("[::1]:5000", "http"),
        ("localhost.example.com", "https"),
        ("127.example.com", "https"),
        ("127.0.0.1.nip.io:5000", "https"),
        ("registry.example.com", "https"),
        ("10.0.0.1:5000", "https"),
    ],
)
def test_only_loopback_registries_are_spoken_to_in_plain_http(host, scheme):
    """Credentials must never travel in cleartext to a host that merely looks local."""
    from stella.adapters.registry.oci import default_scheme

    assert default_scheme(host) == scheme
