"""The signing key ring: private key 0600, rotation keeps the old public key, and a ring in
another process notices the rotated key file without a restart."""

from __future__ import annotations

import stat

import pytest

from stella.adapters.signing.dsse import VerificationError, verify_envelope
from stella.adapters.signing.keyring import KeyRing


def test_rotation_keeps_old_public_keys_and_destroys_the_old_private_key(tmp_path):
    key_file = tmp_path / "keys" / "decision-ed25519.pem"
    ring = KeyRing(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    before = ring.sign_statement([], {"n": 1})
    old_keyid, old_pem = ring.keyid, ring.public_key_pem

    rotation = ring.rotate()
    assert rotation.retired_keyid == old_keyid
    assert ring.keyid == rotation.current_keyid != old_keyid
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert set(ring.public_keys()) == {old_keyid, ring.keyid}
    retired = list((tmp_path / "keys" / "retired").iterdir())
    assert [p.name for p in retired] == [old_keyid.removeprefix("sha256:") + ".pub.pem"]
    assert all("PRIVATE KEY" not in p.read_text() for p in tmp_path.rglob("*.pem") if p != key_file)
    after = ring.sign_statement([], {"n": 2})
    # old signatures still verify with the kept public key; new ones only with the new key
    assert verify_envelope(before, old_pem.encode())["predicate"] == {"n": 1}
    assert verify_envelope(after, ring.public_key_pem.encode())["predicate"] == {"n": 2}
    with pytest.raises(VerificationError):
        verify_envelope(after, old_pem.encode())


def test_a_running_ring_picks_up_a_rotation_made_elsewhere(tmp_path):
    key_file = tmp_path / "decision-ed25519.pem"
    server = KeyRing(key_file)
    operator = KeyRing(key_file)
    rotation = operator.rotate()
    assert server.keyid == rotation.current_keyid
    assert rotation.retired_keyid in server.public_keys()


def test_a_key_file_that_is_not_an_ed25519_key_is_refused(tmp_path):
    key_file = tmp_path / "decision-ed25519.pem"
    key_file.write_text("not a key")
    with pytest.raises(ValueError):  # noqa: PT011 - the message is the cryptography library's
        KeyRing(key_file)
