"""DSSE envelopes (in-toto Statement payloads) signed with Ed25519, and offline verification."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from stella.domain.canonical import canonical_json

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://stella-ops.org/attestations/promotion-decision/v1"


KEY_FILE_NAME = "decision-ed25519.pem"


def public_path(private_path: Path) -> Path:
    """Where the public half of the key at `private_path` is published next to it."""
    return private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")


def write_private_key_aside(path: Path, key: Ed25519PrivateKey) -> Path:
    """Write `key` (PKCS#8 PEM, mode 0600) to a fresh temporary file beside `path`."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
        handle.flush()
        os.fsync(handle.fileno())
    return temporary


class VerificationError(Exception):
    """The envelope does not verify; the message names why."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def key_id_from_pem(public_key_pem: bytes) -> str:
    """The key id of a PEM public key (what signatures name); raises VerificationError."""
    return key_id(load_public_key(public_key_pem))


def load_public_key(public_key_pem: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; VerificationError naming what is wrong otherwise."""
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except ValueError:
        msg = "the key file is not a PEM public key"
        raise VerificationError(msg) from None
    if not isinstance(key, Ed25519PublicKey):
        msg = "the key is not an Ed25519 public key"
        raise VerificationError(msg)
    return key


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class SigningKey:
    """The server's Ed25519 key, generated on first start (private file mode 0600)."""

    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def keyid(self) -> str:
        return key_id(self.public)

    @classmethod
    def load_or_create(cls, directory: Path) -> SigningKey:
        return cls.load_or_create_file(directory / KEY_FILE_NAME)

    @classmethod
    def load_or_create_file(cls, path: Path) -> SigningKey:
        """Load the private key at `path`, creating it (mode 0600) when there is none."""
        if path.exists():
            return cls.load(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        # Write aside, then link into place: a crash never leaves an empty key file, and when a
        # server and a worker start together exactly one key wins and both load it.
        temporary = write_private_key_aside(path, key)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return cls.load(path)
        finally:
            temporary.unlink(missing_ok=True)
        public_path(path).write_text(public_pem(key.public_key()))
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            msg = f"{path} is not an Ed25519 private key"
            raise ValueError(msg)  # noqa: TRY004 - a bad file, not a bad argument type
        return cls(loaded)

    @property
    def public_key_pem(self) -> str:
        return public_pem(self.public)

    def sign_statement(
        self,
        subjects: list[dict[str, Any]],
        predicate: dict[str, Any],
        predicate_type: str | None = None,
    ) -> dict[str, Any]:
        statement = {
            "_type": STATEMENT_TYPE,
            "subject": subjects,
            "predicateType": predicate_type or PREDICATE_TYPE,
            "predicate": predicate,
        }
        payload = canonical_json(statement)
        signature = self.private.sign(pae(PAYLOAD_TYPE, payload))
        return {
            "payloadType": PAYLOAD_TYPE,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": self.keyid, "sig": base64.b64encode(signature).decode()}],
        }


def verify_envelope(envelope: Any, public_key_pem: bytes) -> dict[str, Any]:
    """Verify a DSSE envelope with a public key; returns the in-toto statement."""
    key = load_public_key(public_key_pem)
    if not isinstance(envelope, dict) or envelope.get("payloadType") != PAYLOAD_TYPE:
        msg = f"not a DSSE envelope with payloadType {PAYLOAD_TYPE}"
        raise VerificationError(msg)
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        msg = "the envelope's payload is missing or not base64"
        raise VerificationError(msg) from None
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list):
        msg = "the envelope has no list of signatures"
        raise VerificationError(msg)
    wanted = key_id(key)
    matching = [s for s in signatures if isinstance(s, dict) and s.get("keyid") == wanted]
    if not matching:
        msg = f"no signature by key {wanted}"
        raise VerificationError(msg)
    try:
        signature = base64.b64decode(matching[0]["sig"], validate=True)
        key.verify(signature, pae(PAYLOAD_TYPE, payload))
    except (InvalidSignature, binascii.Error, KeyError, TypeError, ValueError):
        msg = "the signature does not match the payload (the envelope was altered)"
        raise VerificationError(msg) from None
    try:
        statement = json.loads(payload)
    except ValueError:
        statement = None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        msg = "the payload is not an in-toto Statement"
        raise VerificationError(msg)
    return statement
