"""TCP for anyio users: ``TcpStream`` (a ``ByteStream``) and ``TcpListener`` over core sockets.

Every method is a thin loop: call the core socket, let the ``Stack`` flush what the call
produced, and if nothing could be done yet wait on the socket's ``Waiter`` until the core says
its readiness changed. Nothing here buffers data: the bounded send and receive buffers are the
core's (``TcpConfig.send_buffer``/``recv_buffer``), so ``send`` waits when the send buffer is
full (backpressure) and the peer stops when our receive buffer is full (flow control).
"""

from __future__ import annotations

import contextlib
import copy
import socket
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import anyio
from anyio.abc import ByteStream, Listener, SocketAttribute, TaskGroup
from anyio.lowlevel import checkpoint

from smolmix_core.errors import NetstackError
from smolmix_core.netstack._waiter import Waiter
from smolmix_core.netstack.core import Address
from smolmix_core.netstack.listener import TcpListener as CoreTcpListener
from smolmix_core.netstack.tcp import TcpSocket

if TYPE_CHECKING:
    from smolmix_core.netstack.stack import Stack

__all__ = ["TcpListener", "TcpStream", "TcpStreamAttribute"]


class TcpStreamAttribute(anyio.TypedAttributeSet):
    """Stack-level facts about a tunnel stream that anyio's ``SocketAttribute`` cannot express."""

    #: ``True`` when a read would not block: data buffered, FIN or RST seen, or stream closed.
    #: httpcore asks this (as ``get_extra_info("is_readable")``) before reusing an idle connection.
    is_readable: Callable[[], bool] = anyio.typed_attribute()
    #: The connection's RFC 9293 state name, for diagnostics.
    tcp_state: Callable[[], str] = anyio.typed_attribute()
    #: A snapshot of negotiated options and congestion state (mss, sack, timestamps, cwnd, srtt…).
    tcp_info: Callable[[], dict[str, object]] = anyio.typed_attribute()


def raise_fresh(error: NetstackError) -> NoReturn:
    """Raise a copy of a stored socket error, so repeated raising does not pile up tracebacks."""
    raise copy.copy(error) from None


def _family(address: Address) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


class TcpStream(ByteStream):
    """One TCP connection of a ``Stack``, full duplex: one task may receive while another sends.

    ``receive`` returns 1..max_bytes bytes and raises ``anyio.EndOfStream`` after the peer's FIN;
    ``send`` returns once every byte is in the send buffer; ``send_eof`` half-closes; ``aclose``
    closes gracefully (the connection finishes in the background, like a kernel socket) unless
    received data was left unread, or more arrives after it: then, as Linux does, the peer gets
    a RST so that it stops sending what nobody will read; ``abort`` resets it.

    Peer errors are the ``smolmix_core.errors`` types; after ``aclose`` or ``abort`` further use
    raises ``anyio.ClosedResourceError``. A stream garbage-collected without either while its
    connection is still up emits ``ResourceWarning`` and the connection is aborted (RST), as an
    unclosed socket's would be.
    """

    def __init__(self, stack: Stack, sock: TcpSocket, waiter: Waiter | None = None) -> None:
        self._stack = stack
        self._sock = sock
        self._waiter = waiter if waiter is not None else stack._new_waiter()
        sock.user_data = self._waiter
        self._closed = False
        self._receiving = False
        self._sending = False

    def __repr__(self) -> str:
        return f"<TcpStream {self._sock.local} -> {self._sock.remote} {self._sock.state}>"

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        if self._sock.state == "CLOSED" or self._stack.closed:
            return  # the connection is over: nothing is held for it
        warnings.warn(f"unclosed {self!r}: aborting it", ResourceWarning, stacklevel=1, source=self)
        self._stack._orphaned(self._sock)

    @property
    def local_address(self) -> Address:
        return self._sock.local

    @property
    def remote_address(self) -> Address:
        return self._sock.remote

    @property
    def state(self) -> str:
        return self._sock.state

    @property
    def nodelay(self) -> bool:
        return self._sock.nodelay

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._sock.nodelay = value

    @property
    def keepalive(self) -> bool:
        return self._sock.keepalive

    @keepalive.setter
    def keepalive(self, value: bool) -> None:
        self._sock.keepalive = value
        self._stack._after_core()

    def is_readable(self) -> bool:
        return self._closed or self._sock.readable

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise anyio.BusyResourceError("receiving from")
        self._receiving = True
        try:
            await checkpoint()
            sock = self._sock
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError
                data = sock.recv(max_bytes)
                if data:
                    self._stack._after_core()
                    return data
                if sock.at_eof:
                    raise anyio.EndOfStream
                if sock.error is not None:
                    raise_fresh(sock.error)
                self._stack._check_open()
                await self._waiter.wait()
        finally:
            self._receiving = False

    async def send(self, item: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise anyio.BusyResourceError("sending to")
        self._sending = True
        try:
            await checkpoint()
            stack = self._stack
            sock = self._sock
            view = memoryview(item).cast("B")
            while True:
                if self._closed:
                    raise anyio.ClosedResourceError
                if stack._transmit_backlogged():
                    await stack._wait_transmit_room()
                    continue
                try:
                    count = sock.send(view, stack.clock.now())
                except NetstackError as exc:
                    stack._after_core()
                    raise_fresh(exc)
                stack._after_core()
                if count:
                    view = view[count:]
                if not view:
                    return
                if not count:
                    stack._check_open()
                    await self._waiter.wait()
        finally:
            self._sending = False

    async def send_eof(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await checkpoint()
        self._sock.shutdown_write(self._stack.clock.now())
        self._stack._after_core()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._sock.close(self._stack.clock.now())
            self._stack._after_core()
            self._waiter.wake()
        await checkpoint()

    def abort(self) -> None:
        """Reset the connection now (RST to the peer); the stream is closed afterwards."""
        if not self._closed:
            self._closed = True
            self._sock.abort(self._stack.clock.now())
            self._stack._after_core()
            self._waiter.wake()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock
        return {
            SocketAttribute.family: lambda: _family(sock.local),
            SocketAttribute.local_address: lambda: sock.local,
            SocketAttribute.local_port: lambda: sock.local[1],
            SocketAttribute.remote_address: lambda: sock.remote,
            SocketAttribute.remote_port: lambda: sock.remote[1],
            TcpStreamAttribute.is_readable: lambda: self.is_readable,
            TcpStreamAttribute.tcp_state: lambda: lambda: sock.state,
            TcpStreamAttribute.tcp_info: lambda: sock.info,
        }


class TcpListener(Listener[TcpStream]):
    """Accepts connections whose handshake completed; ``async for stream in listener`` works too.

    SYNs beyond the core's backlogs are dropped and counted (the peer retransmits them).
    """

    def __init__(self, stack: Stack, listener: CoreTcpListener) -> None:
        self._stack = stack
        self._listener = listener
        self._waiter = stack._new_waiter()
        listener.user_data = self._waiter
        self._closed = False

    def __repr__(self) -> str:
        return f"<TcpListener {self._listener.local}>"

    @property
    def local_address(self) -> Address:
        return self._listener.local

    async def accept(self) -> TcpStream:
        await checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                sock = self._listener.accept()
            except NetstackError as exc:
                raise_fresh(exc)
            if sock is not None:
                return TcpStream(self._stack, sock)
            self._stack._check_open()
            await self._waiter.wait()

    def __aiter__(self) -> TcpListener:
        return self

    async def __anext__(self) -> TcpStream:
        try:
            return await self.accept()
        except anyio.ClosedResourceError:
            raise StopAsyncIteration from None

    async def serve(self, handler: Callable[[TcpStream], Any], task_group: TaskGroup | None = None) -> None:
        """Run ``handler(stream)`` in a task for each connection; returns once the listener closes."""
        async with contextlib.AsyncExitStack() as exits:
            if task_group is None:
                task_group = await exits.enter_async_context(anyio.create_task_group())
            async for stream in self:
                task_group.start_soon(handler, stream)

    async def aclose(self) -> None:
        """Stop listening; connections not yet accepted are reset."""
        if not self._closed:
            self._closed = True
            self._listener.close(self._stack.clock.now())
            self._stack._after_core()
            self._waiter.wake()
        await checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        local = self._listener.local
        attributes: dict[Any, Callable[[], Any]] = {
            SocketAttribute.local_address: lambda: local,
            SocketAttribute.local_port: lambda: local[1],
        }
        if self._listener.family:
            attributes[SocketAttribute.family] = lambda: _family(local)
        return attributes
