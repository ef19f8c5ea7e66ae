"""A websocket over any anyio byte stream, on asyncio and trio alike.

websockets' own clients are tied to one event loop each; its Sans-I/O protocol objects
(``ClientProtocol``/``ServerProtocol``) are not. This adapter drives them over an anyio
``ByteStream`` so the gateway link and the nym-client API server run unchanged on both backends.

One task may receive while others send. Everything a protocol call produces is appended to one
outgoing list synchronously and flushed in order under a send lock, so bytes never interleave;
what is pending is written with one ``send`` on the stream.
Pings are answered inside ``receive``; messages split into continuation frames are reassembled up
to ``max_size`` (a larger message fails the connection with close code 1009).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidURI
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import CLOSED, OPEN, Protocol
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from smolmix_core.errors import LinkError, WebSocketClosed

logger = logging.getLogger("smolmix.mixnet")

DEFAULT_MAX_SIZE = 2**20
HANDSHAKE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
_READ_CHUNK = 65536


class WebSocket:
    """An open websocket connection: ``send``, ``receive`` and ``aclose``."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        protocol: Protocol,
        *,
        request: Request | None = None,
        pending_events: list[object] | None = None,
    ) -> None:
        self._stream = stream
        self._protocol = protocol
        self._outgoing: list[bytes] = []
        self._send_lock = anyio.Lock()
        self._receive_lock = anyio.Lock()
        self._events: deque[object] = deque(pending_events or ())
        self._fragments: list[bytes] = []
        self._fragment_opcode: Opcode | None = None
        self._stream_closed = False
        self.request = request

    @property
    def path(self) -> str:
        """The request path of the opening handshake (server side); ``"/"`` on the client side."""
        return self.request.path if self.request is not None else "/"

    @property
    def closed(self) -> bool:
        return self._stream_closed or self._protocol.state is CLOSED

    @property
    def close_code(self) -> int | None:
        return self._protocol.close_code

    async def send(self, message: bytes | str) -> None:
        """Send one binary (``bytes``) or text (``str``) message."""
        if self._protocol.state is not OPEN:
            raise self._closed_error()
        if isinstance(message, str):
            self._protocol.send_text(message.encode())
        else:
            self._protocol.send_binary(message)
        await self._flush()

    async def send_many(self, messages: Iterable[bytes]) -> None:
        """Send binary messages with one write: a burst costs one trip through the event loop."""
        if self._protocol.state is not OPEN:
            raise self._closed_error()
        for message in messages:
            self._protocol.send_binary(message)
        await self._flush()

    async def receive(self) -> bytes | str:
        """The next whole message; raises ``WebSocketClosed`` once the connection is closed.

        A message already parsed from an earlier read is returned without a trip through the
        event loop (when no other task is receiving), so a burst is consumed in one go.
        """
        if self._events and not self._receive_lock.locked():
            while self._events:
                message = self._take_message(self._events.popleft())
                if message is not None:
                    return message
        async with self._receive_lock:
            while True:
                while self._events:
                    message = self._take_message(self._events.popleft())
                    if message is not None:
                        return message
                if self._protocol.state is CLOSED or self._stream_closed:
                    raise self._closed_error()
                await self._read_more()

    def take_buffered(self) -> list[bytes | str]:
        """The whole messages already parsed from earlier reads, without any I/O.

        Empty while another task is inside ``receive`` (it owns the parser's output).
        """
        if self._receive_lock.locked():
            return []
        messages: list[bytes | str] = []
        while self._events:
            message = self._take_message(self._events.popleft())
            if message is not None:
                messages.append(message)
        return messages

    def __aiter__(self) -> AsyncIterator[bytes | str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes | str]:
        while True:
            try:
                yield await self.receive()
            except WebSocketClosed:
                return

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake (bounded by ``CLOSE_TIMEOUT``), then close the stream."""
        if self._stream_closed:
            return
        with anyio.CancelScope(shield=True):
            if self._protocol.state is OPEN:
                self._protocol.send_close(code, reason)
                try:
                    await self._flush()
                except LinkError:
                    pass
            with anyio.move_on_after(CLOSE_TIMEOUT):
                async with self._receive_lock:
                    while self._protocol.state is not CLOSED and not self._stream_closed:
                        await self._read_more()
            await self._close_stream()

    async def _close_stream(self) -> None:
        if not self._stream_closed:
            self._stream_closed = True
            try:
                await self._stream.aclose()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    def _closed_error(self) -> WebSocketClosed:
        code = self._protocol.close_code
        reason = self._protocol.close_reason or ""
        error = WebSocketClosed(code, reason)
        if self._protocol.parser_exc is not None:
            error.__cause__ = self._protocol.parser_exc
        return error

    def _take_message(self, event: object) -> bytes | str | None:
        if not isinstance(event, Frame):
            return None
        opcode = event.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if event.fin:
                return bytes(event.data).decode() if opcode is Opcode.TEXT else bytes(event.data)
            self._fragment_opcode = opcode
            self._fragments = [bytes(event.data)]
            return None
        if opcode is Opcode.CONT:
            self._fragments.append(bytes(event.data))
            if not event.fin:
                return None
            data = b"".join(self._fragments)
            self._fragments = []
            kind, self._fragment_opcode = self._fragment_opcode, None
            return data.decode() if kind is Opcode.TEXT else data
        return None

    async def _read_more(self) -> None:
        try:
            data = await self._stream.receive(_READ_CHUNK)
        except anyio.EndOfStream:
            self._protocol.receive_eof()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self._protocol.receive_eof()
            await self._close_stream()
            return
        else:
            self._protocol.receive_data(data)
        self._events.extend(self._protocol.events_received())
        await self._flush()

    async def _flush(self) -> None:
        self._outgoing.extend(self._protocol.data_to_send())
        if not self._outgoing:
            return
        async with self._send_lock:
            while self._outgoing:
                chunks, self._outgoing = self._outgoing, []
                pending: list[bytes] = []
                for chunk in chunks:
                    if chunk:
                        pending.append(chunk)
                        continue
                    if pending:
                        await self._write(b"".join(pending))
                        pending = []
                    await self._write(chunk)  # empty: the protocol wants the stream closed
                if pending:
                    await self._write(b"".join(pending))

    async def _write(self, chunk: bytes) -> None:
        if self._stream_closed:
            raise self._closed_error() if self._protocol.state is CLOSED else LinkError("stream closed")
        try:
            if chunk:
                await self._stream.send(chunk)
            else:
                await self._close_stream()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            with anyio.CancelScope(shield=True):
                await self._close_stream()
            raise LinkError(f"websocket write failed: {exc!r}") from exc
        except anyio.get_cancelled_exc_class():
            # Part of a frame may be on the wire: the stream can no longer be trusted.
            with anyio.CancelScope(shield=True):
                await self._close_stream()
            raise


async def _handshake_events(protocol: Protocol, stream: anyio.abc.ByteStream) -> list[object]:
    """Feed the stream to ``protocol`` until the opening handshake event arrives."""
    events: list[object] = []
    while not any(isinstance(event, Request | Response) for event in events):
        for chunk in protocol.data_to_send():
            if chunk:
                await stream.send(chunk)
        if protocol.handshake_exc is not None:
            raise LinkError(f"websocket handshake failed: {protocol.handshake_exc}")
        try:
            data = await stream.receive(_READ_CHUNK)
        except anyio.EndOfStream:
            raise LinkError("connection closed during the websocket handshake") from None
        protocol.receive_data(data)
        events.extend(protocol.events_received())
    return events


async def ws_accept(
    stream: anyio.abc.ByteStream,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> WebSocket:
    """Run the server side of the opening handshake on ``stream``; closes it on failure."""
    protocol = ServerProtocol(max_size=max_size, logger=logger)
    try:
        with anyio.fail_after(handshake_timeout):
            events = await _handshake_events(protocol, stream)
            request = next(event for event in events if isinstance(event, Request))
            response = protocol.accept(request)
            protocol.send_response(response)
            for chunk in protocol.data_to_send():
                if chunk:
                    await stream.send(chunk)
            if protocol.state is not OPEN:
                raise LinkError(f"websocket handshake refused with HTTP {response.status_code}")
    except (TimeoutError, LinkError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        if isinstance(exc, LinkError):
            raise
        raise LinkError(f"websocket handshake failed: {exc!r}") from exc
    rest = events[events.index(request) + 1 :]
    return WebSocket(stream, protocol, request=request, pending_events=rest)


async def ws_client_handshake(
    stream: anyio.abc.ByteStream,
    url: str,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> WebSocket:
    """Run the client side of the opening handshake for ``url`` on an already open ``stream``."""
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise LinkError(f"not a websocket URL: {url!r}") from exc
    protocol = ClientProtocol(uri, max_size=max_size, logger=logger)
    try:
        with anyio.fail_after(handshake_timeout):
            protocol.send_request(protocol.connect())
            events = await _handshake_events(protocol, stream)
            if protocol.handshake_exc is not None or protocol.state is not OPEN:
                raise LinkError(f"websocket handshake failed: {protocol.handshake_exc}")
    except (TimeoutError, LinkError, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(stream)
        if isinstance(exc, LinkError):
            raise
        raise LinkError(f"websocket handshake with {url} failed: {exc!r}") from exc
    response_index = next(i for i, event in enumerate(events) if isinstance(event, Response))
    return WebSocket(stream, protocol, pending_events=events[response_index + 1 :])


async def ws_connect(
    url: str,
    *,
    max_size: int | None = DEFAULT_MAX_SIZE,
    open_timeout: float = HANDSHAKE_TIMEOUT,
) -> WebSocket:
    """Open a TCP connection to a ``ws://`` URL and run the opening handshake (no TLS: loopback)."""
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise LinkError(f"not a websocket URL: {url!r}") from exc
    if uri.secure:
        raise LinkError("wss:// is not supported by the devnet websocket adapter")
    try:
        with anyio.fail_after(open_timeout):
            stream = await anyio.connect_tcp(uri.host, uri.port)
    except (OSError, TimeoutError) as exc:
        raise LinkError(f"cannot connect to {url}: {exc!r}") from exc
    return await ws_client_handshake(stream, url, max_size=max_size, handshake_timeout=open_timeout)


@asynccontextmanager
async def ws_connection(url: str, *, max_size: int | None = DEFAULT_MAX_SIZE) -> AsyncIterator[WebSocket]:
    """``async with ws_connection(url) as ws:`` — connect, and always close on exit."""
    websocket = await ws_connect(url, max_size=max_size)
    try:
        yield websocket
    finally:
        await websocket.aclose()


__all__ = ["WebSocket", "ws_accept", "ws_client_handshake", "ws_connect", "ws_connection"]
