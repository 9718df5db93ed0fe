"""Canonical JSON (RFC 8785) against the reference implementation."""

from __future__ import annotations

import pytest
import rfc8785

from stella.domain.canonical import canonical_json, digest

CASES = [
    {"b": 1, "a": [True, False, None], "c": {"z": "x", "y": ""}},
    {"unicode": "é ☃ 𝄞", "escapes": 'tab\t newline\n quote" back\\ nul\u0000'},
    {"€": 1, "\U0001f600": 2, "a": 3, "\u00e9": 4},  # UTF-16 ordering of keys
    {"numbers": [0, -0.0, 1.5, -2.25, 1e21, 1e-7, 123456789.125, 10**15, 2**53 - 1]},
    [],
    "plain",
]


@pytest.mark.parametrize("value", CASES)
def test_matches_the_reference_implementation(value):
    assert canonical_json(value) == rfc8785.dumps(value)


def test_digest_is_stable_and_order_independent():
    assert digest({"a": 1, "b": 2}) == digest({"b": 2, "a": 1})
    assert digest({"a": 1}).startswith("sha256:")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {1, 2}])
def test_values_without_a_canonical_form_are_refused(value):
    with pytest.raises((ValueError, TypeError)):
        canonical_json(value)
