"""Our stack against the Linux kernel's TCP/UDP through a TUN interface in a network namespace.

Runs as root on Linux (CI does); elsewhere every test skips with the reason.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import anyio
import pytest
from anyio.abc import SocketStream, UDPSocket
from kernel_peer import (
    KERNEL_IPV4,
    KERNEL_IPV6,
    STACK_IPV4,
    STACK_IPV6,
    KernelPeer,
    exchange,
    family_of,
    kernel_listener,
    kernel_peer,
    sha,
)

from smolmix_core.errors import ConnectionRefused
from smolmix_core.netstack import Stack

pytestmark = [pytest.mark.anyio, pytest.mark.interop, pytest.mark.root]

BULK = 20 * 1024 * 1024


@pytest.fixture
def peer() -> Iterator[KernelPeer]:
    with kernel_peer() as kernel:
        yield kernel


async def test_our_client_moves_20_mb_each_way_with_the_kernel_ipv4(peer: KernelPeer) -> None:
    up, down = random.Random(1).randbytes(BULK), random.Random(2).randbytes(BULK)
    listener = await kernel_listener(peer, KERNEL_IPV4)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    results: dict[str, str] = {}
    async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:

        async def kernel_side() -> None:
            async with listener:
                stream = await listener.accept()
                assert stream.extra(anyio.abc.SocketAttribute.remote_address)[0] == STACK_IPV4
                results["kernel"] = await exchange(stream, down)

        tg.start_soon(kernel_side)
        with anyio.fail_after(120):
            client = await stack.tcp_connect((KERNEL_IPV4, port))
            results["stack"] = await exchange(client, up)
    assert results == {"kernel": sha(up), "stack": sha(down)}
    assert stack.stats()["bad_checksum"] == 0


async def test_kernel_client_moves_20_mb_each_way_with_our_server_ipv6(peer: KernelPeer) -> None:
    up, down = random.Random(3).randbytes(BULK), random.Random(4).randbytes(BULK)
    results: dict[str, str] = {}
    async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
        listener = await stack.tcp_listen(("::", 8080))

        async def our_side() -> None:
            stream = await listener.accept()
            assert stream.remote_address[0] == KERNEL_IPV6
            results["stack"] = await exchange(stream, down)

        tg.start_soon(our_side)
        with anyio.fail_after(120):
            sock = await peer.run(lambda: socket.create_connection((STACK_IPV6, 8080), timeout=10))
            results["kernel"] = await exchange(await SocketStream.from_socket(sock), up)
    assert results == {"stack": sha(up), "kernel": sha(down)}


async def test_fifty_concurrent_connections_to_a_kernel_echo_server(peer: KernelPeer) -> None:
    listener = await kernel_listener(peer, KERNEL_IPV4)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def echo(stream: SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk)

    echoed: dict[int, bool] = {}
    async with listener, Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)

        async def client(index: int) -> None:
            payload = random.Random(index).randbytes(100_000)
            stream = await stack.tcp_connect((KERNEL_IPV4, port))
            async with anyio.create_task_group() as io:
                io.start_soon(stream.send, payload)
                received = b""
                while len(received) < len(payload):
                    received += await stream.receive()
            await stream.aclose()
            echoed[index] = received == payload

        with anyio.fail_after(60):
            async with anyio.create_task_group() as clients:
                for index in range(50):
                    clients.start_soon(client, index)
        tg.cancel_scope.cancel()
    assert echoed == dict.fromkeys(range(50), True)


@pytest.mark.parametrize("kernel_ip", [KERNEL_IPV4, KERNEL_IPV6], ids=["ipv4", "ipv6"])
async def test_udp_echo_with_the_kernel(peer: KernelPeer, kernel_ip: str) -> None:
    def make() -> socket.socket:
        sock = socket.socket(family_of(kernel_ip), socket.SOCK_DGRAM)
        sock.bind((kernel_ip, 0))
        return sock

    kernel_udp = await UDPSocket.from_socket(await peer.run(make))
    port = kernel_udp.extra(anyio.abc.SocketAttribute.local_port)
    async with Stack(peer.tun, peer.stack_config) as stack, kernel_udp, anyio.create_task_group() as tg:

        async def echo() -> None:
            async for data, sender in kernel_udp:
                await kernel_udp.sendto(data[::-1], *sender[:2])

        tg.start_soon(echo)
        ours = await stack.udp_socket()
        with anyio.fail_after(10):
            for size in (1, 100, 1000, peer.mtu - (28 if ":" not in kernel_ip else 48)):
                payload = random.Random(size).randbytes(size)
                await ours.send_to(payload, (kernel_ip, port))
                data, sender = await ours.recv_from()
                assert data == payload[::-1]
                assert sender == (kernel_ip, port)
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("kernel_ip", [KERNEL_IPV4, KERNEL_IPV6], ids=["ipv4", "ipv6"])
async def test_connection_refused_by_the_kernel(peer: KernelPeer, kernel_ip: str) -> None:
    async with Stack(peer.tun, peer.stack_config) as stack:
        with anyio.fail_after(10), pytest.raises(ConnectionRefused):
            await stack.tcp_connect((kernel_ip, 9))  # nothing listens: the kernel answers RST
        assert stack.stats()["tcp_sockets"] == 0


async def test_kernel_sees_refusal_from_our_stack(peer: KernelPeer) -> None:
    async with Stack(peer.tun, peer.stack_config):

        def connect() -> None:
            socket.create_connection((STACK_IPV4, 9), timeout=10).close()

        with anyio.fail_after(15), pytest.raises(ConnectionRefusedError):
            await peer.run(connect)
