"""What the Docker and Compose executors share: one journal, one deadline, one outcome shape."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable

from stella.adapters.executors.engine import inventory
from stella.adapters.executors.errors import DeploymentFailed, TargetUnreachable
from stella.adapters.executors.journal import Deadline, Journal
from stella.domain.deployments import DeploymentOutcome, DeploymentTask, ObservedContainer


class EngineExecutor(ABC):
    """Runs `_deploy` under a journal (masked log lines, phase timings) and a deadline, and
    turns its expected failures into a failed outcome: `deploy` never raises for them."""

    docker_host: str | None

    def inventory(self) -> list[ObservedContainer]:
        return inventory(self.docker_host)

    @abstractmethod
    def describe(self, task: DeploymentTask) -> str:
        """How this executor will carry the task out (the journal's first line)."""

    @abstractmethod
    def _deploy(
        self,
        task: DeploymentTask,
        journal: Journal,
        deadline: Deadline,
        resolve_secret: Callable[[str], str],
    ) -> dict[str, str]:
        """Deploy; return component → verified digest, or raise DeploymentFailed."""

    def deploy(
        self,
        task: DeploymentTask,
        log: Callable[[str], None],
        cancelled: threading.Event,
        resolve_secret: Callable[[str], str],
    ) -> DeploymentOutcome:
        journal = Journal(log)
        deadline = Deadline(task.timeout_seconds, cancelled)
        journal(
            f"deploying {task.release_name} {task.release_version} to {task.target_name}"
            f"{self.describe(task)}, job {task.job_id}, "
            f"engine {self.docker_host or 'from DOCKER_HOST'}"
        )
        try:
            deployed = self._deploy(task, journal, deadline, resolve_secret)
        except DeploymentFailed as exc:
            return journal.outcome({}, str(exc))
        except TargetUnreachable as exc:
            return journal.outcome({}, exc.detail)
        return journal.outcome(deployed)
