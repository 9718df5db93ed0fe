"""Bounded capture of a child process's output: a step that prints megabytes costs kilobytes."""

from __future__ import annotations

import threading
from typing import IO

MAX_LOG_BYTES = 64 * 1024


class BoundedOutput:
    """Keeps the first and the last `limit // 2` bytes of a stream and counts what it drops."""

    def __init__(self, limit: int = MAX_LOG_BYTES) -> None:
        self._half = limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0
        self._lock = threading.Lock()

    def feed(self, chunk: bytes) -> None:
        with self._lock:
            room = self._half - len(self._head)
            if room > 0:
                self._head += chunk[:room]
                chunk = chunk[room:]
            self._tail += chunk
            if len(self._tail) > self._half:
                overflow = len(self._tail) - self._half
                self._dropped += overflow
                del self._tail[:overflow]

    def drain(self, stream: IO[bytes]) -> threading.Thread:
        """Read `stream` to its end in a daemon thread."""

        def pump() -> None:
            for chunk in iter(lambda: stream.read(8192), b""):
                self.feed(chunk)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def text(self) -> str:
        with self._lock:
            middle = f"\n[… {self._dropped} bytes of output truncated …]\n" if self._dropped else ""
            return (
                bytes(self._head).decode(errors="replace")
                + middle
                + bytes(self._tail).decode(errors="replace")
            )
