"""Clocks: the one place drivers read time and sleep.

Sans-I/O cores take ``now`` as an argument; their anyio drivers get it from a ``Clock``. A
``RealClock`` follows the event loop's monotonic clock. A ``VirtualClock`` stands still while any
task can run and jumps straight to the next deadline once every task is blocked, so a simulated
minute of retransmission timers costs milliseconds of wall time and a seeded run replays exactly.
"""

from __future__ import annotations

import heapq
import itertools
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class Clock(ABC):
    """Monotonic time in seconds and sleeping against it."""

    @abstractmethod
    def now(self) -> float:
        """Current time in seconds; only differences are meaningful."""

    @abstractmethod
    async def sleep_until(self, deadline: float) -> None:
        """Return at or after ``deadline``; a deadline in the past still checkpoints."""

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self.now() + max(0.0, seconds))


class RealClock(Clock):
    """The running event loop's clock (``anyio.current_time``)."""

    def now(self) -> float:
        return anyio.current_time()

    async def sleep_until(self, deadline: float) -> None:
        await anyio.sleep_until(deadline)


class _Sleeper:
    __slots__ = ("cancelled", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.cancelled = False


class VirtualClock(Clock):
    """Simulated time that advances only when every task is blocked.

    Use it inside ``async with clock.running():`` (or start ``clock.run`` in a task group); the
    runner waits until no task can make progress, then moves ``now`` to the earliest pending
    deadline and wakes every sleeper due by then. Tasks blocked on real I/O count as blocked, so
    keep real sockets out of a virtual-time simulation.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, _Sleeper]] = []
        self._seq = itertools.count()
        self._new_sleeper: anyio.Event | None = None
        self.jumps = 0

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), sleeper))
        if self._new_sleeper is not None:
            self._new_sleeper.set()
        try:
            await sleeper.event.wait()
        finally:
            sleeper.cancelled = True

    def advance(self, seconds: float) -> None:
        """Move time forward by hand and wake whoever is due (for tests without a runner)."""
        self._advance_to(self._now + seconds)

    def _advance_to(self, when: float) -> None:
        self._now = max(self._now, when)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, sleeper = heapq.heappop(self._sleepers)
            if not sleeper.cancelled:
                sleeper.event.set()

    def _next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].cancelled:
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def run(self) -> None:
        """Autojump forever: run it as a background task and cancel it when the simulation ends."""
        while True:
            await _wait_all_tasks_blocked()
            deadline = self._next_deadline()
            if deadline is None:
                self._new_sleeper = anyio.Event()
                await self._new_sleeper.wait()
                self._new_sleeper = None
                continue
            self.jumps += 1
            self._advance_to(deadline)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[VirtualClock]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.run, name="virtual-clock")
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


async def _wait_all_tasks_blocked() -> None:
    """Return once every other task is waiting; cheaper than anyio's 0.1 s polling on asyncio."""
    if _running_on_trio():
        import trio.testing

        await trio.testing.wait_all_tasks_blocked()
        return
    await _asyncio_wait_all_blocked()


def _running_on_trio() -> bool:
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def _asyncio_wait_all_blocked() -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    quiet_rounds = 0
    while quiet_rounds < 2:
        await asyncio.sleep(0)
        ready = getattr(loop, "_ready", ())
        busy = len(ready) > 0
        if not busy:
            for task in asyncio.all_tasks(loop):
                if task is me:
                    continue
                waiter = getattr(task, "_fut_waiter", None)
                if waiter is None or waiter.done():
                    busy = True
                    break
        quiet_rounds = 0 if busy else quiet_rounds + 1


__all__ = ["Clock", "RealClock", "VirtualClock"]
