"""UDP for anyio users: a ``UdpSocket`` over one or two core sockets (one per address family).

Received datagrams wait in the core socket's queue (``StackConfig.udp_queue``; newest dropped
and counted when full). Sending never buffers here: ``send_to`` waits only while the driver's
transmit queue is backlogged, then the datagram goes to the device or is refused outright when
it does not fit the MTU (``MessageTooLarge``; IP is never fragmented).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

import anyio
from anyio.lowlevel import checkpoint

from smolmix_core.errors import AddressNotAvailable, NetstackError
from smolmix_core.netstack._waiter import Waiter
from smolmix_core.netstack.core import Address
from smolmix_core.netstack.streams import raise_fresh
from smolmix_core.netstack.udp import UdpSocket as CoreUdpSocket

if TYPE_CHECKING:
    from smolmix_core.netstack.stack import Stack

__all__ = ["UdpSocket"]


class UdpSocket:
    """A bound UDP port of a ``Stack``; a forwarder socket (``Stack.udp_bind_any``) also has
    ``recv_from_any``/``send_from`` to see and answer with the flow's original destination."""

    def __init__(self, stack: Stack, sockets: list[CoreUdpSocket]) -> None:
        self._stack = stack
        self._sockets = sockets
        self._waiter: Waiter = stack._new_waiter()
        for sock in sockets:
            sock.user_data = self._waiter
        self._next = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<UdpSocket {self.local_address}>"

    @property
    def local_address(self) -> Address:
        return self._sockets[0].local

    @property
    def port(self) -> int:
        return self._sockets[0].port

    def _socket_for(self, remote: Address) -> CoreUdpSocket:
        if len(self._sockets) == 1:
            return self._sockets[0]
        try:
            family = ipaddress.ip_address(remote[0]).version
        except ValueError:
            raise AddressNotAvailable(f"{remote[0]!r} is not an IP address") from None
        for sock in self._sockets:
            if family in sock.families:
                return sock
        raise AddressNotAvailable(f"the socket is not bound for IPv{family}")

    async def send_to(self, data: bytes, remote: Address) -> None:
        """Send one datagram to ``remote``; raises a pending ``ConnectionRefused`` once."""
        await self._before_send()
        sock = self._socket_for(remote)
        try:
            sock.send_to(bytes(data), remote, self._stack.clock.now())
        except NetstackError as exc:
            raise_fresh(exc)
        finally:
            self._stack._after_core()

    async def send_from(self, data: bytes, src: Address, dst: Address) -> None:
        """Forwarder sockets: send with source ``src`` (the flow's original destination)."""
        await self._before_send()
        try:
            self._sockets[0].send_from(bytes(data), src, dst, self._stack.clock.now())
        except NetstackError as exc:
            raise_fresh(exc)
        finally:
            self._stack._after_core()

    async def recv_from(self) -> tuple[bytes, Address]:
        """The next datagram and its sender; raises ``ConnectionRefused`` after ICMP port unreachable."""
        data, src, _dst = await self._receive()
        return data, src

    async def recv_from_any(self) -> tuple[bytes, Address, Address]:
        """Forwarder sockets: the next datagram with its source and original destination."""
        return await self._receive()

    async def _before_send(self) -> None:
        await checkpoint()
        if self._closed:
            raise anyio.ClosedResourceError
        while self._stack._transmit_backlogged():
            await self._stack._wait_transmit_room()
            if self._closed:
                raise anyio.ClosedResourceError

    async def _receive(self) -> tuple[bytes, Address, Address]:
        await checkpoint()
        sockets = self._sockets
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            for offset in range(len(sockets)):
                sock = sockets[(self._next + offset) % len(sockets)]
                item = sock.recv_from_any()
                if item is not None:
                    self._next = (self._next + offset + 1) % len(sockets)
                    return item
            for sock in sockets:
                error = sock.take_error()
                if error is not None:
                    raise_fresh(error)
            self._stack._check_open()
            await self._waiter.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            for sock in self._sockets:
                sock.close()
            self._waiter.wake()
        await checkpoint()

    async def __aenter__(self) -> UdpSocket:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
