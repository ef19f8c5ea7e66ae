"""Our stack and the Linux kernel on tiny links: no packet of ours ever exceeds the MTU.

At 68 bytes (IPv4's minimum) only our side can send data: Linux never sends segments of less
than 48 data bytes (``tcp_min_snd_mss``), so its own 88-byte packets do not fit the link and it
drops them itself. At 88 bytes both sides move data; the path reorders so that our ACKs carry
SACK blocks beside timestamps in the little room there is. IPv6 runs at its minimum, 1280.
"""

from __future__ import annotations

import random

import anyio
import pytest
from anyio.abc import SocketAttribute
from kernel_peer import (
    KERNEL_IPV4,
    KERNEL_IPV6,
    STACK_IPV4,
    SizeTap,
    exchange,
    kernel_connect,
    kernel_listener,
    kernel_peer,
    sha,
)

from smolmix_core.devices import Device, FaultInjector
from smolmix_core.netstack import Stack, TcpStreamAttribute
from smolmix_core.wire import PROTO_TCP, parse_ip, parse_tcp

pytestmark = [pytest.mark.anyio, pytest.mark.interop, pytest.mark.root]


class _SackCounter(SizeTap):
    """A ``SizeTap`` that also counts the segments we send with SACK blocks."""

    def __init__(self, device: Device) -> None:
        super().__init__(device)
        self.sack_segments = 0

    def _dropped(self, packet: bytes) -> bool:
        ip = parse_ip(packet)
        if ip.protocol == PROTO_TCP:
            header, _ = parse_tcp(ip.payload, ip.src, ip.dst)
            self.sack_segments += bool(header.options.sack_blocks)
        return super()._dropped(packet)


@pytest.mark.parametrize("direction", ["our-client", "kernel-client"])
async def test_at_mtu_68_we_send_to_the_kernel_in_packets_that_fit(direction: str) -> None:
    payload = random.Random(21).randbytes(40_000)
    with kernel_peer(mtu=68) as peer:
        tap = SizeTap(peer.tun)
        async with Stack(tap, peer.stack_config) as stack:
            with anyio.fail_after(60):
                if direction == "our-client":
                    listener = await kernel_listener(peer, KERNEL_IPV4)
                    port = listener.extra(SocketAttribute.local_port)
                    async with listener, anyio.create_task_group() as tg:
                        results: dict[str, str] = {}

                        async def kernel_side() -> None:
                            results["kernel"] = await exchange(await listener.accept(), b"")

                        tg.start_soon(kernel_side)
                        stream = await stack.tcp_connect((KERNEL_IPV4, port))
                        info = stream.extra(TcpStreamAttribute.tcp_info)()
                        assert await exchange(stream, payload) == sha(b"")
                    assert results["kernel"] == sha(payload)
                else:
                    ours = await stack.tcp_listen(("0.0.0.0", 8080))
                    conn = await kernel_connect(peer, STACK_IPV4, 8080)
                    stream = await ours.accept()
                    info = stream.extra(TcpStreamAttribute.tcp_info)()
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(exchange, stream, payload)
                        assert await exchange(conn, b"") == sha(payload)
        stats = stack.stats()
    assert info["path_mss"] == 28
    assert info["mss"] == 16  # the kernel offered timestamps: 12 of the 28 bytes go to them
    assert max(tap.sent_sizes) == 68
    assert stats["packets_oversize"] == 0
    assert stats["tcp_rto_timeouts"] == 0


async def test_at_mtu_88_both_ways_through_reordering_our_sack_acks_fit() -> None:
    up, down = random.Random(22).randbytes(60_000), random.Random(23).randbytes(60_000)
    results: dict[str, str] = {}
    with kernel_peer(mtu=88) as peer:
        path = FaultInjector(peer.tun, seed=7, reorder=0.05, delay=0.002, jitter=0.002, on_receive=True)
        async with path:
            tap = _SackCounter(path)
            listener = await kernel_listener(peer, KERNEL_IPV4)
            port = listener.extra(SocketAttribute.local_port)
            async with listener, Stack(tap, peer.stack_config) as stack, anyio.create_task_group() as tg:

                async def kernel_side() -> None:
                    results["kernel"] = await exchange(await listener.accept(), down)

                tg.start_soon(kernel_side)
                with anyio.fail_after(60):
                    stream = await stack.tcp_connect((KERNEL_IPV4, port))
                    results["stack"] = await exchange(stream, up)
            stats = stack.stats()
    assert results == {"kernel": sha(up), "stack": sha(down)}
    assert max(tap.sent_sizes) == 88
    assert tap.sack_segments > 0
    assert stats["packets_oversize"] == 0


async def test_ipv6_at_its_minimum_mtu_both_ways_through_reordering() -> None:
    up, down = random.Random(24).randbytes(1_000_000), random.Random(25).randbytes(1_000_000)
    results: dict[str, str] = {}
    with kernel_peer(mtu=1280) as peer:
        path = FaultInjector(peer.tun, seed=8, reorder=0.02, delay=0.002, jitter=0.002, on_receive=True)
        async with path:
            tap = _SackCounter(path)
            listener = await kernel_listener(peer, KERNEL_IPV6)
            port = listener.extra(SocketAttribute.local_port)
            async with listener, Stack(tap, peer.stack_config) as stack, anyio.create_task_group() as tg:

                async def kernel_side() -> None:
                    results["kernel"] = await exchange(await listener.accept(), down)

                tg.start_soon(kernel_side)
                with anyio.fail_after(60):
                    stream = await stack.tcp_connect((KERNEL_IPV6, port))
                    info = stream.extra(TcpStreamAttribute.tcp_info)()
                    results["stack"] = await exchange(stream, up)
            stats = stack.stats()
    assert results == {"kernel": sha(up), "stack": sha(down)}
    assert info["path_mss"] == 1220
    assert max(tap.sent_sizes) == 1280
    assert tap.sack_segments > 0
    assert stats["packets_oversize"] == 0
