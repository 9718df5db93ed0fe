"""The version sticker: `task.sticker` as JSON at `task.sticker_path` on the target.

It is written only after every container is healthy, atomically (a temporary file in the same
folder, then a rename), so a reader never sees half a sticker. `sticker_root` (tests, or agents
that see the host's file system under a mount) prefixes the path. The SSH executor supplies its
own writer that does the same over SFTP on the remote host.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from stella.adapters.executors.errors import DeploymentFailed

StickerWriter = Callable[[str, dict[str, Any]], str]  # (sticker_path, body) -> where it went


def sticker_bytes(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def sticker_target(sticker_path: str, root: str | Path | None) -> PurePosixPath:
    """Where the sticker goes: an absolute path without `..`, under `root` when given."""
    path = PurePosixPath(sticker_path)
    if not path.is_absolute() or ".." in path.parts or path.name in {"", "."}:
        msg = f"sticker path {sticker_path!r} must be an absolute file path without '..'"
        raise DeploymentFailed(msg)
    if root is None:
        return path
    return PurePosixPath(str(root)) / path.relative_to("/")


class LocalStickerWriter:
    """Writes stickers on this host's file system."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root

    def __call__(self, sticker_path: str, body: dict[str, Any]) -> str:
        target = Path(sticker_target(sticker_path, self.root))
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(sticker_bytes(body))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o644)
                os.replace(temp, target)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            msg = f"writing the sticker {target} failed: {exc.strerror or type(exc).__name__}"
            raise DeploymentFailed(msg) from None
        return str(target)
