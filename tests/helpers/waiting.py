"""
Wait for a condition, with a deadline, instead of sleeping and hoping it has happened.

A test that sleeps "long enough" passes on a quiet machine and fails on a loaded one, and its meaning
depends on the length of the sleep. These helpers wait for the thing itself (a request the stand-in
has seen, a payload that arrived, an event that was set) and fail with a message when it does not
happen within a generous deadline.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from airflow_provider_asana_audit.testing import FakeAsana

__all__ = ["DEADLINE", "Background", "after_requests", "await_until", "eventually", "wait_until"]

#: Seconds to wait for something that should happen almost at once; generous for a loaded machine.
DEADLINE = 30.0
_POLL = 0.005


def eventually(
    predicate: Callable[[], object], *, timeout: float = DEADLINE, interval: float = _POLL
) -> bool:
    """
    Block until ``predicate()`` is true, checking every ``interval`` seconds; return whether it came true
    within ``timeout`` seconds. For a test that checks the outcome itself, with a precise message.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_until(
    predicate: Callable[[], object], *, timeout: float = DEADLINE, message: str, interval: float = _POLL
) -> None:
    """
    Block until ``predicate()`` is true; fail the test with ``message`` after ``timeout`` seconds.

    For use in plain (synchronous) test code and in helper threads.
    """
    if not eventually(predicate, timeout=timeout, interval=interval):
        raise AssertionError(f"Waited {timeout} s in vain: {message}")


async def await_until(predicate: Callable[[], object], *, timeout: float = DEADLINE, message: str) -> None:
    """:func:`wait_until` for coroutines: yields to the event loop between checks."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"Waited {timeout} s in vain: {message}")
        await asyncio.sleep(_POLL)


class Background:
    """A function running in a daemon thread; :meth:`join` re-raises what it raised."""

    def __init__(self, target: Callable[[], object], *, name: str) -> None:
        self._target = target
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._target()
        except BaseException as err:  # handed to join(), in the test's thread
            self._error = err

    def join(self, timeout: float = DEADLINE) -> None:
        """Wait for the function to end; raise its error, or fail if it is still running."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"{self._thread.name} still runs after {timeout} s")
        if self._error is not None:
            raise self._error


def after_requests(fake: FakeAsana, count: int, action: Callable[[], object]) -> Background:
    """
    Run ``action`` in a background thread once ``fake`` has answered its ``count``-th request.

    The stand-in records a request before it sends the response, so the ``count``-th response was
    computed before ``action`` ran: "the Nth check found nothing, then events arrived".
    """

    def run() -> None:
        wait_until(
            lambda: len(fake.requests) >= count,
            message=f"the stand-in should have answered {count} request(s), not {len(fake.requests)}",
        )
        action()

    return Background(run, name=f"after-request-{count}")
