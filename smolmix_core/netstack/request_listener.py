"""Deferred accept for anyio users: a forwarder listener that yields connection requests.

``Stack.tcp_listen_requests()`` returns a ``TcpRequestListener``; each client SYN to any
address becomes a ``TcpConnectionRequest`` with the client (``src``) and the destination it
asked for (``dst``). Nothing has been answered yet: the application (the exit) first reaches
the real destination, then answers with ``accept()`` (the handshake completes and a
``TcpStream`` is returned), ``refuse()`` (RST: the client sees "connection refused") or
``reject_unreachable(reason)`` (ICMP destination unreachable: "host unreachable" or
"administratively prohibited"). The core's docstring (``tcp_request``) states the bounds and
what happens to requests nobody answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint

from smolmix_core.errors import ConnectionTimedOut, NetstackError
from smolmix_core.netstack.core import Address
from smolmix_core.netstack.listener import TcpListener as CoreTcpListener
from smolmix_core.netstack.streams import TcpStream, raise_fresh
from smolmix_core.netstack.tcp_request import TcpRequest, Unreachable

if TYPE_CHECKING:
    from types import TracebackType

    from smolmix_core.netstack.stack import Stack

__all__ = ["TcpConnectionRequest", "TcpRequestListener", "Unreachable"]


class TcpConnectionRequest:
    """A client's connection attempt, held unanswered until one of the three answers.

    Answer exactly once; a second answer, or one after the request expired, raises
    ``RequestClosed``. A request dropped unanswered expires (see ``Stack.tcp_listen_requests``).
    """

    def __init__(self, stack: Stack, request: TcpRequest) -> None:
        self._stack = stack
        self._request = request

    def __repr__(self) -> str:
        return f"<TcpConnectionRequest {self.src[0]}:{self.src[1]} -> {self.dst[0]}:{self.dst[1]}>"

    @property
    def src(self) -> Address:
        """The client: its address and port."""
        return self._request.src

    @property
    def dst(self) -> Address:
        """The destination the client asked for."""
        return self._request.dst

    @property
    def pending(self) -> bool:
        """True until the request is answered, expires, or its listener closes."""
        return self._request.pending

    async def accept(self) -> TcpStream:
        """Complete the handshake (SYN-ACK) and return the stream once the client acknowledged it.

        Raises ``ConnectionTimedOut`` when the client never answers the SYN-ACK,
        ``ConnectionReset`` if it resets the handshake, ``RequestClosed`` when the request can
        no longer be accepted. Cancelling the wait resets the half-open connection.
        """
        stack = self._stack
        stack._check_usable()
        await checkpoint()
        sock = self._request.accept(stack.clock.now())
        waiter = stack._new_waiter()
        sock.user_data = waiter
        stack._after_core()
        try:
            while not sock.established:
                if sock.error is not None:
                    raise_fresh(sock.error)
                if sock.state == "CLOSED":
                    raise ConnectionTimedOut(f"{self.src[0]}:{self.src[1]} never completed the handshake")
                stack._check_open()
                await waiter.wait()
        except BaseException:
            sock.abort(stack.clock.now())
            stack._after_core()
            raise
        return TcpStream(stack, sock, waiter)

    def refuse(self) -> None:
        """Answer with RST: the client's connect fails with "connection refused"."""
        stack = self._stack
        stack._check_open()
        try:
            self._request.refuse(stack.clock.now())
        finally:
            stack._after_core()

    def reject_unreachable(self, reason: Unreachable = Unreachable.HOST) -> None:
        """Answer with ICMP destination unreachable: ``HOST`` (or ``NETWORK``) when the
        destination cannot be reached, ``PROHIBITED`` when policy forbids it."""
        stack = self._stack
        stack._check_open()
        try:
            self._request.reject(reason, stack.clock.now())
        finally:
            stack._after_core()


class TcpRequestListener:
    """Connection requests to any address, oldest first; ``async for request in listener``."""

    def __init__(self, stack: Stack, listener: CoreTcpListener) -> None:
        self._stack = stack
        self._listener = listener
        self._waiter = stack._new_waiter()
        listener.user_data = self._waiter
        self._closed = False

    def __repr__(self) -> str:
        return f"<TcpRequestListener pending={self._listener.pending}>"

    @property
    def pending(self) -> int:
        """Requests not answered yet, taken by the application or not."""
        return self._listener.pending

    async def next_request(self) -> TcpConnectionRequest:
        """Wait for the next unanswered connection request."""
        await checkpoint()
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            try:
                request = self._listener.next_request()
            except NetstackError as exc:
                raise_fresh(exc)
            if request is not None:
                return TcpConnectionRequest(self._stack, request)
            self._stack._check_open()
            await self._waiter.wait()

    def __aiter__(self) -> TcpRequestListener:
        return self

    async def __anext__(self) -> TcpConnectionRequest:
        try:
            return await self.next_request()
        except anyio.ClosedResourceError:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Stop listening; unanswered requests are refused (RST), half-open connections reset."""
        if not self._closed:
            self._closed = True
            self._listener.close(self._stack.clock.now())
            self._stack._after_core()
            self._waiter.wake()
        await checkpoint()

    async def __aenter__(self) -> TcpRequestListener:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.aclose()
