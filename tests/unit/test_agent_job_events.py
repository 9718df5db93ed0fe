"""JobEvents: the wake-ups that spare long polls and deploy steps their fixed sleeps."""

from __future__ import annotations

import asyncio
import threading

from stella.services.deployments import JobEvents


def test_a_notification_after_the_generation_was_taken_is_never_lost():
    events = JobEvents()
    seen = events.generation("env:a")
    events.notify("env:a")  # arrives between looking at the database and waiting
    assert events.wait("env:a", seen, timeout=3600)  # returns at once: nothing to wait for


def test_a_waiter_is_woken_by_its_key_only():
    events = JobEvents()
    seen = events.generation("env:a")
    woken: list[bool] = []
    waiting = threading.Thread(target=lambda: woken.append(events.wait("env:a", seen, 3600)))
    waiting.start()
    _until(lambda: "env:a" in events._waiters)
    events.notify("env:b")
    assert waiting.is_alive()  # another environment's job does not concern it
    events.notify("env:a")
    waiting.join(timeout=30)
    assert woken == [True]
    assert not events._waiters  # nothing left registered


def test_a_wait_times_out_without_a_notification_and_stops_on_the_other_event():
    events = JobEvents()
    assert not events.wait("batch:x", events.generation("batch:x"), timeout=0.01)
    cancelled = threading.Event()
    cancelled.set()
    assert not events.wait("batch:x", events.generation("batch:x"), 3600, also=cancelled)
    assert cancelled.is_set()  # the caller's event is looked at, never changed


def test_a_coroutine_is_woken_from_another_thread():
    events = JobEvents()

    async def main() -> bool:
        seen = events.generation("env:a")
        waiter = asyncio.create_task(events.wait_async("env:a", seen, 3600))
        for _ in range(1000):  # let the waiter register
            if "env:a" in events._waiters:
                break
            await asyncio.sleep(0)
        threading.Thread(target=events.notify, args=("env:a",)).start()
        return await waiter

    assert asyncio.run(main())


def _until(condition) -> None:
    done = threading.Event()
    for _ in range(10_000):
        if condition():
            return
        done.wait(0.001)
    raise AssertionError("condition never became true")
