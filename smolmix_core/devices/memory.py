"""An in-memory point-to-point link: two devices whose packets go to each other.

Each direction is a bounded FIFO of ``capacity`` packets. When it is full the sender waits
(``when_full="wait"``, backpressure, the default) or the packet is dropped and counted
(``when_full="drop"``, like a router's tail-drop queue). Packets longer than the MTU are dropped
and counted, as an interface would refuse them.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import anyio

from smolmix_core.devices.base import PollingDevice

WhenFull = Literal["wait", "drop"]


class _Direction:
    """One direction of the link: a bounded packet FIFO with a waiting reader and writer."""

    __slots__ = ("capacity", "queue", "readable", "reader_gone", "writable", "writer_gone")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.queue: deque[bytes] = deque()
        self.writer_gone = False
        self.reader_gone = False
        self.readable: anyio.Event | None = None
        self.writable: anyio.Event | None = None

    def wake_reader(self) -> None:
        if self.readable is not None:
            self.readable.set()
            self.readable = None

    def wake_writer(self) -> None:
        if self.writable is not None:
            self.writable.set()
            self.writable = None


class MemoryDevice(PollingDevice):
    """One end of a ``memory_link``."""

    def __init__(self, outgoing: _Direction, incoming: _Direction, *, mtu: int, when_full: WhenFull) -> None:
        self.mtu = mtu
        self.when_full: WhenFull = when_full
        self._out = outgoing
        self._in = incoming
        self._closed = False
        self._sent = 0
        self._received = 0
        self._dropped_full = 0
        self._dropped_oversize = 0

    def send_nowait(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        out = self._out
        if out.reader_gone:
            raise anyio.BrokenResourceError
        if len(item) > self.mtu:
            self._dropped_oversize += 1
            return
        if len(out.queue) >= out.capacity:
            if self.when_full == "wait":
                raise anyio.WouldBlock
            self._dropped_full += 1
            return
        out.queue.append(item)
        self._sent += 1
        out.wake_reader()

    def receive_nowait(self) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        incoming = self._in
        if incoming.queue:
            packet = incoming.queue.popleft()
            self._received += 1
            incoming.wake_writer()
            return packet
        if incoming.writer_gone:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def wait_sendable(self) -> None:
        out = self._out
        while not (self._closed or out.reader_gone or len(out.queue) < out.capacity):
            if out.writable is None:
                out.writable = anyio.Event()
            await out.writable.wait()

    async def wait_receivable(self) -> None:
        incoming = self._in
        while not (self._closed or incoming.queue or incoming.writer_gone):
            if incoming.readable is None:
                incoming.readable = anyio.Event()
            await incoming.readable.wait()

    async def aclose(self) -> None:
        self.close()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close both directions at once: the peer sees end-of-stream and a broken link."""
        if self._closed:
            return
        self._closed = True
        self._out.writer_gone = True
        self._in.reader_gone = True
        self._in.queue.clear()
        for direction in (self._out, self._in):
            direction.wake_reader()
            direction.wake_writer()

    def stats(self) -> dict[str, int]:
        return {
            "sent": self._sent,
            "received": self._received,
            "dropped_full": self._dropped_full,
            "dropped_oversize": self._dropped_oversize,
            "queued_out": len(self._out.queue),
            "queued_in": len(self._in.queue),
        }


def memory_link(
    mtu: int = 1500, capacity: int = 256, *, when_full: WhenFull = "wait"
) -> tuple[MemoryDevice, MemoryDevice]:
    """Two devices joined back to back; each direction holds at most ``capacity`` packets."""
    if capacity < 1:
        raise ValueError("capacity must be at least 1 packet")
    if mtu < 68:
        raise ValueError("an IP link needs an MTU of at least 68 bytes")
    a_to_b = _Direction(capacity)
    b_to_a = _Direction(capacity)
    return (
        MemoryDevice(a_to_b, b_to_a, mtu=mtu, when_full=when_full),
        MemoryDevice(b_to_a, a_to_b, mtu=mtu, when_full=when_full),
    )
