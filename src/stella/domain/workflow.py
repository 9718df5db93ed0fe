"""Workflow templates (DAGs of steps) and the pure rules that schedule a run of one.

The engine is a state machine over step ids: `ready_steps` answers "what can run next?" in a
stable order (topological level, then step id), so the same template and inputs always give
the same execution order. Time never enters these functions; the worker supplies it.
"""

from __future__ import annotations

import enum
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stella.domain.errors import FieldError
from stella.domain.expressions import (
    ExpressionError,
    Path,
    parse_expression,
    paths_in,
    template_expressions,
)

STEP_ID_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
MIN_TIMEOUT = timedelta(milliseconds=100)
MAX_TIMEOUT = timedelta(hours=24)
DEFAULT_TIMEOUT = timedelta(minutes=5)
MAX_STEPS = 2000
INPUT_TYPES = ("string", "number", "boolean", "object", "array")


class OnFailure(enum.StrEnum):
    """What a failed run does with the steps that already completed."""

    ROLLBACK = "rollback"
    STOP = "stop"


class RunState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    ROLLED_BACK = "rolled_back"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_RUN


_TERMINAL_RUN = {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.ROLLED_BACK}


class StepState(enum.StrEnum):
    """Per-step state. `ready` waits for a worker (or for its retry time); `waiting` waits for
    a person (approval steps)."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    ROLLED_BACK = "rolled_back"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempts in all (1 = no retry); the delay doubles from `backoff` up to `max_backoff`."""

    max_attempts: int = 1
    backoff: timedelta = timedelta(seconds=1)
    max_backoff: timedelta = timedelta(minutes=1)

    def delay_before(self, attempt: int, jitter: float) -> timedelta:
        """Delay before `attempt` (2 = first retry); `jitter` in [0, 1] spreads retries out."""
        base: timedelta = min(self.max_backoff, self.backoff * (1 << max(0, attempt - 2)))
        return base * (0.5 + 0.5 * jitter)


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One node of the DAG."""

    id: str
    type: str
    config: dict[str, Any] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    timeout: timedelta | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rollback: bool = False
    when: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A typed parameter of a template."""

    name: str
    type: str = "string"
    required: bool = False
    default: Any = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowTemplate:
    """One immutable version of a named workflow of one tenant."""

    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    version: int
    description: str
    inputs: tuple[InputSpec, ...]
    steps: tuple[StepSpec, ...]
    on_failure: OnFailure
    created_at: datetime
    created_by_name: str
    digest: str  # sha256 of the canonical template; a re-save with the same digest is a no-op
    _index: dict[str, StepSpec] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s.id: s for s in self.steps})

    def step(self, step_id: str) -> StepSpec:
        """The step with this id (O(1): templates can have thousands of steps)."""
        return self._index[step_id]


@dataclass(frozen=True, slots=True)
class StepTypeInfo:
    """What validation needs to know about a registered step type."""

    validate_config: Callable[[dict[str, Any]], list[FieldError]]  # paths relative to config
    can_roll_back: Callable[[dict[str, Any]], bool]  # with this config


def find_cycle(steps: Iterable[StepSpec]) -> list[str] | None:
    """A cycle as a list of ids (`[a, b, c, a]`), or None for a DAG. Deterministic."""
    graph = {s.id: sorted(set(s.depends_on)) for s in steps}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in graph.get(node, []):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if state.get(dep) is None:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                # report in dependency direction: a → b means a depends on b
                return found
    return None


def levels(steps: Iterable[StepSpec]) -> dict[str, int]:
    """Topological level of each step: 0 without dependencies, else 1 + deepest dependency."""
    by_id = {s.id: s for s in steps}
    result: dict[str, int] = {}

    def level(step_id: str) -> int:
        if step_id not in result:
            deps = by_id[step_id].depends_on
            result[step_id] = 1 + max((level(d) for d in deps), default=-1)
        return result[step_id]

    for step_id in sorted(by_id):
        level(step_id)
    return result


def ancestors(steps: Iterable[StepSpec]) -> dict[str, set[str]]:
    """Every step's transitive dependencies."""
    by_id = {s.id: s for s in steps}
    memo: dict[str, set[str]] = {}

    def walk(step_id: str) -> set[str]:
        if step_id not in memo:
            found: set[str] = set()
            for dep in by_id[step_id].depends_on:
                found |= {dep, *walk(dep)}
            memo[step_id] = found
        return memo[step_id]

    for step_id in by_id:
        walk(step_id)
    return memo


def validate_template(
    steps: list[StepSpec],
    inputs: list[InputSpec],
    step_types: Mapping[str, StepTypeInfo],
) -> list[FieldError]:
    """Every problem of a template, each with its field path; empty when it is valid."""
    errors: list[FieldError] = []
    if not steps:
        errors.append(FieldError("steps", "a workflow needs at least one step"))
    if len(steps) > MAX_STEPS:
        errors.append(FieldError("steps", f"at most {MAX_STEPS} steps"))
    seen: set[str] = set()
    for index, step in enumerate(steps):
        errors.extend(_validate_step(index, step, seen, {s.id for s in steps}, step_types))
        seen.add(step.id)
    input_names = [i.name for i in inputs]
    for index, spec in enumerate(inputs):
        if spec.type not in INPUT_TYPES:
            errors.append(FieldError(f"inputs.{index}.type", f"one of {', '.join(INPUT_TYPES)}"))
        if input_names.count(spec.name) > 1:
            errors.append(FieldError(f"inputs.{index}.name", f"duplicate input '{spec.name}'"))
    if errors:
        return errors
    cycle = find_cycle(steps)
    if cycle:
        return [FieldError("steps", f"dependency cycle: {' → '.join(cycle)}")]
    return _validate_expressions(steps, set(input_names))


def _validate_step(
    index: int,
    step: StepSpec,
    seen: set[str],
    all_ids: set[str],
    step_types: Mapping[str, StepTypeInfo],
) -> list[FieldError]:
    path = f"steps.{index}"
    errors: list[FieldError] = []
    if not STEP_ID_RE.match(step.id):
        errors.append(FieldError(f"{path}.id", "lowercase letter first, then [a-z0-9_-], 63 max"))
    if step.id in seen:
        errors.append(FieldError(f"{path}.id", f"duplicate step id '{step.id}'"))
    info = step_types.get(step.type)
    if info is None:
        known = ", ".join(sorted(step_types))
        errors.append(
            FieldError(f"{path}.type", f"unknown step type '{step.type}'; known: {known}")
        )
    else:
        errors.extend(
            FieldError(f"{path}.config.{e.field}".rstrip("."), e.message)
            for e in info.validate_config(step.config)
        )
        if step.rollback and not info.can_roll_back(step.config):
            message = f"step type '{step.type}' cannot roll back with this config"
            errors.append(FieldError(f"{path}.rollback", message))
    for dep in step.depends_on:
        if dep not in all_ids:
            errors.append(FieldError(f"{path}.depends_on", f"unknown step '{dep}'"))
        elif dep == step.id:
            errors.append(FieldError(f"{path}.depends_on", "a step cannot depend on itself"))
    if step.timeout is not None and not MIN_TIMEOUT <= step.timeout <= MAX_TIMEOUT:
        errors.append(FieldError(f"{path}.timeout", "must be between 100ms and 24h"))
    if step.retry.max_attempts < 1 or step.retry.max_attempts > 20:
        errors.append(FieldError(f"{path}.retry.max_attempts", "must be between 1 and 20"))
    if step.retry.backoff > step.retry.max_backoff:
        errors.append(FieldError(f"{path}.retry.backoff", "must not exceed max_backoff"))
    return errors


def _validate_expressions(steps: list[StepSpec], inputs: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    upstream = ancestors(steps)
    for index, step in enumerate(steps):
        sources: list[tuple[str, str]] = []
        if step.when is not None:
            sources.append((f"steps.{index}.when", step.when))
        sources.extend((f"steps.{index}.config", expr) for expr in _config_expressions(step.config))
        for path, text in sources:
            try:
                node = parse_expression(text)
            except ExpressionError as exc:
                errors.append(FieldError(path, f"bad expression '{text}': {exc}"))
                continue
            errors.extend(_check_paths(path, paths_in(node), inputs, upstream[step.id]))
    return errors


def _check_paths(
    path: str, paths: list[Path], inputs: set[str], upstream: set[str]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for ref in paths:
        if ref.parts[0] == "inputs" and (len(ref.parts) < 2 or ref.parts[1] not in inputs):
            errors.append(FieldError(path, f"'{ref}' names no declared input"))
        if ref.parts[0] == "steps":
            if len(ref.parts) < 3 or ref.parts[2] not in {"outputs", "state"}:
                errors.append(FieldError(path, f"'{ref}': use steps.<id>.outputs.<key> or .state"))
            elif ref.parts[1] not in upstream:
                errors.append(
                    FieldError(
                        path, f"'{ref}' reads step '{ref.parts[1]}', which is not a dependency"
                    )
                )
    return errors


def _config_expressions(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [e for v in value.values() for e in _config_expressions(v)]
    if isinstance(value, list):
        return [e for v in value for e in _config_expressions(v)]
    if isinstance(value, str):
        return template_expressions(value)
    return []


def coerce_inputs(
    specs: tuple[InputSpec, ...], given: Mapping[str, Any]
) -> tuple[dict[str, Any], list[FieldError]]:
    """Check run inputs against the template: types, required ones, unknown names."""
    errors: list[FieldError] = []
    values: dict[str, Any] = {}
    declared = {s.name: s for s in specs}
    for name in given:
        if name not in declared:
            errors.append(FieldError(f"inputs.{name}", "not an input of this workflow"))
    for spec in specs:
        if spec.name not in given:
            if spec.required:
                errors.append(FieldError(f"inputs.{spec.name}", "is required"))
            values[spec.name] = spec.default
            continue
        value = given[spec.name]
        if not _has_type(value, spec.type):
            errors.append(FieldError(f"inputs.{spec.name}", f"must be a {spec.type}"))
        values[spec.name] = value
    return values, errors


def _has_type(value: Any, type_name: str) -> bool:
    checks: dict[str, Any] = {
        "string": lambda v: isinstance(v, str),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "object": lambda v: isinstance(v, dict),
        "array": lambda v: isinstance(v, list),
    }
    return bool(checks[type_name](value))


def execution_order(template: WorkflowTemplate) -> list[str]:
    """All step ids sorted by (topological level, id): the scheduler's stable rule."""
    order = levels(template.steps)
    return sorted(order, key=lambda step_id: (order[step_id], step_id))
