"""The wake-up slot the driver keeps on each core socket (its ``user_data``)."""

from __future__ import annotations

import anyio


class Waiter:
    """Tasks waiting for a socket's readiness to change; ``wake`` releases all of them.

    Waiters re-check the socket after waking, so a spurious wake costs a check and nothing more.
    The event is created only when someone waits, because most wake-ups find nobody waiting.
    """

    __slots__ = ("__weakref__", "_event")

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def wake(self) -> None:
        event = self._event
        if event is not None:
            self._event = None
            event.set()

    async def wait(self) -> None:
        event = self._event
        if event is None:
            event = self._event = anyio.Event()
        await event.wait()
