"""The anyio driver of the userspace stack: one task group owning a ``NetCore`` and a device.

``Stack`` runs three tasks: the receive loop (device → core), the transmit loop (core → device,
for packets the device could not take at once) and the timer (the core's earliest deadline,
slept through the ``Clock``). User-facing objects (``TcpStream``, ``TcpListener``,
``UdpSocket``) call the core directly and then ``_after_core``, which is the contract's
"drain transmit, wake, re-read the deadline" step. Core calls never await, so no lock is needed.

Queues and their policies:

* device receive: the receive loop reads as fast as the core digests packets, yielding to
  other tasks every ``rx_batch`` packets; the device's own queue is the bound before that.
* orphans: a ``TcpStream`` dropped without ``aclose`` warns (``ResourceWarning``) and its
  connection is aborted, like an unclosed socket; its finalizer only queues the core socket
  (a finalizer may run in any thread and in the middle of anything) and asks the event loop
  to reap it at its next turn.
* transmit: packets go straight to the device while it has room; otherwise into a queue of at
  most ``tx_queue`` packets drained by the transmit loop, which waits for the device
  (backpressure). User sends (TCP and UDP) wait while that queue is more than half full;
  packets the core produces on its own (ACKs, retransmissions) are dropped and counted when it
  is full, as a NIC's ring would, and TCP recovers. The receive loop therefore never waits on
  transmission, which is what keeps two stacks on a link from deadlocking each other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from anyio.lowlevel import EventLoopToken, checkpoint, current_token

from smolmix_core.clock import Clock, RealClock
from smolmix_core.devices.base import Device
from smolmix_core.errors import ConnectionTimedOut, DeviceError, StackClosed
from smolmix_core.netstack._waiter import Waiter
from smolmix_core.netstack.config import StackConfig
from smolmix_core.netstack.core import Address, NetCore, TcpSocket
from smolmix_core.netstack.request_listener import TcpRequestListener
from smolmix_core.netstack.streams import TcpListener, TcpStream, raise_fresh
from smolmix_core.netstack.tcp_request import DEFAULT_REQUEST_TIMEOUT
from smolmix_core.netstack.udp_socket import UdpSocket

__all__ = ["Stack"]

logger = logging.getLogger("smolmix.netstack")

_TIMER_REPEAT_LIMIT = 50

_DEVICE_GONE = (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError)


class Stack:
    """A userspace TCP/IP stack on a device: ``async with Stack(device, StackConfig()) as stack``.

    The caller owns the device (closing the stack does not close it). The configured MTU is
    lowered to the device's. Leaving the ``async with`` (or ``aclose``) resets every connection,
    wakes every waiter with ``StackClosed`` and leaves no task behind.
    """

    def __init__(
        self,
        device: Device,
        config: StackConfig | None = None,
        *,
        clock: Clock | None = None,
        tx_queue: int = 2048,
        rx_batch: int = 64,
        close_flush_timeout: float = 1.0,
    ) -> None:
        config = config if config is not None else StackConfig()
        if device.mtu < config.mtu:
            config = dataclasses.replace(config, mtu=device.mtu)
        if tx_queue < 2 or rx_batch < 1:
            raise ValueError("tx_queue must be at least 2 and rx_batch at least 1")
        self.device = device
        self.config = config
        self.clock: Clock = clock if clock is not None else RealClock()
        self.core = NetCore(config)
        self._tx_capacity = tx_queue
        self._tx_high = tx_queue // 2
        self._rx_batch = rx_batch
        self._close_flush_timeout = close_flush_timeout
        self._txq: deque[bytes] = deque()
        self._orphans: deque[TcpSocket] = deque()
        self._token: EventLoopToken | None = None
        self._tx_ready: anyio.Event | None = None
        self._tx_room: anyio.Event | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_target = math.inf
        self._waiters: weakref.WeakSet[Waiter] = weakref.WeakSet()
        self._task_group: TaskGroup | None = None
        self._loop_scopes: list[anyio.CancelScope] = []
        self._started = False
        self._closed = False
        self._device_gone = False
        self._counts = dict.fromkeys(
            (
                "device_rx",
                "device_tx",
                "device_rx_errors",
                "device_tx_errors",
                "device_closed",
                "tx_queued",
                "tx_dropped",
                "tx_queue_peak",
                "timer_runs",
                "timer_stalls",
                "driver_errors",
                "streams_collected",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<Stack {self.config.ipv4} {self.config.ipv6} mtu={self.config.mtu}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Stack:
        if self._started:
            raise RuntimeError("a Stack can be entered only once")
        self._started = True
        self._token = current_token()
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        self._task_group.start_soon(self._guard, self._receive_loop, name="netstack-receive")
        self._task_group.start_soon(self._guard, self._transmit_loop, name="netstack-transmit")
        self._task_group.start_soon(self._guard, self._timer_loop, name="netstack-timer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        task_group, self._task_group = self._task_group, None
        try:
            await self.aclose()
        finally:
            if task_group is not None:
                await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Reset every connection, tell peers (briefly flushing the RSTs), wake every waiter."""
        if self._closed:
            await checkpoint()
            return
        self._closed = True
        # Stop our own loops first (the caller's code runs inside the task group's scope too,
        # so the group itself is not cancelled); from here on only this method transmits.
        for scope in self._loop_scopes:
            scope.cancel()
        self.core.shutdown(self._now())
        self._after_core()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._close_flush_timeout):
            await self._flush_transmit()
        self._txq.clear()
        self._wake_everyone()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ public API

    async def tcp_connect(
        self,
        remote: Address,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - measured on the stack's clock, which may be virtual
    ) -> TcpStream:
        """Open a TCP connection; waits for the handshake (``timeout`` in the clock's seconds).

        Raises ``ConnectionRefused`` (RST), ``ConnectionTimedOut`` (SYNs unanswered, or
        ``timeout``), ``HostUnreachable``, ``StackClosed``.
        """
        self._check_usable()
        await checkpoint()
        sock = self.core.tcp_connect(remote, self._now())
        waiter = self._new_waiter()
        sock.user_data = waiter
        self._after_core()
        deadline = None if timeout is None else self._now() + timeout
        try:
            while not sock.established:
                if sock.error is not None:
                    raise_fresh(sock.error)
                self._check_open()
                if deadline is None:
                    await waiter.wait()
                elif not await self._wait_until(waiter, deadline):
                    raise ConnectionTimedOut(
                        f"connecting to {remote[0]}:{remote[1]}: no answer in {timeout} s"
                    )
        except BaseException:
            if sock.established:
                sock.abort(self._now())
            else:
                sock.close(self._now())
            self._after_core()
            raise
        return TcpStream(self, sock, waiter)

    async def tcp_listen(self, local: Address, *, backlog: int | None = None) -> TcpListener:
        """Listen on ``local``: ip ``0.0.0.0``/``::`` is any own address of that family, port 0 any."""
        self._check_usable()
        await checkpoint()
        return TcpListener(self, self.core.tcp_listen(local, backlog=backlog))

    async def tcp_listen_any(self) -> TcpListener:
        """Forwarder mode (``StackConfig.forward_all``): accept connections to any address and port.

        Each accepted stream's ``local_address`` is the destination the peer asked for.
        """
        self._check_usable()
        await checkpoint()
        return TcpListener(self, self.core.tcp_listen_any())

    async def tcp_listen_requests(
        self, *, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> TcpRequestListener:
        """Forwarder mode with deferred accept: each client SYN to any address becomes a
        ``TcpConnectionRequest`` that is answered only when the application says so.

        The exit connects to ``request.dst`` first, then calls ``accept()``, ``refuse()`` or
        ``reject_unreachable(reason)``. Retransmitted SYNs never make a second request.
        Unanswered requests and half-open connections together are bounded by
        ``StackConfig.syn_backlog``: SYNs beyond are dropped and counted
        (``tcp_syn_backlog_drops``) and the client retransmits them. A request not answered
        within ``request_timeout`` seconds is rejected as host unreachable
        (``tcp_requests_expired``). Plain ``tcp_listen_any`` is unchanged; there is at most
        one forwarder listener of either kind.
        """
        self._check_usable()
        await checkpoint()
        return TcpRequestListener(
            self, self.core.tcp_listen_any(deferred=True, request_timeout=request_timeout)
        )

    async def udp_socket(self, port: int | None = None, *, host: str | None = None) -> UdpSocket:
        """Bind a UDP socket: ``port`` None/0 picks an ephemeral port; without ``host`` both
        address families of the interface are bound (on the same port)."""
        self._check_usable()
        await checkpoint()
        core = self.core
        if host is not None:
            return UdpSocket(self, [core.udp_bind((host, port or 0))])
        if not port:
            return UdpSocket(self, [core.udp_bind(None)])
        wildcards = [ip for ip, own in (("0.0.0.0", self.config.ipv4), ("::", self.config.ipv6)) if own]
        sockets = []
        try:
            for wildcard in wildcards:
                sockets.append(core.udp_bind((wildcard, port)))
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        return UdpSocket(self, sockets)

    async def udp_bind_any(self) -> UdpSocket:
        """Forwarder mode: one socket for datagrams to any address; see ``recv_from_any``/``send_from``."""
        self._check_usable()
        await checkpoint()
        return UdpSocket(self, [self.core.udp_bind_any()])

    def stats(self) -> dict[str, int]:
        """Core counters, driver counters (device traffic, transmit queue) and ``device_*`` stats."""
        snapshot = self.core.stats()
        snapshot.update(self._counts)
        snapshot["tx_queue"] = len(self._txq)
        snapshot["waiters"] = len(self._waiters)
        try:
            device_stats = self.device.stats()
        except Exception:  # a device's diagnostics must never break ours
            device_stats = {}
        for key, value in device_stats.items():
            snapshot[f"device.{key}"] = value
        return snapshot

    # ------------------------------------------------------------------ the contract step

    def _after_core(self) -> None:
        """Send what the core produced, wake the sockets it named, re-arm the timer."""
        core = self.core
        if self._orphans:
            self._abort_orphans()
        packets = core.drain_transmit()
        if packets:
            self._transmit(packets)
        for sock in core.drain_wakeups():
            waiter = sock.user_data
            if isinstance(waiter, Waiter):
                waiter.wake()
        deadline = core.poll_deadline()
        if deadline is not None and deadline < self._timer_target and self._timer_scope is not None:
            self._timer_scope.cancel()

    def _transmit(self, packets: list[bytes]) -> None:
        if self._device_gone:
            return
        queue = self._txq
        if not queue:
            device = self.device
            counts = self._counts
            for index, packet in enumerate(packets):
                try:
                    device.send_nowait(packet)
                except anyio.WouldBlock:
                    packets = packets[index:]
                    break
                except DeviceError as exc:
                    counts["device_tx_errors"] += 1
                    logger.debug("netstack: device refused a packet: %s", exc)
                    continue
                except _DEVICE_GONE:
                    self._on_device_gone()
                    return
                counts["device_tx"] += 1
            else:
                return
        room = self._tx_capacity - len(queue)
        if len(packets) > room:
            self._counts["tx_dropped"] += len(packets) - room
            packets = packets[:room]
        queue.extend(packets)
        self._counts["tx_queued"] += len(packets)
        if len(queue) > self._counts["tx_queue_peak"]:
            self._counts["tx_queue_peak"] = len(queue)
        if self._tx_ready is not None:
            self._tx_ready.set()
            self._tx_ready = None

    def _transmit_backlogged(self) -> bool:
        return len(self._txq) > self._tx_high

    async def _wait_transmit_room(self) -> None:
        while len(self._txq) > self._tx_high and not self._device_gone:
            if self._tx_room is None:
                self._tx_room = anyio.Event()
            await self._tx_room.wait()

    # ------------------------------------------------------------------ background tasks

    async def _guard(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a loop; an unexpected exception is logged and counted and closes the stack."""
        try:
            with anyio.CancelScope() as scope:
                self._loop_scopes.append(scope)
                if self._closed:
                    scope.cancel()
                await loop()
        except Exception:
            self._counts["driver_errors"] += 1
            logger.exception("netstack: driver task failed; shutting the stack down")
            self.core.shutdown(self._now())
            self._after_core()
            self._wake_everyone()

    async def _receive_loop(self) -> None:
        device = self.device
        core = self.core
        clock = self.clock
        counts = self._counts
        batch = self._rx_batch
        burst = 0
        while True:
            try:
                try:
                    packet = device.receive_nowait()
                except anyio.WouldBlock:
                    burst = 0
                    packet = await device.receive()
            except _DEVICE_GONE:
                self._on_device_gone()
                return
            except DeviceError as exc:
                counts["device_rx_errors"] += 1
                logger.debug("netstack: device read failed: %s", exc)
                await checkpoint()
                continue
            counts["device_rx"] += 1
            core.receive_packet(packet, clock.now())
            self._after_core()
            burst += 1
            if burst >= batch:
                burst = 0
                await checkpoint()

    async def _transmit_loop(self) -> None:
        queue = self._txq
        device = self.device
        counts = self._counts
        while True:
            if not queue:
                self._tx_ready = anyio.Event()
                await self._tx_ready.wait()
                continue
            try:
                try:
                    device.send_nowait(queue[0])
                except anyio.WouldBlock:
                    await device.send(queue[0])
            except DeviceError:
                counts["device_tx_errors"] += 1
            except _DEVICE_GONE:
                self._on_device_gone()
                return
            else:
                counts["device_tx"] += 1
            queue.popleft()
            if len(queue) <= self._tx_high and self._tx_room is not None:
                self._tx_room.set()
                self._tx_room = None

    async def _flush_transmit(self) -> None:
        queue = self._txq
        device = self.device
        while queue and not self._device_gone:
            packet = queue.popleft()
            try:
                await device.send(packet)
            except _DEVICE_GONE:
                break
            except DeviceError:
                self._counts["device_tx_errors"] += 1
            else:
                self._counts["device_tx"] += 1

    async def _timer_loop(self) -> None:
        core = self.core
        clock = self.clock
        handled: float | None = None
        repeats = 0
        while True:
            deadline = core.poll_deadline()
            if deadline is not None and deadline <= clock.now():
                # A deadline that survives its own handling means the core made no progress;
                # give the clock 10 ms instead of spinning (and freezing virtual time).
                repeats = repeats + 1 if deadline == handled else 0
                handled = deadline
                if repeats >= _TIMER_REPEAT_LIMIT:
                    repeats = 0
                    self._counts["timer_stalls"] += 1
                    logger.warning("netstack: a timer at %.6f keeps firing without progress", deadline)
                    await clock.sleep(0.01)
                self._counts["timer_runs"] += 1
                core.handle_timeouts(clock.now())
                self._after_core()
                await checkpoint()
                continue
            self._timer_target = math.inf if deadline is None else deadline
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                if deadline is None:
                    await anyio.sleep_forever()
                else:
                    await clock.sleep_until(deadline)
            self._timer_scope = None
            self._timer_target = math.inf

    # ------------------------------------------------------------------ dropped streams

    def _orphaned(self, sock: TcpSocket) -> None:
        """A stream was garbage-collected unclosed (called from its finalizer, any thread)."""
        if self._closed or self._token is None:
            return
        self._orphans.append(sock)
        token = self._token
        try:
            token.backend_class.run_sync_soon(self._reap_orphans, (), token.native_token)
        except Exception:  # the loop is gone or going: the next core call, or shutdown, reaps it
            pass

    def _reap_orphans(self) -> None:
        """Runs as an event-loop callback, between tasks: a safe moment to call the core."""
        try:
            if self._orphans and not self._closed:
                self._after_core()
        except Exception:
            self._counts["driver_errors"] += 1
            logger.exception("netstack: aborting a dropped stream failed")

    def _abort_orphans(self) -> None:
        now = self._now()
        while self._orphans:
            sock = self._orphans.popleft()
            self._counts["streams_collected"] += 1
            if not self._closed:
                sock.abort(now)

    # ------------------------------------------------------------------ helpers

    def _now(self) -> float:
        return self.clock.now()

    def _new_waiter(self) -> Waiter:
        waiter = Waiter()
        self._waiters.add(waiter)
        return waiter

    def _check_usable(self) -> None:
        if not self._started or self._task_group is None:
            if self._closed:
                raise StackClosed("the network stack is closed")
            raise RuntimeError("use the stack inside `async with Stack(...) as stack:`")
        self._check_open()

    def _check_open(self) -> None:
        if self._closed or self._device_gone:
            raise StackClosed("the network stack is closed" if self._closed else "the device closed")

    def _on_device_gone(self) -> None:
        if self._device_gone:
            return
        self._device_gone = True
        self._counts["device_closed"] = 1
        self._txq.clear()
        logger.info("netstack: the device closed; shutting the stack down")
        self.core.shutdown(self._now())
        self._after_core()
        self._wake_everyone()

    def _wake_everyone(self) -> None:
        for waiter in list(self._waiters):
            waiter.wake()
        for event in (self._tx_room, self._tx_ready):
            if event is not None:
                event.set()
        self._tx_room = None

    async def _wait_until(self, waiter: Waiter, deadline: float) -> bool:
        """Wait for ``waiter`` or the clock reaching ``deadline``; False if the deadline came first."""
        timed_out = False
        async with anyio.create_task_group() as group:

            async def alarm() -> None:
                nonlocal timed_out
                await self.clock.sleep_until(deadline)
                timed_out = True
                group.cancel_scope.cancel()

            group.start_soon(alarm)
            await waiter.wait()
            group.cancel_scope.cancel()
        return not timed_out
