"""Our stack against kernels configured the other ways, and kernel peers that end connections
the other ways: no SACK / timestamps / window scaling, FIN riding on the last data, RST in the
middle of a transfer, half-closes from either side, and data sent before we accept.

Each test builds (and removes) its own namespace; they skip with the reason when not root.
"""

from __future__ import annotations

import random
import socket
import struct

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from kernel_peer import (
    KERNEL_IPV4,
    KERNEL_IPV6,
    STACK_IPV4,
    STACK_IPV6,
    exchange,
    kernel_connect,
    kernel_listener,
    kernel_peer,
    read_to_eof,
    sha,
)

from smolmix_core.devices import FaultInjector
from smolmix_core.errors import ConnectionReset
from smolmix_core.netstack import Stack, TcpStreamAttribute

pytestmark = [pytest.mark.anyio, pytest.mark.interop, pytest.mark.root]

SIZE = 1_000_000
SYSCTLS = ["tcp_sack", "tcp_timestamps", "tcp_window_scaling"]


@pytest.mark.parametrize("sysctl", SYSCTLS)
@pytest.mark.parametrize("role", ["our-client", "our-server"])
async def test_kernel_without_an_option_moves_data_intact_over_a_lossy_link(sysctl: str, role: str) -> None:
    """1 % loss each way makes both ends recover without the option (NewReno without SACK)."""
    up, down = random.Random(1).randbytes(SIZE), random.Random(2).randbytes(SIZE)
    results: dict[str, str] = {}
    infos: list[dict[str, object]] = []
    with kernel_peer(sysctls={f"net.ipv4.{sysctl}": "0"}) as peer:
        link = FaultInjector(peer.tun, seed=7, loss=0.01, on_receive=True)
        async with link, Stack(link, peer.stack_config) as stack, anyio.create_task_group() as tg:
            if role == "our-client":
                listener = await kernel_listener(peer, KERNEL_IPV4)

                async def kernel_side() -> None:
                    async with listener:
                        results["kernel"] = await exchange(await listener.accept(), down)

                tg.start_soon(kernel_side)
                port = listener.extra(SocketAttribute.local_port)
                with anyio.fail_after(60):
                    stream = await stack.tcp_connect((KERNEL_IPV4, port))
                    infos.append(stream.extra(TcpStreamAttribute.tcp_info)())
                    results["stack"] = await exchange(stream, up)
            else:
                ours = await stack.tcp_listen(("::", 8080))

                async def our_side() -> None:
                    stream = await ours.accept()
                    infos.append(stream.extra(TcpStreamAttribute.tcp_info)())
                    results["stack"] = await exchange(stream, up)

                tg.start_soon(our_side)
                with anyio.fail_after(60):
                    results["kernel"] = await exchange(await kernel_connect(peer, STACK_IPV6, 8080), down)
        stats = stack.stats()
    assert results == {"kernel": sha(up), "stack": sha(down)}
    assert stats["device.lost"] > 0
    assert stats["tcp_retransmits"] > 0
    (info,) = infos
    negotiated = {"tcp_sack": "sack", "tcp_timestamps": "timestamps", "tcp_window_scaling": "window_scaling"}
    assert {option: info[option] for option in negotiated.values()} == {
        option: name != sysctl for name, option in negotiated.items()
    }


async def test_kernel_server_sends_a_large_response_then_closes() -> None:
    """The last data segment and the FIN arrive together (or close together) and nothing is lost."""
    response = random.Random(3).randbytes(4_000_000)
    with kernel_peer() as peer:
        listener = await kernel_listener(peer, KERNEL_IPV4)
        port = listener.extra(SocketAttribute.local_port)
        async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:

            async def kernel_server() -> None:
                async with listener, await listener.accept() as conn:
                    assert await conn.receive() == b"GET"
                    await conn.send(response)
                # closed with nothing unread: FIN, not RST

            tg.start_soon(kernel_server)
            with anyio.fail_after(30):
                client = await stack.tcp_connect((KERNEL_IPV4, port))
                await client.send(b"GET")
                received = await read_to_eof(client)
                assert client.state == "CLOSE-WAIT"
                await client.aclose()
    assert sha(received) == sha(response)


async def test_kernel_server_resetting_mid_transfer_raises_connection_reset() -> None:
    with kernel_peer() as peer:
        listener = await kernel_listener(peer, KERNEL_IPV6)
        port = listener.extra(SocketAttribute.local_port)
        async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
            started = anyio.Event()

            async def kernel_server() -> None:
                async with listener:
                    conn = await listener.accept()
                    await conn.send(b"x" * 300_000)
                    started.set()
                    raw = conn.extra(SocketAttribute.raw_socket)
                    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    await conn.aclose()  # abortive close: RST

            tg.start_soon(kernel_server)
            with anyio.fail_after(30):
                client = await stack.tcp_connect((KERNEL_IPV6, port))
                await started.wait()
                with pytest.raises(ConnectionReset):
                    await read_to_eof(client)  # never EndOfStream
                with pytest.raises(ConnectionReset):
                    await client.send(b"more")
                await client.aclose()
        stats = stack.stats()
    assert stats["tcp_resets_received"] == 1
    assert stats["tcp_sockets"] == 0


async def test_our_abort_resets_the_kernel_peer() -> None:
    with kernel_peer() as peer:
        listener = await kernel_listener(peer, KERNEL_IPV4)
        port = listener.extra(SocketAttribute.local_port)
        async with listener, Stack(peer.tun, peer.stack_config) as stack:
            with anyio.fail_after(30):
                client = await stack.tcp_connect((KERNEL_IPV4, port))
                conn = await listener.accept()
                await client.send(b"hello")
                assert await conn.receive() == b"hello"
                client.abort()
                with pytest.raises(anyio.BrokenResourceError):
                    await conn.receive()
                await conn.aclose()


@pytest.mark.parametrize("role", ["our-client", "our-server"])
@pytest.mark.parametrize("first", ["we-half-close", "kernel-half-closes"])
async def test_half_close_in_either_direction_keeps_the_other_open(role: str, first: str) -> None:
    """The side that half-closes first keeps receiving a long answer that only starts after
    the other side has read the whole request to its end."""
    request = random.Random(4).randbytes(300_000)
    answer = random.Random(5).randbytes(1_500_000)
    results: dict[str, bytes] = {}

    async def half_close_first(stream: SocketStream | anyio.abc.ByteStream) -> None:
        await stream.send(request)
        await stream.send_eof()
        results["answer"] = await read_to_eof(stream)
        await stream.aclose()

    async def answer_after_eof(stream: SocketStream | anyio.abc.ByteStream) -> None:
        results["request"] = await read_to_eof(stream)
        await stream.send(answer)
        await stream.aclose()

    ours_first = first == "we-half-close"
    with kernel_peer() as peer:
        async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
            with anyio.fail_after(30):
                if role == "our-client":
                    listener = await kernel_listener(peer, KERNEL_IPV4)
                    port = listener.extra(SocketAttribute.local_port)
                    ours: anyio.abc.ByteStream = await stack.tcp_connect((KERNEL_IPV4, port))
                    kernel: anyio.abc.ByteStream = await listener.accept()
                    await listener.aclose()
                else:
                    our_listener = await stack.tcp_listen(("0.0.0.0", 8080))
                    kernel = await kernel_connect(peer, STACK_IPV4, 8080)
                    ours = await our_listener.accept()
                tg.start_soon(half_close_first, ours if ours_first else kernel)
                await answer_after_eof(kernel if ours_first else ours)
        stats = stack.stats()
    assert sha(results["request"]) == sha(request)
    assert sha(results["answer"]) == sha(answer)
    assert stats["tcp_resets_received"] == 0


async def test_kernel_client_sends_before_we_accept() -> None:
    """The handshake completes in the background and the data (more than our window) waits
    in the connection until the application accepts it; the kernel probes the closed window."""
    payload = random.Random(6).randbytes(1_500_000)
    with kernel_peer() as peer:
        async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
            listener = await stack.tcp_listen(("::", 8080))

            async def kernel_client() -> None:
                conn = await kernel_connect(peer, STACK_IPV6, 8080)
                await conn.send(payload)
                await conn.send_eof()
                assert await read_to_eof(conn) == b"done"
                await conn.aclose()

            tg.start_soon(kernel_client)
            with anyio.fail_after(30):
                while stack.stats()["tcp_connections_accepted"] == 0:  # noqa: ASYNC110 - no event for it
                    await anyio.sleep(0.01)
                await anyio.sleep(0.3)  # the kernel fills our whole window meanwhile
                stream = await listener.accept()
                assert stream.remote_address[0] == KERNEL_IPV6
                waiting = stream.extra(TcpStreamAttribute.tcp_info)()["unread"]
                assert isinstance(waiting, int)
                assert waiting >= 0.9 * peer.stack_config.tcp.recv_buffer  # the window was filled
                received = await read_to_eof(stream)
                await stream.send(b"done")
                await stream.aclose()
    assert sha(received) == sha(payload)


async def test_simultaneous_close_with_the_kernel() -> None:
    """Both ends send FIN at once: depending on which FIN arrives first our side goes through
    CLOSING to TIME-WAIT or through LAST-ACK to CLOSED. Either way both read a clean end of
    stream and nobody resets."""
    with kernel_peer() as peer:
        listener = await kernel_listener(peer, KERNEL_IPV4)
        port = listener.extra(SocketAttribute.local_port)
        async with listener, Stack(peer.tun, peer.stack_config) as stack:
            with anyio.fail_after(30):
                ours = await stack.tcp_connect((KERNEL_IPV4, port))
                kernel = await listener.accept()
                await ours.send(b"last words")
                await kernel.send(b"last words too")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(ours.send_eof)
                    tg.start_soon(kernel.send_eof)
                assert await read_to_eof(kernel) == b"last words"
                assert await read_to_eof(ours) == b"last words too"
                while ours.state not in ("TIME-WAIT", "CLOSED"):  # noqa: ASYNC110 - no event for it
                    await anyio.sleep(0.01)
                await ours.aclose()
                await kernel.aclose()
        stats = stack.stats()
    assert stats["tcp_resets_received"] == stats["tcp_resets_sent"] == 0
