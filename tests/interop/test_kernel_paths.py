"""Our stack and the Linux kernel across bad paths: loss, delay, jitter and reordering; a long
round trip with lost SYNs; a kernel router in front of a narrow link (path MTU discovery from
real ICMP errors); and a kernel router with no route at all.

netem is not available in every kernel (it is not here), so the path impairments come from our
``FaultInjector`` wrapped around the TUN device, in both directions. Each test builds and
removes its own namespaces; they skip with the reason when not root.
"""

from __future__ import annotations

import io
import itertools
import random
import socket
import struct

import anyio
import pytest
from anyio.abc import SocketAttribute, UDPSocket
from kernel_peer import (
    KERNEL_IPV4,
    KERNEL_IPV6,
    SERVER_IPV4,
    SERVER_IPV6,
    STACK_IPV4,
    UNROUTED_IPV4,
    UNROUTED_IPV6,
    SizeTap,
    exchange,
    is_syn,
    kernel_connect,
    kernel_listener,
    kernel_peer,
    routed_peer,
    sha,
)

from smolmix_core.devices import FaultInjector, PcapWriter
from smolmix_core.errors import HostUnreachable, MessageTooLarge
from smolmix_core.netstack import Stack, TcpStreamAttribute

pytestmark = [pytest.mark.anyio, pytest.mark.interop, pytest.mark.root]


def _pcap_records(data: bytes) -> list[tuple[float, bytes]]:
    records, offset = [], 24
    while offset < len(data):
        seconds, micros, captured, _ = struct.unpack_from("<IIII", data, offset)
        offset += 16
        records.append((seconds + micros / 1e6, data[offset : offset + captured]))
        offset += captured
    return records


async def test_lossy_jittery_reordering_path_moves_2_mb_each_way() -> None:
    """1 % loss each way (2 % per round trip), 20-30 ms each way, 2 % of packets held back."""
    up, down = random.Random(11).randbytes(2_000_000), random.Random(12).randbytes(2_000_000)
    results: dict[str, str] = {}
    with kernel_peer() as peer:
        path = FaultInjector(
            peer.tun, seed=5, loss=0.01, delay=0.02, jitter=0.01, reorder=0.02, on_receive=True, queue=4096
        )
        listener = await kernel_listener(peer, KERNEL_IPV4)
        port = listener.extra(SocketAttribute.local_port)
        async with path, Stack(path, peer.stack_config) as stack, anyio.create_task_group() as tg:

            async def kernel_side() -> None:
                async with listener:
                    results["kernel"] = await exchange(await listener.accept(), down)

            tg.start_soon(kernel_side)
            with anyio.fail_after(120):
                stream = await stack.tcp_connect((KERNEL_IPV4, port))
                results["stack"] = await exchange(stream, up)
        stats = stack.stats()
    assert results == {"kernel": sha(up), "stack": sha(down)}
    assert stats["device.lost"] > 20
    assert stats["device.reordered"] > 20
    assert stats["tcp_retransmits"] > 0
    assert stats["bad_checksum"] == 0


async def test_syn_retransmissions_back_off_on_a_long_round_trip_then_data_flows() -> None:
    """600 ms round trip, the first two SYNs lost: SYNs 1 s then 2 s apart (RFC 6298, no storm),
    one SYN per timeout, and a kernel client's connection then carries data both ways."""
    capture = io.BytesIO()
    writer = PcapWriter(capture)
    up, down = random.Random(13).randbytes(200_000), random.Random(14).randbytes(200_000)
    results: dict[str, str] = {}
    with kernel_peer() as peer:
        path = FaultInjector(peer.tun, seed=6, delay=0.3, on_receive=True)
        listener = await kernel_listener(peer, KERNEL_IPV6)
        port = listener.extra(SocketAttribute.local_port)
        async with path:
            device = writer.tap(SizeTap(path, drop_syns=2))
            async with Stack(device, peer.stack_config) as stack, anyio.create_task_group() as tg:

                async def kernel_side() -> None:
                    async with listener:
                        results["kernel"] = await exchange(await listener.accept(), down)

                tg.start_soon(kernel_side)
                with anyio.fail_after(60):
                    stream = await stack.tcp_connect((KERNEL_IPV6, port))
                    info = stream.extra(TcpStreamAttribute.tcp_info)()
                    results["stack"] = await exchange(stream, up)
            stats = stack.stats()
    writer.close()
    syn_times = [when for when, packet in _pcap_records(capture.getvalue()) if is_syn(packet)]
    assert len(syn_times) == 3
    gaps = [later - earlier for earlier, later in itertools.pairwise(syn_times)]
    assert 0.95 <= gaps[0] <= 1.5
    assert 1.95 <= gaps[1] <= 2.8
    assert stats["tcp_syn_retransmits"] == 2
    assert results == {"kernel": sha(up), "stack": sha(down)}
    srtt = info["srtt"]
    assert isinstance(srtt, float)
    assert 0.55 <= srtt <= 1.5  # measured from the timestamp echo of the SYN that got through


@pytest.mark.parametrize(
    ("server", "bottleneck"), [(SERVER_IPV4, 1000), (SERVER_IPV6, 1280)], ids=["ipv4-1000", "ipv6-1280"]
)
async def test_kernel_router_icmp_lowers_our_mss_and_the_transfer_completes(
    server: str, bottleneck: int
) -> None:
    """The server advertises an MSS for 1500 bytes; the router in between forwards only
    ``bottleneck``-byte packets and says so with ICMP. No black hole: the segments in flight are
    cut down and everything later fits."""
    up, down = random.Random(15).randbytes(2_000_000), random.Random(16).randbytes(1_000_000)
    results: dict[str, str] = {}
    with routed_peer(bottleneck) as peer:
        listener = await kernel_listener(peer, server)
        port = listener.extra(SocketAttribute.local_port)
        tap = SizeTap(peer.tun)
        async with listener, Stack(tap, peer.stack_config) as stack:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:

                    async def kernel_side() -> None:
                        results["kernel"] = await exchange(await listener.accept(), down)

                    tg.start_soon(kernel_side)
                    stream = await stack.tcp_connect((server, port))
                    before = stream.extra(TcpStreamAttribute.tcp_info)()
                    results["stack"] = await exchange(stream, up)
                    after = stream.extra(TcpStreamAttribute.tcp_info)()
                # a later connection to that server starts with what the first one learnt
                second = await stack.tcp_connect((server, port))
                later = second.extra(TcpStreamAttribute.tcp_info)()
                second.abort()
        stats = stack.stats()
    assert results == {"kernel": sha(up), "stack": sha(down)}
    overhead = 40 if ":" not in server else 60
    assert before["path_mss"] == 1500 - overhead
    assert after["path_mss"] == bottleneck - overhead
    assert after["mss"] == bottleneck - overhead - 12  # timestamps on every segment
    assert later["path_mss"] == bottleneck - overhead
    assert stats["tcp_pmtu_reductions"] == 1
    assert stats["pmtu_learned"] == 1
    assert stats["icmp_errors_received"] >= 1
    oversized = sum(size > bottleneck for size in tap.sent_sizes)
    assert 1 <= oversized <= 10  # the first flight only: every later packet fits
    assert stats["tcp_rto_timeouts"] == 0


@pytest.mark.parametrize("address", [UNROUTED_IPV4, UNROUTED_IPV6], ids=["ipv4", "ipv6"])
async def test_kernel_router_without_a_route_fails_connect_at_once(address: str) -> None:
    with routed_peer(1500) as peer:
        async with Stack(peer.tun, peer.stack_config) as stack:
            with anyio.fail_after(10), pytest.raises(HostUnreachable):
                await stack.tcp_connect((address, 80))
            stats = stack.stats()
    assert stats["tcp_syn_retransmits"] == 0  # the first ICMP error ends it, no SYN backoff
    assert stats["icmp_errors_received"] == 1
    assert stats["tcp_sockets"] == 0


async def test_kernel_client_through_the_router_gets_our_answers_cut_to_the_path() -> None:
    """Path MTU discovery when we are the server: the kernel client's SYN promises 1460-byte
    segments, the router between us allows 1000-byte packets."""
    payload = random.Random(17).randbytes(500_000)
    with routed_peer(1000) as peer:
        async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
            listener = await stack.tcp_listen(("0.0.0.0", 8080))
            infos: list[dict[str, object]] = []

            async def our_side() -> None:
                stream = await listener.accept()
                infos.append(stream.extra(TcpStreamAttribute.tcp_info)())
                assert await exchange(stream, payload) == sha(payload)
                infos.append(stream.extra(TcpStreamAttribute.tcp_info)())

            tg.start_soon(our_side)
            with anyio.fail_after(30):
                conn = await kernel_connect(peer, STACK_IPV4, 8080)
                assert await exchange(conn, payload) == sha(payload)
        stats = stack.stats()
    assert infos[0]["peer_mss"] == 1460
    assert infos[1]["path_mss"] == 960
    assert stats["tcp_pmtu_reductions"] == 1


async def test_kernel_router_icmp_teaches_udp_the_path_mtu() -> None:
    """A datagram too big for the narrow link vanishes at the router; its ICMP makes the next
    one of that size raise MessageTooLarge, and a datagram that fits arrives."""
    with routed_peer(1000) as peer:

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((SERVER_IPV4, 0))
            return sock

        kernel_udp = await UDPSocket.from_socket(await peer.run(make))
        port = kernel_udp.extra(SocketAttribute.local_port)
        async with kernel_udp, Stack(peer.tun, peer.stack_config) as stack:
            ours = await stack.udp_socket()
            with anyio.fail_after(10):
                await ours.send_to(b"x" * 1400, (SERVER_IPV4, port))
                while stack.stats()["pmtu_learned"] == 0:  # noqa: ASYNC110 - no event for it
                    await anyio.sleep(0.01)
                with pytest.raises(MessageTooLarge, match="path MTU"):
                    await ours.send_to(b"x" * 1400, (SERVER_IPV4, port))
                await ours.send_to(b"y" * 972, (SERVER_IPV4, port))
                data, sender = await kernel_udp.receive()
    assert data == b"y" * 972
    assert sender[0] == STACK_IPV4
