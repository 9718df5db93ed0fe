"""Per-step-type circuit breaker: after N consecutive failures a type fails fast for a while.

It protects what steps talk to (a registry, an API) from a storm of retries. State is kept per
worker process: each worker learns on its own that a dependency is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """`allow(type)` is False while the circuit of that type is open."""

    def __init__(
        self,
        threshold: int = 5,
        cooldown_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def allow(self, step_type: str) -> bool:
        with self._lock:
            return self._clock() >= self._open_until.get(step_type, 0.0)

    def record(self, step_type: str, succeeded: bool) -> None:
        with self._lock:
            if succeeded:
                self._failures[step_type] = 0
                return
            count = self._failures.get(step_type, 0) + 1
            self._failures[step_type] = count
            if count >= self._threshold:
                self._open_until[step_type] = self._clock() + self._cooldown
                self._failures[step_type] = 0

    def message(self, step_type: str) -> str:
        return (
            f"circuit open for step type '{step_type}' after {self._threshold} consecutive "
            f"failures; failing fast for {self._cooldown:g}s"
        )
