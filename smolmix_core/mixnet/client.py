"""``SphinxClient``: the anyio driver around the sans-I/O ``MixnetClientCore``.

It owns the gateway link and four tasks:

- the **main stream** fires at ``Exp(message_sending_average_delay)`` intervals and sends one
  packet each time: a queued real packet if there is one, loop cover otherwise (spec §11);
- the **loop cover stream** sends loop cover at ``Exp(loop_cover_traffic_average_delay)``;
- the **receiver** feeds everything the gateway pushes into the core and hands reassembled
  messages to ``receive()``;
- the **timer** runs the core's retransmission and expiry deadlines.

In **fast mode** (``SphinxClientConfig.fast()``) there are no per-hop delays, no cover and no
Poisson pacing: queued packets go out as fast as the gateway link accepts them, in bursts of up to
``fast_burst_packets`` written together (so every hop handles a burst per wake-up) and never more
than ``max_packets_in_flight`` awaiting their ack. That is for tests and benchmarks; it gives no
unlinkability against a network observer.

Bounds: ``send``/``send_anonymous``/``reply`` wait while the core holds ``max_queued_packets`` or
more packets (backpressure; one message may overshoot the bound). Received messages wait in a
queue of ``receive_queue_size``; when the application does not read, the receiver waits, and the
gateway's own bounded queues take over from there. Time comes from ``smolmix_core.clock``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from smolmix_core.clock import Clock, RealClock
from smolmix_core.errors import GatewayError, LinkError, MixnetClientClosed, MixnetQueueFull
from smolmix_core.mixnet.client_core import (
    ClientCoreConfig,
    MixnetClientCore,
    OutgoingPacket,
    check_max_retransmissions,
)
from smolmix_core.mixnet.gateway_link import GatewayLink
from smolmix_core.mixnet.interface import MixnetClient, ReceivedMessage
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.topology import Gateway, Topology

logger = logging.getLogger("smolmix.mixnet")

_RECONNECT_ATTEMPTS = 5


@dataclass(frozen=True)
class SphinxClientConfig:
    """Traffic shape of a ``SphinxClient``; per-hop delays live in ``core``."""

    message_sending_average_delay: float = 0.020
    loop_cover_traffic_average_delay: float = 0.200
    disable_main_poisson_packet_distribution: bool = False
    """Send queued packets at once instead of on Poisson ticks (no cover from the main stream)."""
    disable_loop_cover_traffic_stream: bool = False
    max_queued_packets: int = 2048
    max_packets_in_flight: int | None = 128
    """Fast mode only: stop taking packets from the queue while this many await their ack, so
    the mixnet's queues stay short and acks come back well within their timeout."""
    receive_queue_size: int = 1024
    fast_burst_packets: int = 32
    """Fast mode only: packets built and written to the gateway together, so every hop of the
    network handles them as one burst (one wake-up, one write) instead of one at a time."""
    core: ClientCoreConfig = field(default_factory=ClientCoreConfig)

    def __post_init__(self) -> None:
        if self.fast_burst_packets < 1:
            raise ValueError(f"fast_burst_packets must be at least 1, got {self.fast_burst_packets}")

    @classmethod
    def fast(cls, **overrides: object) -> SphinxClientConfig:
        """No per-hop delays, no cover, no pacing: for tests and benchmarks only."""
        core = overrides.pop("core", None)
        if not isinstance(core, ClientCoreConfig):
            core = replace(ClientCoreConfig(), average_packet_delay=0.0, average_ack_delay=0.0)
        base = cls(
            disable_main_poisson_packet_distribution=True,
            disable_loop_cover_traffic_stream=True,
            core=core,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]


class SphinxClient(MixnetClient):
    """A pure-Python Nym-style client: Sphinx packets, acks, SURB replies, Poisson and cover traffic.

    Start it inside a task group you own (``await SphinxClient.start(tg, ...)``) or let it own
    one (``async with SphinxClient.connect(...) as client``). ``aclose()`` stops every task.
    """

    def __init__(
        self,
        topology: Topology,
        gateway: Gateway,
        *,
        keys: ClientKeys | None = None,
        config: SphinxClientConfig | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.topology = topology
        self.gateway = gateway
        self.keys = keys or ClientKeys.generate()
        self.config = config or SphinxClientConfig()
        self.clock = clock or RealClock()
        self._rng = rng or random.Random()
        self._core = MixnetClientCore(self.keys, gateway, topology, self.config.core, rng=self._rng)
        self._received_in, self._received_out = anyio.create_memory_object_stream[ReceivedMessage](
            self.config.receive_queue_size
        )
        self._link: GatewayLink | None = None
        self._link_lock = anyio.Lock()
        self._work = anyio.Event()
        self._space = anyio.Event()
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_deadline: float | None = None
        self._scope: anyio.CancelScope | None = None
        self._finished = anyio.Event()
        self._closed = False
        self.packets_sent = 0
        self.reconnections = 0
        self.cover_packets_sent = 0

    # --- construction -------------------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        task_group: anyio.abc.TaskGroup,
        topology: Topology,
        gateway: Gateway | None = None,
        **kwargs: object,
    ) -> SphinxClient:
        """Connect to the gateway and run the client's tasks in ``task_group``."""
        chosen = gateway or topology.gateways[0]
        client = cls(topology, chosen, **kwargs)  # type: ignore[arg-type]
        await task_group.start(client._run)
        return client

    @classmethod
    @asynccontextmanager
    async def connect(
        cls, topology: Topology, gateway: Gateway | None = None, **kwargs: object
    ) -> AsyncIterator[SphinxClient]:
        """``async with SphinxClient.connect(topology) as client:`` — the client owns its tasks."""
        async with anyio.create_task_group() as tg:
            client = await cls.start(tg, topology, gateway, **kwargs)
            try:
                yield client
            finally:
                await client.aclose()

    # --- MixnetClient ---------------------------------------------------------------------------

    @property
    def address(self) -> Recipient:
        return self._core.address

    async def send(
        self,
        recipient: Recipient,
        data: bytes,
        *,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        check_max_retransmissions(max_retransmissions)
        await self._submit(
            lambda now: self._core.send_plain(
                recipient, data, now, lane=lane, max_retransmissions=max_retransmissions
            )
        )

    async def send_anonymous(
        self,
        recipient: Recipient,
        data: bytes,
        *,
        reply_surbs: int = 10,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        """Send a Repliable message; ``SurbError`` if ``reply_surbs`` exceeds what one request may carry
        (``maximum_allowed_reply_surb_request_size``), checked before waiting for queue space."""
        self._core.check_reply_surbs(reply_surbs)
        check_max_retransmissions(max_retransmissions)
        await self._submit(
            lambda now: self._core.send_anonymous(
                recipient,
                data,
                now,
                reply_surbs=reply_surbs,
                lane=lane,
                max_retransmissions=max_retransmissions,
            )
        )

    async def reply(
        self,
        sender_tag: bytes,
        data: bytes,
        *,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        check_max_retransmissions(max_retransmissions)
        await self._submit(
            lambda now: self._core.reply(
                sender_tag, data, now, lane=lane, max_retransmissions=max_retransmissions
            )
        )

    async def receive(self) -> ReceivedMessage:
        try:
            return await self._received_out.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise MixnetClientClosed("the mixnet client is closed") from None

    async def aclose(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._finished.wait()
        self._closed = True
        self._received_in.close()
        self._received_out.close()

    # --- lanes and stats ------------------------------------------------------------------------

    def lane_queue_length(self, lane: int | None) -> int:
        return self._core.lane_queue_length(lane)

    def close_lane(self, lane: int) -> None:
        self._core.close_lane(lane)
        self._signal_space()

    @property
    def queued_packets(self) -> int:
        return self._core.queued_packets

    def stats(self) -> dict[str, int]:
        stats = dict(self._core.stats())
        stats["packets_sent"] = self.packets_sent
        stats["cover_packets_sent"] = self.cover_packets_sent
        stats["reconnections"] = self.reconnections
        stats["received_waiting"] = self._received_out.statistics().current_buffer_used
        return stats

    # --- driver ---------------------------------------------------------------------------------

    async def _submit(self, queue_message: Callable[[float], None]) -> None:
        while True:
            if self._closed:
                raise MixnetClientClosed("the mixnet client is closed")
            if self._core.queued_packets < self.config.max_queued_packets:
                try:
                    queue_message(self.clock.now())
                    break
                except MixnetQueueFull:
                    if self._core.free_fragment_slots == self._core.config.max_pending_fragments:
                        raise  # the message alone exceeds the core's bound: it can never fit
            await self._space.wait()
        self._signal_work()

    def _signal_work(self) -> None:
        self._work.set()
        self._poke_timer()

    def _poke_timer(self) -> None:
        """Wake the timer task only if the core now has a deadline earlier than its sleep."""
        if self._timer_scope is None:
            return
        deadline = self._core.poll_deadline()
        if deadline is not None and (self._timer_deadline is None or deadline < self._timer_deadline):
            self._timer_scope.cancel()

    def _signal_space(self) -> None:
        self._space.set()
        self._space = anyio.Event()

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the link (its errors reach the caller of ``start``), then run the tasks.

        Once started, a failure inside the client closes the client (``receive`` reports it)
        and is logged; it never propagates into the task group that hosts the client.
        """
        try:
            self._link = await self._open_link()
        except BaseException:
            self._closed = True
            self._received_in.close()
            self._finished.set()
            raise
        try:
            try:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._main_stream, name="sphinx-client main stream")
                        if not self.config.disable_loop_cover_traffic_stream:
                            tg.start_soon(self._loop_cover_stream, name="sphinx-client loop cover")
                        tg.start_soon(self._receiver, name="sphinx-client receiver")
                        tg.start_soon(self._timer, name="sphinx-client timers")
                        task_status.started()
            except* MixnetClientClosed as group:
                logger.warning("sphinx client stopped: %s", group.exceptions[0])
            except* Exception:
                logger.exception("sphinx client failed; closing it")
        finally:
            self._closed = True
            self._received_in.close()
            self._space.set()
            with anyio.CancelScope(shield=True):
                if self._link is not None:
                    with anyio.move_on_after(2):
                        await self._link.aclose()
            self._finished.set()

    async def _open_link(self) -> GatewayLink:
        return await GatewayLink.connect(
            self.gateway.client_url, self.gateway.identity, self.keys.identity_secret
        )

    async def _with_link(self, action: Callable[[GatewayLink], Awaitable[None]]) -> None:
        """Run ``action`` on the link, reconnecting (a few times, with backoff) if it failed."""
        for attempt in range(_RECONNECT_ATTEMPTS):
            link = self._link
            assert link is not None
            try:
                await action(link)
                return
            except LinkError as exc:
                logger.warning("gateway link lost (%s); reconnecting", exc)
            async with self._link_lock:
                if self._link is link:
                    with anyio.move_on_after(1):
                        await link.aclose()
                    await self.clock.sleep(0.1 * 2**attempt)
                    try:
                        self._link = await self._open_link()
                        self.reconnections += 1
                    except (LinkError, GatewayError) as exc:
                        logger.warning("reconnecting to the gateway failed: %s", exc)
        raise MixnetClientClosed("lost the gateway link and could not reconnect")

    async def _transmit(self, packets: list[OutgoingPacket]) -> None:
        """Hand ``packets`` to the gateway in one write, then start their ack timers."""
        await self._with_link(
            lambda link: link.send_many([(packet.first_hop_address, packet.packet) for packet in packets])
        )
        now = self.clock.now()
        for packet in packets:
            self._core.packet_sent(packet, now)
            if packet.is_cover:
                self.cover_packets_sent += 1
            else:
                self.packets_sent += 1
        self._signal_space()
        self._poke_timer()

    def _delay(self, mean: float) -> float:
        return self._rng.expovariate(1.0 / mean) if mean > 0 else 0.0

    async def _main_stream(self) -> None:
        if self.config.disable_main_poisson_packet_distribution:
            window = self.config.max_packets_in_flight
            burst = self.config.fast_burst_packets
            while True:
                batch: list[OutgoingPacket] = []
                now = self.clock.now()
                while len(batch) < burst and (window is None or self._core.packets_in_flight < window):
                    packet = self._core.next_real_packet(now)
                    if packet is None:
                        break
                    batch.append(packet)
                if not batch:
                    work = self._work
                    await work.wait()
                    if work is self._work:
                        self._work = anyio.Event()
                    continue
                await self._transmit(batch)
        mean = self.config.message_sending_average_delay
        next_tick = self.clock.now()
        while True:
            next_tick += self._delay(mean)
            await self.clock.sleep_until(next_tick)
            now = self.clock.now()
            packet = self._core.next_real_packet(now) or self._core.make_loop_cover(now)
            await self._transmit([packet])
            next_tick = max(next_tick, self.clock.now() - mean)

    async def _loop_cover_stream(self) -> None:
        mean = self.config.loop_cover_traffic_average_delay
        while True:
            await self.clock.sleep(self._delay(mean))
            await self._transmit([self._core.make_loop_cover(self.clock.now())])

    async def _receiver(self) -> None:
        async def receive_burst(link: GatewayLink) -> None:
            payloads = await link.receive_many()
            now = self.clock.now()
            for payload in payloads:
                self._core.handle_gateway_payload(payload, now)

        while True:
            await self._with_link(receive_burst)
            for message in self._core.drain_received():
                await self._received_in.send(message)
            self._signal_space()
            if self._core.queued_packets:
                self._signal_work()

    async def _timer(self) -> None:
        while True:
            deadline = self._core.poll_deadline()
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                self._timer_deadline = deadline
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await self.clock.sleep_until(deadline)
            self._timer_scope = None
            self._timer_deadline = None
            before = self._core.queued_packets
            self._core.handle_timeouts(self.clock.now())
            if self._core.queued_packets > before:
                self._work.set()


__all__ = ["SphinxClient", "SphinxClientConfig"]
