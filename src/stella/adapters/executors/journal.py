"""The running record of one deployment: masked log lines, phase timings and the time budget.

Every line and every error an executor reports passes through `Journal.mask`, which replaces each
secret value resolved during the job with `***`, so neither a log line nor an error string (Docker
and compose messages included) can carry a secret out of the executor.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from stella.adapters.executors.errors import DeploymentFailed
from stella.adapters.masking import SecretValues
from stella.domain.deployments import DeploymentOutcome

MAX_LINE_CHARS = 2000  # one log line; longer output (a compose error) is cut, not dropped


class Journal:
    """Collects masked log lines and phase timings, and builds the outcome."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._sink: Callable[[str], None] | None = log
        self._secrets = SecretValues(min_chars=1)  # a one-letter secret of a job is masked too
        self._started = time.monotonic()
        self.lines: list[str] = []
        self.timings: dict[str, float] = {}

    def secret(self, value: str) -> None:
        """Register a resolved secret value; from now on it is masked everywhere, also in the
        escaped forms in which Docker (Go %q), JSON and Python messages quote it (the forms
        and the masking are those of the log masking, `stella.adapters.masking`)."""
        self._secrets.add(value)

    def mask(self, text: str) -> str:
        return self._secrets.mask(text)

    def __call__(self, text: str) -> None:
        """Log `text` (one or more lines), masked, to the caller's sink and the outcome."""
        for raw in text.splitlines() or [""]:
            line = self.mask(raw.rstrip())
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + " …"
            self.lines.append(line)
            self._emit(line)

    def _emit(self, line: str) -> None:
        """A failing sink (say, a lost database) must not break a deployment half-way, above
        all not its rollback: the line stays in the outcome and the sink is not called again."""
        if self._sink is None:
            return
        try:
            self._sink(line)
        except Exception:  # noqa: BLE001 - whatever the sink raises, the deployment goes on
            self._sink = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to timing `name` (a phase may repeat per container)."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.monotonic() - start

    def outcome(self, deployed: dict[str, str], error: str | None = None) -> DeploymentOutcome:
        timings = {name: round(seconds, 3) for name, seconds in self.timings.items()}
        timings["total"] = round(time.monotonic() - self._started, 3)
        masked_error = self.mask(error) if error is not None else None
        if masked_error is not None:
            self(f"deployment failed: {masked_error}")
        else:
            self(f"deployment succeeded in {timings['total']:.2f}s")
        return DeploymentOutcome(
            succeeded=masked_error is None,
            error=masked_error,
            log=list(self.lines),
            deployed=dict(deployed) if masked_error is None else {},
            timings=timings,
        )


class Deadline:
    """The job's time budget (`task.timeout_seconds`) together with its cancellation flag."""

    def __init__(self, seconds: float, cancelled: threading.Event) -> None:
        self.seconds = max(float(seconds), 0.0)
        self.cancelled = cancelled
        self._end = time.monotonic() + self.seconds

    def remaining(self) -> float:
        return max(self._end - time.monotonic(), 0.0)

    def check(self, doing: str) -> None:
        """Raise DeploymentFailed when the job was cancelled or ran out of time."""
        if self.cancelled.is_set():
            msg = f"deployment cancelled while {doing}"
            raise DeploymentFailed(msg)
        if self.remaining() <= 0:
            msg = f"deployment timed out after {self.seconds:g}s while {doing}"
            raise DeploymentFailed(msg)

    def sleep(self, seconds: float, doing: str) -> None:
        """Wait up to `seconds` (less when the budget ends); wake early on cancellation."""
        self.cancelled.wait(min(max(seconds, 0.0), self.remaining()))
        self.check(doing)
