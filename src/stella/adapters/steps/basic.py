"""`wait`, `approval` and `fail` steps."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stella.domain.durations import parse_duration
from stella.services.steps import StepCharacteristics, StepContext, StepResult


class WaitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration: str

    @field_validator("duration")
    @classmethod
    def _check(cls, value: str) -> str:
        parse_duration(value)
        return value


class WaitStep:
    """Waits for a duration; cancellation ends the wait at once."""

    characteristics = StepCharacteristics(idempotent=True, supports_rollback=False)
    config_model = WaitConfig

    def execute(self, context: StepContext) -> StepResult:
        seconds = parse_duration(WaitConfig.model_validate(context.config).duration).total_seconds()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if time.monotonic() > context.deadline:
                return StepResult(
                    "failed", error=f"timed out after {context.timeout.total_seconds():g}s"
                )
            if context.cancelled.wait(min(0.1, max(0.0, end - time.monotonic()))):
                return StepResult("failed", error="cancelled", retryable=False)
        return StepResult("succeeded", outputs={"waited_seconds": seconds})

    def rollback(self, context: StepContext) -> StepResult:
        return StepResult("succeeded")

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return False


class ApprovalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="Approve to continue", max_length=2000)


class ApprovalStep:
    """Parks the step as `waiting` until someone approves or rejects it through the API.

    The step's timeout is the deadline for that decision.
    """

    characteristics = StepCharacteristics(
        idempotent=True, supports_rollback=False, circuit_breaker=False
    )
    config_model = ApprovalConfig

    def execute(self, context: StepContext) -> StepResult:
        message = ApprovalConfig.model_validate(context.config).message
        return StepResult("waiting", outputs={"message": message})

    def rollback(self, context: StepContext) -> StepResult:
        return StepResult("succeeded")

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return False


class FailConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(default="failed on purpose", max_length=2000)


class FailStep:
    """Always fails: for tests and as a guard behind a `when` condition."""

    characteristics = StepCharacteristics(
        idempotent=True, supports_rollback=False, circuit_breaker=False
    )
    config_model = FailConfig

    def execute(self, context: StepContext) -> StepResult:
        return StepResult("failed", error=FailConfig.model_validate(context.config).message)

    def rollback(self, context: StepContext) -> StepResult:
        return StepResult("succeeded")

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return False
