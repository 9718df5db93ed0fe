"""Freeze window and environment field validation (stella.domain.environments)."""

from __future__ import annotations

import pytest

from stella.domain.environments import (
    ApprovalPolicy,
    FreezeWindow,
    validate_environment_fields,
    validate_freeze_window,
)


@pytest.mark.parametrize(
    "window",
    [
        FreezeWindow("year-end", "2026-12-20T00:00:00Z", end="2027-01-04T00:00:00Z"),
        FreezeWindow(
            "weekends",
            "2026-01-03T00:00:00",
            rrule="FREQ=WEEKLY;BYDAY=SA",
            duration="PT48H",
            timezone="Europe/Berlin",
        ),
        FreezeWindow("nightly", "2026-01-01T22:00:00+01:00", rrule="FREQ=DAILY", duration="8h"),
    ],
    ids=["absolute", "weekly-rule", "daily-rule"],
)
def test_valid_freeze_windows_have_no_errors(window):
    assert validate_freeze_window(window, "w") == []


@pytest.mark.parametrize(
    ("window", "fields"),
    [
        (FreezeWindow("x", "2026-12-20T00:00:00Z"), ["w.end"]),
        (FreezeWindow("x", "2026-12-20T00:00:00Z", end="2026-12-20T00:00:00Z"), ["w.end"]),
        (FreezeWindow("x", "2026-12-20T00:00:00", end="2026-12-21T00:00:00Z"), ["w.start"]),
        (FreezeWindow("x", "2026-12-20T00:00:00Z", end="2026-12-21T00:00:00"), ["w.end"]),
        (FreezeWindow("x", "soon", end="later"), ["w.start"]),
        (FreezeWindow("x", "2026-01-03T00:00:00", rrule="BYDAY=SA", duration="1h"), ["w.rrule"]),
        (
            FreezeWindow("x", "2026-01-03T00:00:00", rrule="FREQ=WEEKLY;BYSETPOS=1", duration="1h"),
            ["w.rrule"],
        ),
        (FreezeWindow("x", "2026-01-03T00:00:00", rrule="FREQ=WEEKLY"), ["w.duration"]),
        (
            FreezeWindow("x", "2026-01-03T00:00:00", rrule="FREQ=WEEKLY", duration="PT0S"),
            ["w.duration"],
        ),
        (
            FreezeWindow(
                "x",
                "2026-01-03T00:00:00",
                rrule="FREQ=WEEKLY",
                duration="1h",
                timezone="Nowhere/City",
            ),
            ["w.timezone"],
        ),
    ],
    ids=[
        "no-end",
        "empty",
        "naive-start",
        "naive-end",
        "unparseable",
        "no-freq",
        "unknown-part",
        "no-duration",
        "zero-duration",
        "unknown-zone",
    ],
)
def test_invalid_freeze_windows_name_the_field(window, fields):
    assert [e.field for e in validate_freeze_window(window, "w")] == fields


def test_environment_fields_report_every_problem_at_once():
    errors = validate_environment_fields("Bad Slug", 0, ApprovalPolicy(-1, ()))
    assert [e.field for e in errors] == [
        "slug",
        "promotion_order",
        "approval_policy.required_approvals",
        "approval_policy.approver_roles",
    ]
