"""What the resolver and the responder need of the network: three small protocols.

``smolmix_core.netstack.Stack`` is a ``DnsTransport`` (mypy checks it below), and its
``UdpSocket`` is both a ``DatagramSocket`` and, from ``udp_bind_any()``, a
``ForwardedDatagramSocket``; anything else with these methods will do (a test double, the
Tunnel itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from anyio.abc import ByteStream

if TYPE_CHECKING:
    from smolmix_core.netstack import Stack

__all__ = ["Address", "DatagramSocket", "DnsTransport", "ForwardedDatagramSocket"]

Address = tuple[str, int]


class DatagramSocket(Protocol):
    """A UDP socket bound to a port: the resolver's per-lookup socket, or a server's port 53."""

    async def send_to(self, data: bytes, remote: Address) -> None: ...

    async def recv_from(self) -> tuple[bytes, Address]: ...

    async def aclose(self) -> None: ...


class ForwardedDatagramSocket(Protocol):
    """A UDP socket that reports each datagram's destination and can reply from it
    (``Stack.udp_bind_any()``'s, in forwarder mode)."""

    async def recv_from_any(self) -> tuple[bytes, Address, Address]: ...

    async def send_from(self, data: bytes, src: Address, dst: Address) -> None: ...


class DnsTransport(Protocol):
    """Where the resolver's queries go out: a fresh UDP socket per lookup, TCP for truncation."""

    async def udp_socket(self) -> DatagramSocket: ...

    async def tcp_connect(self, remote: Address) -> ByteStream: ...


if TYPE_CHECKING:

    def _a_stack_is_a_transport(stack: Stack) -> DnsTransport:
        return stack

    async def _its_sockets_fit(stack: Stack) -> tuple[DatagramSocket, ForwardedDatagramSocket]:
        return await stack.udp_socket(53), await stack.udp_bind_any()
