"""Mix nodes: receive framed Sphinx packets over TCP, peel a layer, hold each for its delay, forward.

``SphinxHop`` is the part every Sphinx hop shares (the gateway builds on it too): an anyio TCP
listener, one task per inbound connection, framing, Sphinx processing with a replay filter,
faults for tests, a link monitor, counters and rate-limited drop logs on ``smolmix.mixnet``.
Bad input never stops the node: a packet that fails processing is dropped and counted; a stream
whose framing breaks is closed (it cannot be resynchronised) and counted; every other
connection carries on.

``MixNodeServer`` adds the mixing itself: a packet is released ``delay_ns`` after it arrived,
read from ``smolmix_core.clock``. The delay queue is bounded (``delay_queue_size``); when full, new
packets are dropped and counted, since holding them longer would break the delay distribution and
refusing to read would stall unrelated senders.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple, Self

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from smolmix_core.clock import Clock, RealClock
from smolmix_core.errors import FramingError, MacMismatch, ReplayDetected, RoutingAddressError, SphinxError
from smolmix_core.mixnet.forwarder import Address, Forwarder
from smolmix_core.mixnet.framing import Frame, FrameDecoder, PacketType, encode_frame
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import FinalHop, ForwardHop, PacketSize, ReplayFilter, SphinxProcessor

logger = logging.getLogger("smolmix.mixnet")

_READ_SIZE = 65536
_LOG_INTERVAL = 1.0
_NEXT_HOP_CACHE = 4096


class LinkObservation(NamedTuple):
    """One packet seen on a link: ``direction`` is ``"in"``/``"out"`` on mix links, ``"uplink"``
    for a client's packet reaching its gateway and ``"push"`` for a payload a gateway delivers."""

    node: str
    direction: str
    peer: str
    size: int


LinkMonitor = Callable[[LinkObservation], None]
FaultHook = Callable[[bytes], bool]


@dataclass
class NodeConfig:
    """Listening address, queue bounds and test hooks of a mix node or gateway."""

    host: str = "127.0.0.1"
    port: int = 0
    delay_queue_size: int = 100_000
    forward_queue_size: int = 1024
    replay_capacity: int = 200_000
    max_connections: int = 1024
    drop_probability: float = 0.0
    """Fraction of well-framed packets dropped on arrival (a seeded fault for tests)."""
    fault_seed: int | None = None
    fault: FaultHook | None = None
    """Called with each packet; returning True drops it (on top of ``drop_probability``)."""
    ignore_delays: bool = False
    """Forward at once whatever delay the header asks for (benchmarks)."""


class SphinxHop:
    """A node that listens for framed Sphinx packets and processes them; subclasses route results."""

    def __init__(
        self,
        sphinx_private_key: bytes,
        *,
        name: str,
        config: NodeConfig | None = None,
        clock: Clock | None = None,
        monitor: LinkMonitor | None = None,
    ) -> None:
        self.name = name
        self.config = config or NodeConfig()
        self.clock = clock or RealClock()
        self.monitor = monitor
        self.counters: Counter[str] = Counter()
        self._processor = SphinxProcessor(
            sphinx_private_key, replay_filter=ReplayFilter(self.config.replay_capacity)
        )
        self.sphinx_key = self._processor.public_key
        self._fault_rng = random.Random(self.config.fault_seed)
        self._last_log: dict[str, float] = {}
        self._connections = 0
        self._next_hops: dict[bytes, Address] = {}
        self._forwarder: Forwarder | None = None
        self._exit_group: anyio.abc.TaskGroup | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return self.config.host

    @property
    def address(self) -> Address:
        return (self.config.host, self.port)

    @property
    def forwarder(self) -> Forwarder:
        if self._forwarder is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._forwarder

    def stats(self) -> dict[str, int]:
        """Counters: packets received/forwarded/delivered and every drop reason."""
        stats = dict(self.counters)
        stats["connections"] = self._connections
        return stats

    # --- lifecycle --------------------------------------------------------------------------

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started()`` once the listener is bound."""
        listener = await anyio.create_tcp_listener(local_host=self.config.host, local_port=self.config.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        try:
            async with anyio.create_task_group() as tg:
                self._forwarder = Forwarder(
                    tg,
                    self.clock,
                    name=self.name,
                    queue_size=self.config.forward_queue_size,
                    counters=self.counters,
                    on_sent=self._observe_sent if self.monitor else None,
                )
                await self._start_extra(tg)
                tg.start_soon(listener.serve, self._handle_mix_connection, tg)
                logger.info("%s listening on %s:%d", self.name, self.config.host, self.port)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            if self._forwarder is not None:
                self._forwarder.close()
            with anyio.CancelScope(shield=True):
                await listener.aclose()

    async def _start_extra(self, task_group: anyio.abc.TaskGroup) -> None:
        """Subclasses start more listeners or tasks here, before ``serve`` reports started."""

    async def __aenter__(self) -> Self:
        group = self._exit_group = anyio.create_task_group()
        await group.__aenter__()
        try:
            await group.start(self.serve)
        except BaseException as exc:
            group.cancel_scope.cancel()
            await group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        group, self._exit_group = self._exit_group, None
        if group is not None:
            group.cancel_scope.cancel()
            await group.__aexit__(exc_type, exc, tb)

    # --- inbound ----------------------------------------------------------------------------

    async def _handle_mix_connection(self, stream: anyio.abc.SocketStream) -> None:
        try:
            await self._serve_mix_connection(stream)
        except Exception:
            self.counters["internal_errors"] += 1
            logger.exception("%s: a mix connection failed unexpectedly", self.name)

    async def _serve_mix_connection(self, stream: anyio.abc.SocketStream) -> None:
        if self._connections >= self.config.max_connections:
            self.counters["connections_refused"] += 1
            self._log_drop("too_many_connections", "refusing a connection: %d open", self._connections)
            await anyio.aclose_forcefully(stream)
            return
        self._connections += 1
        peer = _peer_name(stream)
        decoder = FrameDecoder()
        try:
            async with stream:
                while True:
                    try:
                        data = await stream.receive(_READ_SIZE)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                        return
                    decoder.feed(data)
                    try:
                        while (frame := decoder.next_frame()) is not None:
                            await self._accept_frame(frame, peer)
                    except FramingError as exc:
                        self.counters["dropped_bad_framing"] += 1
                        self._log_drop("bad_framing", "closing the link from %s: %s", peer, exc)
                        return
        finally:
            self._connections -= 1
            if decoder.buffered:
                self.counters["truncated_frames"] += 1

    async def _accept_frame(self, frame: Frame, peer: str) -> None:
        self.counters["packets_received"] += 1
        if self.monitor is not None:
            self.monitor(LinkObservation(self.name, "in", peer, len(frame.packet)))
        if frame.packet_type is PacketType.OUTFOX:
            self.counters["dropped_unsupported"] += 1
            self._log_drop("unsupported", "dropping an Outfox packet from %s", peer)
            return
        if self._faulty(frame.packet):
            self.counters["dropped_fault"] += 1
            return
        try:
            result = self._processor.process(frame.packet)
        except ReplayDetected:
            self.counters["dropped_replay"] += 1
            self._log_drop("replay", "dropping a replayed packet from %s", peer)
            return
        except MacMismatch:
            self.counters["dropped_bad_mac"] += 1
            self._log_drop("bad_mac", "dropping a packet with a bad header MAC from %s", peer)
            return
        except (SphinxError, ValueError) as exc:
            self.counters["dropped_malformed"] += 1
            self._log_drop("malformed", "dropping a malformed packet from %s: %s", peer, exc)
            return
        self.counters["packets_processed"] += 1
        if isinstance(result, ForwardHop):
            await self._on_forward_hop(result, frame)
        else:
            await self._on_final_hop(result, frame)

    def _faulty(self, packet: bytes) -> bool:
        config = self.config
        if config.drop_probability > 0 and self._fault_rng.random() < config.drop_probability:
            return True
        return config.fault is not None and config.fault(packet)

    async def _on_forward_hop(self, hop: ForwardHop, frame: Frame) -> None:
        self.counters["dropped_unexpected_forward"] += 1
        self._log_drop("unexpected_forward", "%s is not a mix: dropping a forward hop", self.name)

    async def _on_final_hop(self, hop: FinalHop, frame: Frame) -> None:
        self.counters["dropped_unexpected_final"] += 1
        self._log_drop("unexpected_final", "%s is not a gateway: dropping a final hop", self.name)

    # --- outbound ---------------------------------------------------------------------------

    def _next_hop(self, padded: bytes) -> Address | None:
        """The address at the start of ``padded``; like upstream, the padding bytes are ignored."""
        address = self._next_hops.get(padded)
        if address is not None:
            return address
        try:
            address = NymNodeRoutingAddress.parse_prefix(padded)[0].address
        except RoutingAddressError as exc:
            self.counters["dropped_bad_next_hop"] += 1
            self._log_drop("bad_next_hop", "dropping a packet with an unusable next hop: %s", exc)
            return None
        if len(self._next_hops) >= _NEXT_HOP_CACHE:
            self._next_hops.clear()
        self._next_hops[padded] = address
        return address

    def _observe_sent(self, address: Address, frame: bytes) -> None:
        if self.monitor is not None:
            self.monitor(LinkObservation(self.name, "out", f"{address[0]}:{address[1]}", _framed_size(frame)))

    def _log_drop(self, reason: str, message: str, *args: Any) -> None:
        """One warning per reason per second, so a flood of garbage cannot flood the log."""
        now = self.clock.now()
        last = self._last_log.get(reason)
        if last is None or now - last >= _LOG_INTERVAL:
            self._last_log[reason] = now
            logger.warning("%s: " + message, self.name, *args)


class MixNodeServer(SphinxHop):
    """A mix node of one layer: processes, delays and forwards packets to the next hop."""

    def __init__(
        self,
        sphinx_private_key: bytes,
        identity: bytes,
        *,
        layer: int,
        name: str | None = None,
        config: NodeConfig | None = None,
        clock: Clock | None = None,
        monitor: LinkMonitor | None = None,
    ) -> None:
        super().__init__(
            sphinx_private_key, name=name or f"mix-l{layer}", config=config, clock=clock, monitor=monitor
        )
        self.identity = identity
        self.layer = layer
        self._delayed: list[tuple[float, int, Address, bytes]] = []
        self._sequence = itertools.count()
        self._sleep_scope: anyio.CancelScope | None = None

    def stats(self) -> dict[str, int]:
        stats = super().stats()
        stats["delay_queue"] = len(self._delayed)
        return stats

    async def _start_extra(self, task_group: anyio.abc.TaskGroup) -> None:
        task_group.start_soon(self._release_delayed, name=f"{self.name} delay queue")

    async def _on_forward_hop(self, hop: ForwardHop, frame: Frame) -> None:
        address = self._next_hop(hop.next_address)
        if address is None:
            return
        framed = encode_frame(hop.packet, packet_type=frame.packet_type)
        if hop.delay_ns == 0 or self.config.ignore_delays:
            await self.forwarder.send(address, framed)
            return
        if len(self._delayed) >= self.config.delay_queue_size:
            self.counters["dropped_delay_queue_full"] += 1
            self._log_drop("delay_queue_full", "delay queue full (%d): dropping a packet", len(self._delayed))
            return
        release = self.clock.now() + hop.delay_ns / 1e9
        earliest = self._delayed[0][0] if self._delayed else None
        heapq.heappush(self._delayed, (release, next(self._sequence), address, framed))
        if (earliest is None or release < earliest) and self._sleep_scope is not None:
            self._sleep_scope.cancel()

    async def _release_delayed(self) -> None:
        """Send each held packet when its time comes; sleeps until the earliest release."""
        while True:
            if self._delayed and self._delayed[0][0] <= self.clock.now():
                _, _, address, framed = heapq.heappop(self._delayed)
                await self.forwarder.send(address, framed)
                continue
            with anyio.CancelScope() as scope:
                self._sleep_scope = scope
                if self._delayed:
                    await self.clock.sleep_until(self._delayed[0][0])
                else:
                    await anyio.sleep_forever()
            self._sleep_scope = None


def _peer_name(stream: anyio.abc.SocketStream) -> str:
    try:
        remote = stream.extra(anyio.abc.SocketAttribute.remote_address)
    except anyio.TypedAttributeLookupError:
        return "?"
    if isinstance(remote, tuple):
        return f"{remote[0]}:{remote[1]}"
    return str(remote)


def _framed_size(frame: bytes) -> int:
    first = frame[0]
    if first < 7:
        return len(frame) - 2
    tag = frame[1]
    try:
        size = PacketSize.from_tag(tag)
    except SphinxError:
        return -1
    return size.total_size


__all__ = ["LinkMonitor", "LinkObservation", "MixNodeServer", "NodeConfig", "SphinxHop"]
