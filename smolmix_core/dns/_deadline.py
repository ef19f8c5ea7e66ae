"""Running an awaitable against a ``Clock`` deadline (which may be virtual), without exception groups."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from smolmix_core.clock import Clock, RealClock

T = TypeVar("T")


class DeadlineExpired(Exception):
    """The clock reached the deadline first; the work was cancelled."""


async def call_before(clock: Clock, deadline: float, work: Callable[[], Awaitable[T]]) -> T:
    """``await work()``, cancelled when ``clock`` reaches ``deadline`` (then ``DeadlineExpired``).

    On the event loop's own clock a cancel scope does it; on any other clock (a virtual one)
    the work runs in a child task raced against an alarm, and its exception is re-raised here
    as itself.
    """
    if type(clock) is RealClock:
        with anyio.CancelScope(deadline=deadline):
            return await work()
        raise DeadlineExpired
    results: list[T] = []
    errors: list[Exception] = []
    expired = False
    async with anyio.create_task_group() as group:

        async def run() -> None:
            try:
                results.append(await work())
            except Exception as exc:
                errors.append(exc)
            group.cancel_scope.cancel()

        async def alarm() -> None:
            nonlocal expired
            await clock.sleep_until(deadline)
            expired = True
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(alarm)
    if results:
        return results[0]
    if errors:
        raise errors[0]
    raise DeadlineExpired
