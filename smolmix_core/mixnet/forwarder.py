"""Persistent outbound TCP connections from a node to the next hops, one bounded queue each.

Policy when a hop's queue is full: ``send(..., wait=True)`` waits (backpressure that reaches the
sender through TCP), ``wait=False`` drops the packet and counts it. A node uses ``wait=False`` for
traffic it must never stall on (a gateway launching SURB-ACKs), so the forwarding graph has no
waiting cycle. A hop that cannot be reached is retried with backoff; packets queued for it in the
meantime are dropped and counted rather than held, so nobody waits forever on a dead hop.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from smolmix_core.clock import Clock

logger = logging.getLogger("smolmix.mixnet")

Address = tuple[str, int]
DEFAULT_QUEUE_SIZE = 1024
_BATCH_BYTES = 256 * 1024
_CONNECT_TIMEOUT = 3.0
_MAX_BACKOFF = 2.0


class Forwarder:
    """Queues framed packets per next-hop address and writes them over one connection per hop."""

    def __init__(
        self,
        task_group: anyio.abc.TaskGroup,
        clock: Clock,
        *,
        name: str,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        counters: Counter[str] | None = None,
        on_sent: Callable[[Address, bytes], None] | None = None,
    ) -> None:
        self._task_group = task_group
        self._clock = clock
        self._name = name
        self._queue_size = queue_size
        self._queues: dict[Address, MemoryObjectSendStream[bytes]] = {}
        self._closed = False
        self.counters: Counter[str] = counters if counters is not None else Counter()
        self._on_sent = on_sent

    def queue_length(self, address: Address) -> int:
        queue = self._queues.get(address)
        return 0 if queue is None else queue.statistics().current_buffer_used

    async def send(self, address: Address, frame: bytes, *, wait: bool = True) -> bool:
        """Queue one framed packet for ``address``; returns False if it was dropped."""
        if self._closed:
            self.counters["dropped_closed"] += 1
            return False
        queue = self._queues.get(address)
        if queue is None:
            queue = self._open_queue(address)
        try:
            try:
                queue.send_nowait(frame)  # the common case, without a scheduling round trip
            except anyio.WouldBlock:
                if not wait:
                    self.counters["dropped_queue_full"] += 1
                    return False
                await queue.send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.counters["dropped_closed"] += 1
            return False
        return True

    def _open_queue(self, address: Address) -> MemoryObjectSendStream[bytes]:
        sender, receiver = anyio.create_memory_object_stream[bytes](self._queue_size)
        self._queues[address] = sender
        self._task_group.start_soon(
            self._run_hop, address, receiver, name=f"{self._name}→{address[0]}:{address[1]}"
        )
        return sender

    async def _run_hop(self, address: Address, queue: MemoryObjectReceiveStream[bytes]) -> None:
        backoff = 0.05
        stream: anyio.abc.SocketStream | None = None
        async with queue:
            try:
                async for first in queue:
                    if stream is None:
                        stream = await self._connect(address)
                        if stream is None:
                            self.counters["dropped_unreachable"] += 1 + self._drain(queue)
                            await self._clock.sleep(backoff)
                            self.counters["dropped_unreachable"] += self._drain(queue)
                            backoff = min(_MAX_BACKOFF, backoff * 2)
                            continue
                        backoff = 0.05
                    batch = [first]
                    size = len(first)
                    while size < _BATCH_BYTES:
                        try:
                            item = queue.receive_nowait()
                        except anyio.WouldBlock:
                            break
                        batch.append(item)
                        size += len(item)
                    try:
                        await stream.send(b"".join(batch))
                    except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
                        logger.warning("%s: link to %s:%d failed: %r", self._name, *address, exc)
                        self.counters["dropped_link_failed"] += len(batch)
                        await anyio.aclose_forcefully(stream)
                        stream = None
                        continue
                    self.counters["packets_forwarded"] += len(batch)
                    if self._on_sent is not None:
                        for frame in batch:
                            self._on_sent(address, frame)
            finally:
                if stream is not None:
                    with anyio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(stream)

    async def _connect(self, address: Address) -> anyio.abc.SocketStream | None:
        try:
            with anyio.fail_after(_CONNECT_TIMEOUT):
                stream = await anyio.connect_tcp(*address)
        except (OSError, TimeoutError) as exc:
            self.counters["connect_failures"] += 1
            logger.warning("%s: cannot reach next hop %s:%d: %r", self._name, *address, exc)
            return None
        self.counters["connections_opened"] += 1
        return stream

    def _drain(self, queue: MemoryObjectReceiveStream[bytes]) -> int:
        dropped = 0
        while True:
            try:
                queue.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                return dropped
            dropped += 1

    def close(self) -> None:
        """Stop accepting packets; hop tasks finish once their queues drain."""
        self._closed = True
        for queue in self._queues.values():
            queue.close()
        self._queues.clear()


__all__ = ["Address", "Forwarder"]
