"""A real client against the responder: dnspython's ``dns.query`` over kernel sockets on loopback
(UDP, TCP, and its own truncation fallback)."""

from __future__ import annotations

import functools

import anyio
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from anyio.abc import SocketListener, UDPSocket

from smolmix_core.dns import DnsResponder

pytestmark = [pytest.mark.anyio, pytest.mark.interop]

Address = tuple[str, int]


class _KernelUdp:
    """A kernel UDP socket seen as the forwarder socket ``serve_udp`` expects."""

    def __init__(self, sock: UDPSocket) -> None:
        self._sock = sock
        self.local: Address = sock.extra(anyio.abc.SocketAttribute.local_address)  # type: ignore[assignment]

    async def recv_from_any(self) -> tuple[bytes, Address, Address]:
        data, source = await self._sock.receive()
        return data, (source[0], source[1]), self.local

    async def send_from(self, data: bytes, src: Address, dst: Address) -> None:
        await self._sock.sendto(data, dst[0], dst[1])


async def _udp_and_tcp_on_one_port() -> tuple[UDPSocket, SocketListener]:
    """A UDP socket and a TCP listener on one port number, as a DNS server has (dnspython's
    udp_with_fallback expects it); a port another process holds is skipped."""
    for _ in range(50):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        try:
            return await anyio.create_udp_socket(local_host="127.0.0.1", local_port=port), listener
        except OSError:
            await listener.aclose()
    raise RuntimeError("no port free for both UDP and TCP")


def _ask(name: str, rdtype: str, how: str, port: int) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0)
    if how == "udp":
        return dns.query.udp(query, "127.0.0.1", timeout=5, port=port)
    if how == "tcp":
        return dns.query.tcp(query, "127.0.0.1", timeout=5, port=port)
    reply, _used_tcp = dns.query.udp_with_fallback(query, "127.0.0.1", timeout=5, port=port)
    return reply


async def _run(name: str, rdtype: str, how: str, port: int) -> dns.message.Message:
    return await anyio.to_thread.run_sync(functools.partial(_ask, name, rdtype, how, port))


async def test_dnspython_queries_the_responder_over_kernel_udp_and_tcp() -> None:
    many = [f"10.7.{index // 250}.{index % 250}" for index in range(150)]
    responder = DnsResponder({"far.test": ["127.0.0.1", "::1"], "many.test": many}, use_system_resolver=False)
    udp, listener = await _udp_and_tcp_on_one_port()
    port = udp.extra(anyio.abc.SocketAttribute.local_port)
    async with udp, listener, anyio.create_task_group() as group:
        group.start_soon(responder.serve_udp, _KernelUdp(udp))
        group.start_soon(listener.serve, responder.serve_tcp)
        a = await _run("far.test", "A", "udp", port)
        assert [r.address for r in a.answer[0]] == ["127.0.0.1"]
        aaaa = await _run("FAR.TEST", "AAAA", "tcp", port)
        assert [r.address for r in aaaa.answer[0]] == ["::1"]
        missing = await _run("nowhere.test", "A", "udp", port)
        assert missing.rcode() == dns.rcode.NXDOMAIN
        cut = await _run("many.test", "A", "udp", port)
        assert cut.flags & dns.flags.TC
        whole = await _run("many.test", "A", "fallback", port)
        assert [r.address for r in whole.answer[0]] == many
        assert responder.stats()["queries_tcp"] == 2
        group.cancel_scope.cancel()
