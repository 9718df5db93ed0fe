"""The server's signing keys: the current one, and the public halves of those it replaced.

`stella keys rotate` writes a new private key over the key file and keeps the retired key's
public half under `retired/`; running servers and workers notice the new file on their next
signature (a cheap `stat`), so a rotation needs no restart.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from stella.adapters.signing.dsse import (
    SigningKey,
    key_id,
    public_path,
    public_pem,
    write_private_key_aside,
)


def _file_name(keyid: str) -> str:
    return keyid.removeprefix("sha256:") + ".pub.pem"


@dataclass(frozen=True)
class Rotation:
    retired_keyid: str
    retired_public_pem: str
    current_keyid: str
    current_public_pem: str


class KeyRing:
    """Signs with the key in `key_file`; lists every public key it has signed with."""

    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        self.retired_dir = key_file.parent / "retired"
        self._lock = threading.Lock()
        self._key = SigningKey.load_or_create_file(key_file)
        self._stamp = self._file_stamp()

    def _file_stamp(self) -> tuple[int, int]:
        stat = self.key_file.stat()
        return (stat.st_ino, stat.st_mtime_ns)

    def current(self) -> SigningKey:
        """The key to sign with now (re-read when the key file was replaced)."""
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                self._key = SigningKey.load(self.key_file)
                self._stamp = stamp
        return self._key

    @property
    def keyid(self) -> str:
        return self.current().keyid

    @property
    def public_key_pem(self) -> str:
        return self.current().public_key_pem

    def sign_statement(
        self,
        subjects: list[dict[str, Any]],
        predicate: dict[str, Any],
        predicate_type: str | None = None,
    ) -> dict[str, Any]:
        return self.current().sign_statement(subjects, predicate, predicate_type)

    def retired_public_keys(self) -> dict[str, str]:
        """keyid → PEM of every key this ring retired."""
        found: dict[str, str] = {}
        if self.retired_dir.is_dir():
            for path in sorted(self.retired_dir.glob("*.pub.pem")):
                pem = path.read_text()
                found["sha256:" + path.name.removesuffix(".pub.pem")] = pem
        return found

    def public_keys(self) -> dict[str, str]:
        """keyid → PEM of the current key and every retired one."""
        current = self.current()
        return self.retired_public_keys() | {current.keyid: current.public_key_pem}

    def rotate(self) -> Rotation:
        """Replace the current key with a new one; the old public key is kept, the old private
        key is destroyed (what it signed stays verifiable, nothing new can be signed with it)."""
        with self._lock:
            old = SigningKey.load(self.key_file)
            self.retired_dir.mkdir(parents=True, exist_ok=True)
            (self.retired_dir / _file_name(old.keyid)).write_text(old.public_key_pem)
            new = Ed25519PrivateKey.generate()
            temporary = write_private_key_aside(self.key_file, new)
            os.replace(temporary, self.key_file)
            public_path(self.key_file).write_text(public_pem(new.public_key()))
            self._key = SigningKey(new)
            self._stamp = self._file_stamp()
        return Rotation(
            old.keyid, old.public_key_pem, key_id(new.public_key()), public_pem(new.public_key())
        )
