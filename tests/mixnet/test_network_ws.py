"""The websocket adapter over anyio TCP streams, on asyncio and trio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from smolmix_core.errors import LinkError, WebSocketClosed
from smolmix_core.mixnet.ws import WebSocket, ws_accept, ws_client_handshake, ws_connect

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def echo_server(max_size: int = 2**20) -> AsyncIterator[tuple[str, list[BaseException]]]:
    """A websocket echo server on an ephemeral loopback port; yields its URL and handshake errors."""
    failures: list[BaseException] = []
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        try:
            websocket = await ws_accept(stream, max_size=max_size, handshake_timeout=2.0)
        except LinkError as exc:
            failures.append(exc)
            return
        try:
            async for message in websocket:
                await websocket.send(message)
        except LinkError as exc:
            failures.append(exc)
        finally:
            await websocket.aclose()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        try:
            yield f"ws://127.0.0.1:{port}/echo", failures
        finally:
            tg.cancel_scope.cancel()


async def test_binary_and_text_round_trip() -> None:
    async with echo_server() as (url, _):
        websocket = await ws_connect(url)
        await websocket.send(b"\x00\x01binary")
        assert await websocket.receive() == b"\x00\x01binary"
        await websocket.send("text ✓")
        assert await websocket.receive() == "text ✓"
        big = bytes(range(256)) * 2000
        await websocket.send(big)
        assert await websocket.receive() == big
        await websocket.aclose()
        assert websocket.closed
        with pytest.raises(WebSocketClosed):
            await websocket.send(b"after close")


async def test_concurrent_senders_do_not_interleave() -> None:
    async with echo_server() as (url, _):
        websocket = await ws_connect(url)
        messages = {bytes([i]) * (1000 + i) for i in range(40)}
        received: set[bytes] = set()

        async def reader() -> None:
            while len(received) < len(messages):
                message = await websocket.receive()
                assert isinstance(message, bytes)
                received.add(message)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for message in messages:
                tg.start_soon(websocket.send, message)
        assert received == messages
        await websocket.aclose()


async def test_oversized_message_closes_with_1009() -> None:
    async with echo_server(max_size=1000) as (url, _):
        websocket = await ws_connect(url)
        await websocket.send(b"x" * 1001)
        with pytest.raises(WebSocketClosed) as info:
            await websocket.receive()
        assert info.value.code == 1009
        await websocket.aclose()


async def test_garbage_and_plain_http_are_refused_and_the_server_keeps_serving() -> None:
    async with echo_server() as (url, failures):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"\x16\x03\x01garbage that is not HTTP\r\n\r\n")
        with anyio.fail_after(5):
            try:
                reply = await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                reply = b""
        await stream.aclose()
        assert not reply.startswith(b"HTTP/1.1 101")
        stream = await anyio.connect_tcp("127.0.0.1", port)
        await stream.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with anyio.fail_after(5):
            reply = await stream.receive()
        await stream.aclose()
        assert reply.startswith(b"HTTP/1.1 4")
        websocket: WebSocket = await ws_connect(url)
        await websocket.send(b"still here")
        assert await websocket.receive() == b"still here"
        await websocket.aclose()
        assert len(failures) == 2


async def test_connect_refused_is_a_link_error() -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    with pytest.raises(LinkError):
        await ws_connect(f"ws://127.0.0.1:{port}/")
    with pytest.raises(LinkError):
        await ws_connect("http://127.0.0.1:1/")


class CountingStream(anyio.abc.ByteStream):
    """A byte stream that counts the writes reaching the socket."""

    def __init__(self, inner: anyio.abc.ByteStream) -> None:
        self.inner = inner
        self.sends = 0

    async def send(self, item: bytes) -> None:
        self.sends += 1
        await self.inner.send(item)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self.inner.receive(max_bytes)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_send_many_is_one_write_and_bursts_come_back_in_order() -> None:
    async with echo_server() as (url, _):
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        counting = CountingStream(await anyio.connect_tcp("127.0.0.1", port))
        websocket = await ws_client_handshake(counting, url)
        counting.sends = 0
        messages = [bytes([i]) * (100 + i) for i in range(30)]
        await websocket.send_many(messages)
        assert counting.sends == 1, "thirty frames, one write"
        received: list[bytes | str] = []
        with anyio.fail_after(5):
            while len(received) < len(messages):
                received.append(await websocket.receive())
                received.extend(websocket.take_buffered())
        assert received == messages
        assert websocket.take_buffered() == []
        await websocket.aclose()
