"""A seeded fault injector: loss, duplication, reordering, corruption, delay, jitter, rate limit.

Wrap any device to make its link misbehave reproducibly. Every random draw comes from one
``random.Random(seed)`` in packet order, so with a ``VirtualClock`` a simulation replays exactly.
Delay, jitter and rate need a background task that releases held packets through the clock, so
a FaultInjector that holds packets must be used as ``async with FaultInjector(...) as link:``.

Policies: held packets wait in a delay line of at most ``queue`` packets; a packet that finds it
full is dropped and counted (``queue_drops``), like a router's tail drop. Released packets go to
the wrapped device with backpressure (the release task waits for room). Jitter never reorders
packets by itself (a link is FIFO); ``reorder`` holds chosen packets back by ``reorder_delay`` so
that later ones overtake them.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup

from smolmix_core.clock import Clock, RealClock
from smolmix_core.devices.base import Device


class _DelayLine:
    """Packets held until their release time, then handed to a sink in release order."""

    def __init__(self, clock: Clock, capacity: int, sink: Callable[[bytes], Awaitable[None]]) -> None:
        self._clock = clock
        self._capacity = capacity
        self._sink = sink
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0
        self._pushed: anyio.Event | None = None
        self._sleep_scope: anyio.CancelScope | None = None
        self._sleeping_until = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def full(self) -> bool:
        return len(self._heap) >= self._capacity

    def push(self, release: float, packet: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (release, self._seq, packet))
        if self._pushed is not None:
            self._pushed.set()
        elif self._sleep_scope is not None and release < self._sleeping_until:
            self._sleep_scope.cancel()

    async def run(self) -> None:
        clock = self._clock
        heap = self._heap
        while True:
            if not heap:
                self._pushed = anyio.Event()
                await self._pushed.wait()
                self._pushed = None
                continue
            release = heap[0][0]
            if release > clock.now():
                with anyio.CancelScope() as scope:
                    self._sleep_scope = scope
                    self._sleeping_until = release
                    await clock.sleep_until(release)
                self._sleep_scope = None
                continue
            packet = heapq.heappop(heap)[2]
            await self._sink(packet)


class FaultInjector(Device):
    """A device wrapper that impairs the packets it sends (and, with ``on_receive``, receives)."""

    def __init__(
        self,
        device: Device,
        *,
        seed: int,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        corrupt: float = 0.0,
        delay: float = 0.0,
        jitter: float = 0.0,
        rate: float | None = None,
        clock: Clock | None = None,
        on_receive: bool = False,
        reorder_delay: float | None = None,
        queue: int = 1024,
    ) -> None:
        for name, probability in (
            ("loss", loss),
            ("duplicate", duplicate),
            ("reorder", reorder),
            ("corrupt", corrupt),
        ):
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {probability}")
        if delay < 0 or jitter < 0 or (rate is not None and rate <= 0) or queue < 1:
            raise ValueError("delay and jitter must be >= 0, rate > 0 and queue >= 1")
        self.device = device
        self.mtu = device.mtu
        self.loss = loss
        self.duplicate = duplicate
        self.reorder = reorder
        self.corrupt = corrupt
        self.delay = delay
        self.jitter = jitter
        self.rate = rate
        self.reorder_delay = max(0.002, delay) if reorder_delay is None else reorder_delay
        self.on_receive = on_receive
        self._rng = random.Random(seed)
        self._clock: Clock = clock or RealClock()
        self._queue = queue
        self._holds = bool(delay or jitter or rate or reorder)
        self._send_line = _DelayLine(self._clock, queue, self._deliver_out)
        self._recv_line = _DelayLine(self._clock, queue, self._deliver_in)
        self._link_free_at = 0.0
        self._last_release = {id(self._send_line): 0.0, id(self._recv_line): 0.0}
        self._inbox: deque[bytes] = deque()
        self._unsent: deque[bytes] = deque()  # at most the two copies of one duplicated packet
        self._unsent_item: bytes | None = None
        self._inbox_ready: anyio.Event | None = None
        self._inner_ended = False
        self._task_group: TaskGroup | None = None
        self._closed = False
        self._counts = dict.fromkeys(
            (
                "sent",
                "received",
                "lost",
                "duplicated",
                "reordered",
                "corrupted",
                "queue_drops",
                "dropped_closed",
            ),
            0,
        )

    async def __aenter__(self) -> FaultInjector:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._send_line.run, name="fault-injector-send")
        if self.on_receive:
            self._task_group.start_soon(self._recv_line.run, name="fault-injector-receive-line")
            self._task_group.start_soon(self._pump_in, name="fault-injector-receive")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        if task_group is not None:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(None, None, None)
        await self.aclose()

    # --- impairment --------------------------------------------------------------------------

    def _impair(self, packet: bytes, line: _DelayLine) -> None:
        """Draw this packet's fate and hand its surviving copies to ``line`` (or straight on)."""
        rng = self._rng
        counts = self._counts
        if self.loss and rng.random() < self.loss:
            counts["lost"] += 1
            return
        copies = 1
        if self.duplicate and rng.random() < self.duplicate:
            counts["duplicated"] += 1
            copies = 2
        for _ in range(copies):
            copy = packet
            if self.corrupt and copy and rng.random() < self.corrupt:
                counts["corrupted"] += 1
                damaged = bytearray(copy)
                damaged[rng.randrange(len(damaged))] ^= 1 << rng.randrange(8)
                copy = bytes(damaged)
            held_back = bool(self.reorder) and rng.random() < self.reorder
            if not self._holds:
                self._pass_on(copy, line)
                continue
            if line.full():
                counts["queue_drops"] += 1
                continue
            now = self._clock.now()
            start = now
            if self.rate is not None:
                start = max(now, self._link_free_at) + len(copy) / self.rate
                self._link_free_at = start
            release = start + self.delay + (rng.uniform(0.0, self.jitter) if self.jitter else 0.0)
            release = max(release, self._last_release[id(line)])
            self._last_release[id(line)] = release
            if held_back:
                counts["reordered"] += 1
                release += self.reorder_delay
            line.push(release, copy)

    def _pass_on(self, packet: bytes, line: _DelayLine) -> None:
        if line is self._send_line:
            self._unsent.append(packet)
        else:
            self._to_inbox(packet)

    def _flush_unsent(self) -> bool:
        """Hand copies already drawn to the wrapped device; False while it is full."""
        unsent = self._unsent
        while unsent:
            try:
                self.device.send_nowait(unsent[0])
            except anyio.WouldBlock:
                return False
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._counts["dropped_closed"] += len(unsent)
                unsent.clear()
                raise
            unsent.popleft()
        return True

    async def _deliver_out(self, packet: bytes) -> None:
        try:
            await self.device.send(packet)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._counts["dropped_closed"] += 1

    async def _deliver_in(self, packet: bytes) -> None:
        self._to_inbox(packet)
        await anyio.lowlevel.checkpoint()

    def _to_inbox(self, packet: bytes) -> None:
        if len(self._inbox) >= self._queue:
            self._counts["queue_drops"] += 1
            return
        self._inbox.append(packet)
        if self._inbox_ready is not None:
            self._inbox_ready.set()
            self._inbox_ready = None

    async def _pump_in(self) -> None:
        try:
            while True:
                packet = await self.device.receive()
                self._impair(packet, self._recv_line)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._inner_ended = True
            if self._inbox_ready is not None:
                self._inbox_ready.set()

    def _require_running(self) -> None:
        if self._task_group is None:
            raise RuntimeError(
                "this FaultInjector holds packets (delay, jitter, rate, reorder or on_receive): "
                "use it as `async with FaultInjector(...) as link:`"
            )

    # --- Device ------------------------------------------------------------------------------

    def send_nowait(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._holds:
            self._require_running()
            self._counts["sent"] += 1
            self._impair(item, self._send_line)
            return
        # Copies drawn for a packet the device refused stay drawn: a retry of the same packet
        # only finishes handing them over, so backpressure never changes the random draws.
        retry = bool(self._unsent) and self._unsent_item is item
        if not retry:
            if not self._flush_unsent():
                raise anyio.WouldBlock
            self._counts["sent"] += 1
            self._unsent_item = item
            self._impair(item, self._send_line)
        if not self._flush_unsent():
            raise anyio.WouldBlock

    def receive_nowait(self) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        if not self.on_receive:
            packet = self.device.receive_nowait()
            self._counts["received"] += 1
            return packet
        self._require_running()
        if self._inbox:
            self._counts["received"] += 1
            return self._inbox.popleft()
        if self._inner_ended and len(self._recv_line) == 0:
            raise anyio.EndOfStream
        if self._closed:
            raise anyio.ClosedResourceError
        raise anyio.WouldBlock

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint()
        if self._closed:
            raise anyio.ClosedResourceError
        if self._holds:
            self._require_running()
            self._counts["sent"] += 1
            self._impair(item, self._send_line)
            return
        if not (self._unsent and self._unsent_item is item):
            await self._send_unsent()  # copies left by an abandoned call go first
            self._counts["sent"] += 1
            self._unsent_item = item
            self._impair(item, self._send_line)
        await self._send_unsent()

    async def _send_unsent(self) -> None:
        unsent = self._unsent
        while unsent:
            try:
                await self.device.send(unsent[0])
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._counts["dropped_closed"] += len(unsent)
                unsent.clear()
                raise
            unsent.popleft()

    async def receive(self) -> bytes:
        if not self.on_receive:
            packet = await self.device.receive()
            self._counts["received"] += 1
            return packet
        await anyio.lowlevel.checkpoint()
        while True:
            try:
                return self.receive_nowait()
            except anyio.WouldBlock:
                pass
            if self._inbox_ready is None:
                self._inbox_ready = anyio.Event()
            await self._inbox_ready.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._inbox_ready is not None:
                self._inbox_ready.set()
        await self.device.aclose()

    def stats(self) -> dict[str, int]:
        return {**self._counts, "held": len(self._send_line) + len(self._recv_line)}
