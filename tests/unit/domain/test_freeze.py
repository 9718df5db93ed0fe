"""Freeze windows: absolute ranges and recurring RRULE windows in a time zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stella.domain.environments import FreezeWindow
from stella.services.freeze import active_window, covers

WEEKENDS = FreezeWindow(
    "weekends",
    "2026-01-03T00:00:00",
    rrule="FREQ=WEEKLY;BYDAY=SA",
    duration="PT48H",
    timezone="Europe/Berlin",
)
YEAR_END = FreezeWindow("year-end", "2026-12-20T00:00:00Z", end="2027-01-04T00:00:00Z")


@pytest.mark.parametrize(
    ("window", "instant", "inside"),
    [
        (YEAR_END, "2026-12-24T12:00:00+00:00", True),
        (YEAR_END, "2027-01-04T00:00:00+00:00", False),  # the end is exclusive
        (YEAR_END, "2026-12-19T23:59:59+00:00", False),
        (WEEKENDS, "2026-11-28T10:00:00+00:00", True),  # a Saturday
        (WEEKENDS, "2026-11-29T22:59:00+00:00", True),  # Sunday 23:59 in Berlin
        (WEEKENDS, "2026-11-29T23:00:00+00:00", False),  # Monday 00:00 in Berlin
        (WEEKENDS, "2026-11-27T22:59:00+00:00", False),  # Friday 23:59 in Berlin
        (WEEKENDS, "2026-03-28T23:30:00+00:00", True),  # the weekend daylight saving starts
        (WEEKENDS, "2026-03-29T22:00:00+00:00", False),  # Monday 00:00 CEST
    ],
)
def test_window_covers_instants(window, instant, inside):
    assert covers(window, datetime.fromisoformat(instant)) is inside


def test_the_first_active_window_is_named():
    now = datetime(2026, 12, 26, 12, tzinfo=UTC)  # a Saturday inside year-end
    assert active_window((YEAR_END, WEEKENDS), now) == YEAR_END
    assert active_window((WEEKENDS,), datetime(2026, 12, 23, 12, tzinfo=UTC)) is None
