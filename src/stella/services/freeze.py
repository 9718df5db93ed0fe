"""Is an instant inside a freeze window? Absolute ranges and recurring RRULE windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from stella.domain.durations import parse_duration
from stella.domain.environments import FreezeWindow

# How far back a recurring window's occurrences are searched for one that still covers `now`.
_LOOKBACK = timedelta(days=400)


def active_window(windows: tuple[FreezeWindow, ...], now: datetime) -> FreezeWindow | None:
    """The first window that covers `now`, or None."""
    for window in windows:
        if covers(window, now):
            return window
    return None


def covers(window: FreezeWindow, now: datetime) -> bool:
    if window.rrule is None:
        start = datetime.fromisoformat(window.start)
        end = datetime.fromisoformat(window.end or window.start)
        return start <= now < end
    zone = ZoneInfo(window.timezone or "UTC")
    start = datetime.fromisoformat(window.start)
    start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
    length = parse_duration(window.duration or "0s")
    rule = rrulestr(window.rrule, dtstart=start.replace(tzinfo=None))
    local_now = now.astimezone(zone).replace(tzinfo=None)
    # Occurrences are computed in the zone's wall-clock time, so a window keeps its local
    # start across daylight-saving changes.
    last = rule.before(local_now, inc=True)
    if last is None or local_now - last > _LOOKBACK:
        return False
    # The duration is wall-clock time as well: a 48-hour weekend freeze starting Saturday 00:00
    # ends Monday 00:00 local time, even across a daylight-saving change.
    begins = last.replace(tzinfo=zone).astimezone(UTC)
    ends = (last + length).replace(tzinfo=zone).astimezone(UTC)
    return begins <= now.astimezone(UTC) < ends
