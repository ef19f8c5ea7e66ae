"""Test support: a client stack and an exit-like server stack on a memory link, real bytes between.

The server stack forwards (``forward_all``, as the exit's does): it sees UDP and TCP to any
address and answers DNS wherever it is asked, either with a ``DnsResponder`` or with a scripted
handler that builds its replies with dnspython, an independent implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from smolmix_core.clock import Clock
from smolmix_core.devices import memory_link
from smolmix_core.dns import DnsResolver, DnsResponder
from smolmix_core.netstack import Stack, StackConfig, UdpSocket

CLIENT4, CLIENT6 = "10.0.0.2", "fc00::2"
EXIT4, EXIT6 = "10.0.0.1", "fc00::1"

Address = tuple[str, int]
# A scripted server: query bytes, client address, the address it was sent to → replies to send,
# each with the source address to send it from.
Script = Callable[[bytes, Address, Address], Awaitable[list[tuple[bytes, Address]]]]


@dataclass
class DnsNetwork:
    client: Stack
    server: Stack
    group: TaskGroup
    seen: list[tuple[bytes, Address, Address]] = field(default_factory=list)

    def resolver(self, servers: list[str] | None = None, **options: object) -> DnsResolver:
        return DnsResolver(self.client, servers or [EXIT4], clock=self.client.clock, **options)  # type: ignore[arg-type]

    async def serve(
        self, responder: DnsResponder, *, udp: bool = True, tcp: bool = True, bound: bool = False
    ) -> None:
        """Run ``responder`` on every UDP datagram and TCP connection the server stack gets, or
        (``bound``) on its own port 53 only."""
        if udp:
            if bound:
                self.group.start_soon(responder.serve_udp_port, await self.server.udp_socket(53))
            else:
                self.group.start_soon(responder.serve_udp, await self.server.udp_bind_any())
        if tcp and bound:
            for wildcard in ("0.0.0.0", "::"):
                listener = await self.server.tcp_listen((wildcard, 53))
                self.group.start_soon(listener.serve, responder.serve_tcp)
        elif tcp:
            listener = await self.server.tcp_listen_any()
            self.group.start_soon(listener.serve, responder.serve_tcp)

    async def script(self, handler: Script) -> None:
        """Answer UDP with ``handler``; every query is also recorded in ``seen``."""
        sock = await self.server.udp_bind_any()
        self.group.start_soon(self._run_script, sock, handler)

    async def _run_script(self, sock: UdpSocket, handler: Script) -> None:
        async with anyio.create_task_group() as group:
            while True:
                data, source, destination = await sock.recv_from_any()
                self.seen.append((data, source, destination))

                async def reply(
                    data: bytes = data, source: Address = source, destination: Address = destination
                ) -> None:
                    for payload, sender in await handler(data, source, destination):
                        await sock.send_from(payload, sender, source)

                group.start_soon(reply)


@asynccontextmanager
async def dns_network(
    *, clock: Clock | None = None, forward_all: bool = True, mtu: int = 1500
) -> AsyncIterator[DnsNetwork]:
    client_device, server_device = memory_link(mtu=mtu)
    async with AsyncExitStack() as exits:
        client = await exits.enter_async_context(
            Stack(client_device, StackConfig(ipv4=CLIENT4, ipv6=CLIENT6, seed=7), clock=clock)
        )
        server = await exits.enter_async_context(
            Stack(
                server_device,
                StackConfig(ipv4=EXIT4, ipv6=EXIT6, seed=8, forward_all=forward_all),
                clock=clock,
            )
        )
        group = await exits.enter_async_context(anyio.create_task_group())
        try:
            yield DnsNetwork(client, server, group)
        finally:
            group.cancel_scope.cancel()
