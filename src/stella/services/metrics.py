"""What the services report to metrics; the Prometheus adapter implements it (a port)."""

from __future__ import annotations

from typing import Protocol


class Metrics(Protocol):
    def promotion_settled(self, environment: str, outcome: str) -> None:
        """A promotion evaluation ended in `outcome` (approved, rejected, blocked, …)."""

    def gate_evaluated(self, gate: str, passed: bool) -> None: ...

    def step_finished(self, step_type: str, seconds: float) -> None: ...

    def evidence_sealed(self, kind: str) -> None:
        """An evidence packet of `kind` (promotion_decision, deployment) was sealed."""

    def verdict_changed(self, environment: str, state: str) -> None:
        """A digest's security verdict in `environment` changed to `state`."""


class NoMetrics:
    """Metrics that go nowhere (tests of services that do not care)."""

    def promotion_settled(self, environment: str, outcome: str) -> None:
        return None

    def gate_evaluated(self, gate: str, passed: bool) -> None:
        return None

    def step_finished(self, step_type: str, seconds: float) -> None:
        return None

    def evidence_sealed(self, kind: str) -> None:
        return None

    def verdict_changed(self, environment: str, state: str) -> None:
        return None
