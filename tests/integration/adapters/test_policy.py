"""Rego policies evaluated in process with regopy: compile errors, denials, failures fail closed."""

from __future__ import annotations

import pytest

from stella.adapters.policy.rego import RegoPolicyEvaluator, check_policy
from stella.domain.errors import ValidationFailed
from stella.services.gates import PolicyFailure, policy

HEADER = "package stella.promotion\nimport rego.v1\n"


def context(policies):
    return {
        "promotion": {"requested_by_name": "alice"},
        "release": {"version": "1.0.0", "components": []},
        "source": None,
        "target": {"is_production": True, "freeze_windows": []},
        "approvals": [],
        "verdicts": {},
        "now": "2026-11-27T10:00:00+00:00",
        "policies": policies,
    }


def attached(rego, name="p", policy_hash=None):
    return {
        "name": name,
        "version": 1,
        "hash": policy_hash or f"sha256:{abs(hash(rego))}",
        "rego": rego,
    }


def test_deny_messages_fail_the_gate_and_are_its_reason():
    rego = HEADER + 'deny contains "no production on Fridays" if { input.target.is_production }\n'
    result = policy(context([attached(rego)]), RegoPolicyEvaluator(), [])
    assert (result.passed, result.reason) == (False, "p: no production on Fridays")


def test_an_empty_deny_set_passes():
    rego = HEADER + 'deny contains "x" if { input.release.version == "0.0.0" }\n'
    assert policy(context([attached(rego)]), RegoPolicyEvaluator(), []).passed


@pytest.mark.parametrize(
    ("rego", "fragment"),
    [
        (HEADER + "deny contains msg if {\n", "line 3"),
        ("package other\n", "package stella.promotion"),
        (HEADER + "deny contains msg if { msg := }\n", "line 3"),
    ],
    ids=["unclosed", "wrong-package", "bad-assignment"],
)
def test_syntax_errors_are_rejected_at_upload_with_the_line(rego, fragment):
    with pytest.raises(ValidationFailed) as caught:
        check_policy(rego)
    assert fragment in caught.value.errors[0].message


def test_a_policy_that_times_out_fails_closed_with_the_reason():
    slow = HEADER + (
        'deny contains "slow" if {\n  count([x | some x in numbers.range(1, 3000000); '
        "x % 7 == 123456]) > 0\n}\n"
    )
    evaluator = RegoPolicyEvaluator(timeout_seconds=0.05)
    with pytest.raises(PolicyFailure, match="timed out"):
        evaluator.deny("slow", slow, "sha256:slow", {})
    result = policy(context([attached(slow, "slow", "sha256:slow2")]), evaluator, [])
    assert not result.passed
    assert "slow: policy failed (timed out after 0.05s); failing closed" in result.reason


def test_a_policy_whose_deny_is_not_a_set_fails_closed():
    odd = HEADER + "deny := 5\n"
    result = policy(context([attached(odd, "odd")]), RegoPolicyEvaluator(), [])
    assert not result.passed
    assert "policy failed" in result.reason


def test_a_missing_policy_fails_closed():
    missing = {"name": "gone", "version": 0, "hash": "missing", "rego": None}
    result = policy(context([missing]), RegoPolicyEvaluator(), [])
    assert (result.passed, result.reason) == (False, "gone: policy is not defined; failing closed")
