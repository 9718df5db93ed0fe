"""`http` steps: one request, succeeding on the expected status."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from stella.services.steps import StepCharacteristics, StepContext, StepResult

MAX_BODY_CHARS = 16 * 1024


class HttpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://")
    method: str = Field(default="GET", pattern=r"^(GET|HEAD|POST|PUT|PATCH|DELETE)$")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | dict[str, Any] | list[Any] | None = None
    expected_status: int | list[int] = 200


class HttpStep:
    """Sends `Idempotency-Key` so a receiver can recognise a re-executed attempt."""

    characteristics = StepCharacteristics(idempotent=False, supports_rollback=False)
    config_model = HttpConfig

    def execute(self, context: StepContext) -> StepResult:
        config = HttpConfig.model_validate(context.config)
        expected = config.expected_status
        accepted = expected if isinstance(expected, list) else [expected]
        headers = {"Idempotency-Key": context.idempotency_key} | config.headers
        body: dict[str, Any] = (
            {"content": config.body} if isinstance(config.body, str) else {"json": config.body}
        )
        remaining = max(0.1, context.deadline - time.monotonic())
        try:
            response = httpx.request(
                config.method, config.url, headers=headers, timeout=remaining, **body
            )
        except httpx.TimeoutException:
            return StepResult("failed", error=f"{config.method} {config.url} timed out")
        except httpx.HTTPError as exc:
            return StepResult("failed", error=f"{config.method} {config.url}: {type(exc).__name__}")
        outputs = {"status": response.status_code, "body": response.text[:MAX_BODY_CHARS]}
        if response.status_code not in accepted:
            error = (
                f"{config.method} {config.url} answered {response.status_code}, expected {accepted}"
            )
            return StepResult("failed", outputs=outputs, error=error)
        return StepResult("succeeded", outputs=outputs)

    def rollback(self, context: StepContext) -> StepResult:
        return StepResult("succeeded")

    def can_roll_back(self, config: Mapping[str, Any]) -> bool:
        return False
