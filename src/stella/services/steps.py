"""The step registry: step types, their config schemas and providers (IStepProvider).

A provider executes one step attempt and, when it supports it, rolls a completed step back.
Providers must honour `StepContext.deadline` and `StepContext.cancelled`; the worker enforces
leases and records whatever they return. Plugins register more types with `register`.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ValidationError

from stella.domain.errors import FieldError
from stella.domain.workflow import DEFAULT_TIMEOUT, StepTypeInfo


@dataclass(frozen=True, slots=True)
class StepCharacteristics:
    """The specification's StepExecutionCharacteristics."""

    idempotent: bool
    supports_rollback: bool
    default_timeout: timedelta = DEFAULT_TIMEOUT
    # False for types whose failures are deliberate (fail, rejected approvals): they say
    # nothing about the health of a dependency, so they never open the circuit breaker
    circuit_breaker: bool = True


@dataclass(frozen=True)
class StepContext:
    """Everything one attempt needs. `config` has its `${{ … }}` expressions already rendered."""

    run_id: uuid.UUID
    step_id: str
    attempt: int
    idempotency_key: str  # stable across re-executions of one logical attempt
    config: dict[str, Any]
    inputs: dict[str, Any]
    deadline: float  # time.monotonic() value after which the attempt must stop
    timeout: timedelta
    cancelled: threading.Event
    workdir: Path
    started_at: datetime


@dataclass(frozen=True)
class StepResult:
    """Outcome of an attempt: `waiting` parks the step until a person decides (approvals)."""

    status: Literal["succeeded", "failed", "waiting"]
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log: str = ""
    retryable: bool = True


class StepProvider(Protocol):
    """Mirror of the specification's IStepProvider."""

    @property
    def characteristics(self) -> StepCharacteristics: ...

    @property
    def config_model(self) -> type[BaseModel]: ...

    def execute(self, context: StepContext) -> StepResult: ...

    def rollback(self, context: StepContext) -> StepResult: ...

    def can_roll_back(self, config: Mapping[str, Any]) -> bool: ...


def validate_with(model: type[BaseModel]) -> Callable[[dict[str, Any]], list[FieldError]]:
    """Config validation by a pydantic model; errors keep their paths inside `config`.

    Expressions are not rendered yet at save time, so a `${{ … }}` string is accepted wherever
    the model expects another type.
    """

    def validate(config: dict[str, Any]) -> list[FieldError]:
        try:
            model.model_validate(config)
        except ValidationError as exc:
            errors = []
            for error in exc.errors():
                if isinstance(error.get("input"), str) and "${{" in error["input"]:
                    continue
                path = ".".join(str(p) for p in error["loc"])
                message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
                errors.append(FieldError(path, message))
            return errors
        return []

    return validate


class StepRegistry:
    """Step types by name."""

    def __init__(self) -> None:
        self._providers: dict[str, StepProvider] = {}

    def register(self, type_name: str, provider: StepProvider) -> None:
        self._providers[type_name] = provider

    def provider(self, type_name: str) -> StepProvider:
        return self._providers[type_name]

    def names(self) -> list[str]:
        return sorted(self._providers)

    def type_infos(self) -> dict[str, StepTypeInfo]:
        """What template validation needs to know about each type."""
        return {
            name: StepTypeInfo(
                validate_config=validate_with(provider.config_model),
                can_roll_back=provider.can_roll_back,
            )
            for name, provider in self._providers.items()
        }
