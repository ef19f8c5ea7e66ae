"""UDP sockets: a bounded queue of received datagrams and a send path through the stack."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from smolmix_core.errors import NetstackError, StackClosed

if TYPE_CHECKING:
    from smolmix_core.netstack.tcp import Address


class UdpHost(Protocol):
    def udp_send(
        self, sock: UdpSocket, data: bytes, src: Address | None, dst: Address, now: float
    ) -> None: ...

    def udp_close(self, sock: UdpSocket) -> None: ...

    def udp_wake(self, sock: UdpSocket) -> None: ...


class UdpSocket:
    """A bound UDP port (one or both families), or the forwarder's catch-all socket.

    Received datagrams wait in a queue of ``capacity``; when it is full the newest datagram is
    dropped and counted. ``error`` holds a ``ConnectionRefused`` after an ICMP port unreachable
    for a datagram we sent; ``send_to`` raises it once, and whoever reports it clears it.
    """

    __slots__ = (
        "_capacity",
        "_host",
        "_queue",
        "_wake_queued",
        "closed",
        "error",
        "families",
        "forward_all",
        "local",
        "port",
        "user_data",
    )

    def __init__(
        self,
        host: UdpHost,
        local: Address,
        *,
        families: tuple[int, ...],
        capacity: int,
        forward_all: bool = False,
    ) -> None:
        self._host = host
        self.user_data: object = None
        self.local = local
        self.port = local[1]
        self.families = families
        self.forward_all = forward_all
        self.error: NetstackError | None = None
        self.closed = False
        self._capacity = capacity
        self._queue: deque[tuple[bytes, Address, Address]] = deque()
        self._wake_queued = False

    def __repr__(self) -> str:
        return f"<UdpSocket {self.local} queued={len(self._queue)}>"

    @property
    def readable(self) -> bool:
        return bool(self._queue) or self.error is not None or self.closed

    def deliver(self, data: bytes, src: Address, dst: Address) -> bool:
        """Queue a received datagram; False (and nothing queued) when the queue is full."""
        if len(self._queue) >= self._capacity or self.closed:
            return False
        self._queue.append((data, src, dst))
        self._host.udp_wake(self)
        return True

    def send_to(self, data: bytes, remote: Address, now: float) -> None:
        self._raise_pending()
        self._host.udp_send(self, data, None, remote, now)

    def recv_from(self) -> tuple[bytes, Address] | None:
        if not self._queue:
            return None
        data, src, _dst = self._queue.popleft()
        return data, src

    def recv_from_any(self) -> tuple[bytes, Address, Address] | None:
        return self._queue.popleft() if self._queue else None

    def send_from(self, data: bytes, src: Address, dst: Address, now: float) -> None:
        self._raise_pending()
        self._host.udp_send(self, data, src, dst, now)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.clear()
            self._host.udp_close(self)

    def take_error(self) -> NetstackError | None:
        """The pending error, cleared once reported unless it is final (``StackClosed``)."""
        error = self.error
        if error is not None and not isinstance(error, StackClosed):
            self.error = None
        return error

    def _raise_pending(self) -> None:
        error = self.take_error()
        if error is not None:
            raise error
        if self.closed:
            raise StackClosed("the UDP socket is closed")
