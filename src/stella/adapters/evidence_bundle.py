"""Reading and writing evidence bundles (tar.gz), deterministically and defensively.

Members are written with fixed metadata (mtime 0, mode 0644, root owner) so the same content
gives the same archive; reading accepts only regular files with relative, clean names and
bounded sizes, so a hostile bundle cannot write outside memory or exhaust it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import IO

MAX_MEMBERS = 200_000
MAX_TOTAL_BYTES = 4 * 1024**3


class BundleError(Exception):
    """The file is not a readable evidence bundle; the message says why."""


class BundleWriter:
    """Appends members to a tar.gz and remembers each one's sha256 for the manifest."""

    def __init__(self, target: IO[bytes]) -> None:
        # mtime=0: the gzip header carries no time, so equal content gives equal bytes
        self._gzip = gzip.GzipFile(fileobj=target, mode="wb", mtime=0, compresslevel=6)
        self._tar = tarfile.open(fileobj=self._gzip, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115 - closed in close()
        self.digests: dict[str, str] = {}

    def add(self, name: str, data: bytes) -> str:
        """Add member `name`; returns `sha256:<hex>` of its bytes."""
        if name in self.digests:
            msg = f"{name} is already in the bundle"
            raise BundleError(msg)
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        self._tar.addfile(info, io.BytesIO(data))
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.digests[name] = digest
        return digest

    def close(self) -> None:
        self._tar.close()
        self._gzip.close()


def _clean(name: str) -> bool:
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and name == str(path)


def read_bundle(path: Path) -> dict[str, bytes]:
    """Every member of the bundle at `path`, by name."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members: dict[str, bytes] = {}
            total = 0
            for info in tar:
                if len(members) >= MAX_MEMBERS:
                    msg = f"more than {MAX_MEMBERS} members"
                    raise BundleError(msg)
                if info.isdir():
                    continue
                if not info.isfile():
                    msg = f"member {info.name} is not a regular file"
                    raise BundleError(msg)
                if not _clean(info.name):
                    msg = f"member name {info.name!r} is not a clean relative path"
                    raise BundleError(msg)
                if info.name in members:
                    msg = f"member {info.name} appears twice"
                    raise BundleError(msg)
                total += info.size
                if total > MAX_TOTAL_BYTES:
                    msg = f"the bundle unpacks to more than {MAX_TOTAL_BYTES} bytes"
                    raise BundleError(msg)
                handle = tar.extractfile(info)
                if handle is None:
                    msg = f"member {info.name} cannot be read"
                    raise BundleError(msg)
                members[info.name] = handle.read()
            return members
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise BundleError(msg) from None
    except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as exc:
        msg = f"{path} is not a readable tar.gz ({exc or type(exc).__name__})"
        raise BundleError(msg) from None
