"""Two userspace TCP/IP stacks in one process: an echo server on one, a client on the other.

The stacks exchange raw IPv4/IPv6 packets over an in-memory link; add ``--loss 5`` to watch TCP
recover from a lossy link. Runs on asyncio or trio:

    python examples/netstack_echo.py
    python examples/netstack_echo.py --loss 5 --backend trio
"""

from __future__ import annotations

import argparse

import anyio

from smolmix_core.devices import FaultInjector, memory_link
from smolmix_core.netstack import Stack, StackConfig, TcpStream


async def echo(stream: TcpStream) -> None:
    async with stream:
        async for chunk in stream:
            await stream.send(chunk)


async def main(loss: float) -> None:
    left, right = memory_link(mtu=1500)
    async with (
        FaultInjector(left, seed=1, loss=loss) as left_link,
        FaultInjector(right, seed=2, loss=loss) as right_link,
        Stack(left_link, StackConfig(ipv4="10.0.0.1", ipv6="fd00::1")) as client_stack,
        Stack(right_link, StackConfig(ipv4="10.0.0.2", ipv6="fd00::2")) as server_stack,
        anyio.create_task_group() as tg,
    ):
        listener = await server_stack.tcp_listen(("::", 7))
        tg.start_soon(listener.serve, echo)
        for line in ("hello over IPv6", "and again", "bye"):
            stream = await client_stack.tcp_connect(("fd00::2", 7))
            await stream.send(line.encode())
            reply = await stream.receive()
            print(f"{stream.local_address} -> {stream.remote_address}: sent {line!r}, got {reply.decode()!r}")
            await stream.aclose()
        stats = client_stack.stats()
        print(f"client stack: {stats['packets_out']} packets out, {stats['tcp_retransmits']} retransmitted")
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loss", type=float, default=0.0, help="percent of packets lost each way")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.loss / 100, backend=args.backend)
