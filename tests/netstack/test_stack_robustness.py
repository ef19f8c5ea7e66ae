"""Bad input at the driver level: junk from the device, a failing or closed device, full queues.

The driver must keep running, other connections must be unaffected, and counters must move.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import warnings
from typing import Any

import anyio
import pytest
from stack_pair import A4, B4, read_all, stack_pair

from smolmix_core.clock import VirtualClock
from smolmix_core.devices import Device
from smolmix_core.errors import ConnectionReset, DeviceError, StackClosed
from smolmix_core.netstack import Stack, TcpStream
from smolmix_core.netstack.core import NetCore
from smolmix_core.wire import PROTO_TCP, PROTO_UDP, TcpHeader, UdpHeader, emit_ip, emit_tcp, emit_udp

pytestmark = pytest.mark.anyio


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _junk(rng: random.Random) -> bytes:
    """One bad or unwanted packet aimed at stack B, never at a live connection's four-tuple."""
    kind = rng.randrange(8)
    a, b = _packed(A4), _packed(B4)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 1400))
    if kind == 1:
        return bytes([0x45]) + rng.randbytes(rng.randrange(0, 19))  # truncated IPv4 header
    if kind == 2:
        packet = bytearray(emit_ip(a, b, PROTO_UDP, emit_udp(UdpHeader(1, 2), b"x", a, b)))
        packet[10] ^= 0xFF  # IPv4 header checksum broken
        return bytes(packet)
    if kind == 3:
        segment = bytearray(emit_tcp(TcpHeader(40000, 80, 1, 1, 0x10, 100), b"data", a, b))
        segment[-1] ^= 0x01  # TCP checksum broken
        return emit_ip(a, b, PROTO_TCP, bytes(segment))
    if kind == 4:
        flags = rng.choice([0x02, 0x04, 0x10, 0x11, 0x12, 0x3F])
        header = TcpHeader(
            rng.randrange(1, 1024), rng.randrange(1000, 2000), rng.getrandbits(32), 0, flags, 0
        )
        return emit_ip(a, b, PROTO_TCP, emit_tcp(header, b"", a, b))  # to ports nobody uses
    if kind == 5:
        return emit_ip(a, b, PROTO_UDP, emit_udp(UdpHeader(5, rng.randrange(1000, 2000)), b"?", a, b))
    if kind == 6:
        other = _packed("10.7.7.7")
        return emit_ip(a, other, PROTO_UDP, emit_udp(UdpHeader(5, 6), b"not for us", a, other))
    return bytes([0x60]) + rng.randbytes(rng.randrange(0, 60))  # broken IPv6


async def _transfer(client: TcpStream, server: TcpStream, size: int, seed: int) -> None:
    payload = random.Random(seed).randbytes(size)
    async with anyio.create_task_group() as tg:

        async def write() -> None:
            await client.send(payload)
            await client.send_eof()

        tg.start_soon(write)
        received = await read_all(server)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()


async def _connected_pairs(
    a: Stack, b: Stack, count: int, port: int = 80
) -> list[tuple[TcpStream, TcpStream]]:
    listener = await b.tcp_listen(("0.0.0.0", port))
    pairs = []
    for _ in range(count):
        client = await a.tcp_connect((B4, port))
        pairs.append((client, await listener.accept()))
    await listener.aclose()
    return pairs


async def test_junk_from_the_device_is_counted_and_harms_no_connection() -> None:
    raw: dict[str, Device] = {}

    def keep(device: Device, side: str) -> Device:
        raw[side] = device
        return device

    rng = random.Random(5)
    async with stack_pair(wrap=keep) as (a, b):
        pairs = await _connected_pairs(a, b, 3)
        before = b.stats()
        async with anyio.create_task_group() as tg:
            for index, (client, server) in enumerate(pairs):
                tg.start_soon(_transfer, client, server, 2_000_000, index)
            for _ in range(3000):
                await raw["a"].send(_junk(rng))
        after = b.stats()
        assert after["driver_errors"] == 0
        assert after["internal_errors"] == 0
        for counter in ("malformed", "bad_checksum", "not_for_us", "tcp_no_socket", "udp_no_socket"):
            assert after[counter] > before[counter], counter
        # the stack still works for new connections
        ((client, server),) = await _connected_pairs(a, b, 1, port=81)
        await _transfer(client, server, 10_000, 99)


class FlakyDevice(Device):
    """Only the plain ObjectStream surface (no fast paths), failing every ``every``-th send and
    receive with DeviceError."""

    def __init__(self, device: Device, every: int) -> None:
        self.device = device
        self.mtu = device.mtu
        self.every = every
        self.sends = 0
        self.receives = 0

    async def send(self, item: bytes) -> None:
        self.sends += 1
        if self.sends % self.every == 0:
            raise DeviceError("flaky transmit")
        await self.device.send(item)

    async def receive(self) -> bytes:
        packet = await self.device.receive()
        self.receives += 1
        if self.receives % self.every == 0:
            raise DeviceError("flaky receive")  # the packet is lost, as a failed read would lose it
        return packet

    async def aclose(self) -> None:
        await self.device.aclose()

    def stats(self) -> dict[str, int]:
        return self.device.stats()


async def test_device_errors_are_counted_and_tcp_recovers() -> None:
    async with stack_pair(wrap=lambda device, side: FlakyDevice(device, 97)) as (a, b):
        ((client, server),) = await _connected_pairs(a, b, 1)
        await _transfer(client, server, 1_000_000, 1)
        await _transfer(server, client, 1_000_000, 2)
        for stats in (a.stats(), b.stats()):
            assert stats["device_tx_errors"] > 0
            assert stats["device_rx_errors"] > 0
            assert stats["driver_errors"] == 0
        assert a.stats()["tcp_retransmits"] + b.stats()["tcp_retransmits"] > 0


async def test_tiny_queues_drop_and_count_but_data_survives() -> None:
    options: dict[str, Any] = {"tx_queue": 4}
    clock = VirtualClock()  # the drops cost retransmission timeouts: let them pass in virtual time
    async with (
        clock.running(),
        stack_pair(capacity=2, stack_options=options, clock=clock) as (a, b),
    ):
        pairs = await _connected_pairs(a, b, 4)
        async with anyio.create_task_group() as tg:
            for index, (client, server) in enumerate(pairs):
                tg.start_soon(_transfer, client, server, 300_000, index)
                tg.start_soon(_transfer, server, client, 300_000, index + 10)
        stats = a.stats()
        assert stats["tx_queue_peak"] <= 4
        assert stats["tx_dropped"] + b.stats()["tx_dropped"] > 0

        receiver = await b.udp_socket(53)
        sender = await a.udp_socket()
        for i in range(1000):
            await sender.send_to(b"%d" % i, (B4, 53))
        await clock.sleep(0.05)
        assert b.stats()["udp_queue_drops"] > 0
        got = [await receiver.recv_from() for _ in range(b.config.udp_queue)]
        assert got[0] == (b"0", (A4, sender.port))  # the oldest were kept, the newest dropped
        await sender.send_to(b"still works", (B4, 53))
        assert (await receiver.recv_from())[0] == b"still works"


async def test_a_closed_device_shuts_the_stack_down_cleanly() -> None:
    raw: dict[str, Device] = {}

    def keep(device: Device, side: str) -> Device:
        raw[side] = device
        return device

    errors: list[BaseException] = []
    async with stack_pair(wrap=keep) as (a, b):
        ((client, server),) = await _connected_pairs(a, b, 1)

        async def keep_sending() -> None:
            try:
                while True:
                    await client.send(b"x" * 65536)
            except StackClosed as exc:
                errors.append(exc)

        async def keep_reading() -> None:
            try:
                while True:
                    await server.receive()
            except StackClosed as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(keep_sending)
            tg.start_soon(keep_reading)
            await anyio.sleep(0.1)
            await raw["a"].aclose()  # pull the cable out from under stack A
        assert len(errors) == 2
        assert a.stats()["device_closed"] == 1
        assert b.stats()["device_closed"] == 1  # B's end of the link saw end-of-stream
        with pytest.raises(StackClosed):
            await a.tcp_connect((B4, 80))
        assert a.stats()["driver_errors"] == 0


class StuckTimerCore(NetCore):
    """A core whose first timer never clears: the driver must not spin on it forever."""

    def poll_deadline(self) -> float | None:
        real = super().poll_deadline()
        return 0.5 if real is None else min(real, 0.5)


async def test_a_timer_that_never_clears_does_not_freeze_the_driver() -> None:
    clock = VirtualClock()
    async with clock.running(), stack_pair(clock=clock) as (a, b):
        a.core.__class__ = StuckTimerCore
        await clock.sleep(1.0)  # virtual time still advances past the stuck deadline
        assert a.stats()["timer_stalls"] > 0
        ((client, server),) = await _connected_pairs(a, b, 1)
        await _transfer(client, server, 100_000, 7)


async def test_a_stream_dropped_without_aclose_warns_and_resets_its_connection() -> None:
    async with stack_pair() as (stack_a, stack_b):
        listener = await stack_b.tcp_listen((B4, 80))
        client = await stack_a.tcp_connect((B4, 80))
        server = await listener.accept()
        await client.send(b"hello")
        assert await server.receive() == b"hello"
        held = [client]
        del client
        with pytest.warns(ResourceWarning, match="unclosed <TcpStream"):
            held.clear()  # the last reference: collected at once
        with anyio.fail_after(5), pytest.raises(ConnectionReset):
            await server.receive()
        assert stack_a.stats()["streams_collected"] == 1
        assert stack_a.stats()["tcp_sockets"] == 0
        await server.aclose()


def test_a_stream_collected_in_another_thread_is_reaped_by_the_loop() -> None:
    """The finalizer may run in any thread; the loop still does the abort, at its next turn."""

    async def main() -> None:
        async with stack_pair() as (stack_a, stack_b):
            listener = await stack_b.tcp_listen((B4, 80))
            streams = [await stack_a.tcp_connect((B4, 80))]
            server = await listener.accept()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                await anyio.to_thread.run_sync(streams.clear)
            with anyio.fail_after(5), pytest.raises(ConnectionReset):
                await server.receive()
            assert stack_a.stats()["tcp_sockets"] == 0

    for backend in ("asyncio", "trio"):
        anyio.run(main, backend=backend)
