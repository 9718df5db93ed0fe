"""Built-in step providers: script, http, wait, approval, fail."""

from __future__ import annotations

from stella.adapters.steps.basic import ApprovalStep, FailStep, WaitStep
from stella.adapters.steps.http import HttpStep
from stella.adapters.steps.script import ScriptStep
from stella.services.steps import StepRegistry


def builtin_registry() -> StepRegistry:
    """A registry holding the built-in step types."""
    registry = StepRegistry()
    registry.register("script", ScriptStep())
    registry.register("http", HttpStep())
    registry.register("wait", WaitStep())
    registry.register("approval", ApprovalStep())
    registry.register("fail", FailStep())
    return registry
