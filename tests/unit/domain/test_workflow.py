"""Template validation, scheduling order, inputs and retry delays (stella.domain.workflow)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stella.domain.errors import FieldError
from stella.domain.workflow import (
    InputSpec,
    RetryPolicy,
    StepSpec,
    StepTypeInfo,
    coerce_inputs,
    execution_order,
    find_cycle,
    levels,
    validate_template,
)
from stella.services.circuit_breaker import CircuitBreaker

TYPES = {
    "noop": StepTypeInfo(validate_config=lambda c: [], can_roll_back=lambda c: False),
    "undoable": StepTypeInfo(validate_config=lambda c: [], can_roll_back=lambda c: True),
    "strict": StepTypeInfo(
        validate_config=lambda c: [] if "must" in c else [FieldError("must", "required")],
        can_roll_back=lambda c: False,
    ),
}


def s(step_id, *deps, **kwargs):
    return StepSpec(id=step_id, type=kwargs.pop("type", "noop"), depends_on=deps, **kwargs)


@pytest.mark.parametrize(
    ("steps", "cycle"),
    [
        ([s("a", "b"), s("b", "a")], ["a", "b", "a"]),
        ([s("a", "c"), s("b", "a"), s("c", "b")], ["a", "c", "b", "a"]),
        ([s("x"), s("a", "x", "c"), s("b", "a"), s("c", "b")], ["a", "c", "b", "a"]),
        ([s("a"), s("b", "a"), s("c", "a", "b")], None),
    ],
    ids=["two", "three", "behind-a-root", "diamond-is-fine"],
)
def test_cycles_are_found_and_named(steps, cycle):
    assert find_cycle(steps) == cycle


def test_cycle_error_names_the_path():
    errors = validate_template([s("a", "c"), s("b", "a"), s("c", "b")], [], TYPES)
    assert errors == [FieldError("steps", "dependency cycle: a → c → b → a")]


def test_all_problems_are_reported_together():
    steps = [
        s("a", type="nope"),
        s("a", "ghost"),
        s("c", type="strict"),
        s("d", type="noop", rollback=True),
        s("e", timeout=timedelta(milliseconds=1)),
        s("f", retry=RetryPolicy(max_attempts=0)),
    ]
    errors = validate_template(steps, [InputSpec("x", "colour"), InputSpec("x")], TYPES)
    assert [e.field for e in errors] == [
        "steps.0.type",
        "steps.1.id",
        "steps.1.depends_on",
        "steps.2.config.must",
        "steps.3.rollback",
        "steps.4.timeout",
        "steps.5.retry.max_attempts",
        "inputs.0.type",
        "inputs.0.name",
        "inputs.1.name",
    ]


def test_rollback_is_allowed_when_the_type_can_roll_back():
    assert validate_template([s("a", type="undoable", rollback=True)], [], TYPES) == []


def test_levels_and_execution_order_are_stable():
    """Workers claim ready steps by this position: topological level, then step id."""
    steps = [s("z"), s("b", "z"), s("a", "z"), s("c"), s("d", "a", "b")]
    assert levels(steps) == {"z": 0, "c": 0, "a": 1, "b": 1, "d": 2}

    class T:
        pass

    template = T()
    template.steps = tuple(steps)  # type: ignore[attr-defined]
    assert execution_order(template) == ["c", "z", "a", "b", "d"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "values", "fields"),
    [
        ({"n": 2, "s": "x"}, {"n": 2, "s": "x", "b": True}, []),
        ({"n": "2"}, {"n": "2", "s": None, "b": True}, ["inputs.n"]),
        ({}, {"n": None, "s": None, "b": True}, ["inputs.n"]),
        ({"n": 1, "zzz": 1}, {"n": 1, "s": None, "b": True}, ["inputs.zzz"]),
    ],
)
def test_inputs_are_checked_against_their_types(given, values, fields):
    specs = (
        InputSpec("n", "number", required=True),
        InputSpec("s"),
        InputSpec("b", "boolean", default=True),
    )
    coerced, errors = coerce_inputs(specs, given)
    assert coerced == values
    assert [e.field for e in errors] == fields


@pytest.mark.parametrize(
    ("attempt", "jitter", "seconds"),
    [(2, 1.0, 1), (3, 1.0, 2), (4, 1.0, 4), (10, 1.0, 30), (3, 0.0, 1)],
)
def test_backoff_doubles_up_to_the_maximum_with_jitter(attempt, jitter, seconds):
    policy = RetryPolicy(5, timedelta(seconds=1), timedelta(seconds=30))
    assert policy.delay_before(attempt, jitter) == timedelta(seconds=seconds)


def test_circuit_breaker_opens_after_consecutive_failures_and_cools_down():
    now = [100.0]
    breaker = CircuitBreaker(threshold=3, cooldown_seconds=10, clock=lambda: now[0])
    for _ in range(2):
        breaker.record("http", succeeded=False)
    breaker.record("http", succeeded=True)  # a success resets the count
    for _ in range(2):
        breaker.record("http", succeeded=False)
    assert breaker.allow("http")
    breaker.record("http", succeeded=False)
    assert not breaker.allow("http")
    assert breaker.allow("script")  # per step type
    now[0] += 10
    assert breaker.allow("http")
