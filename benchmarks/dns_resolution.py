"""DNS costs: the codec, and a lookup through two Stacks on a memory link.

Each figure is printed beside a baseline from the same run: the codec beside dnspython's (when
the test extra is installed) on the same bytes; an uncached ``resolve`` (A and AAAA, two
queries) beside one UDP round trip of the same size between the same stacks, so the ratio is
what DNS adds to the bare transport; a cached ``resolve`` beside nothing (it sends nothing).

    python benchmarks/dns_resolution.py
    python benchmarks/dns_resolution.py --backend trio
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import AsyncExitStack

import anyio

from smolmix_core.devices import memory_link
from smolmix_core.dns import (
    DnsResolver,
    DnsResponder,
    Message,
    Record,
    RecordType,
    build_query,
    decode_message,
)
from smolmix_core.dns.message import build_response
from smolmix_core.netstack import Stack, StackConfig


def _per_call(function: Callable[[], object], seconds: float = 0.5) -> float:
    count = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            function()
        count += 200
    return elapsed / count


def _codec() -> None:
    query = decode_message(build_query("www.example.com", RecordType.A, id=1))
    answers = tuple(Record("www.example.com", RecordType.A, 60, f"192.0.2.{n}") for n in range(1, 9))
    wire = build_response(query, answers=answers).encode()
    message: Message = decode_message(wire)
    ours_decode = _per_call(lambda: decode_message(wire))
    ours_encode = _per_call(message.encode)
    print(f"codec: a {len(wire)}-byte answer with 8 A records")
    try:
        import dns.message
    except ImportError:
        print(f"  decode {ours_decode * 1e6:7.1f} us   encode {ours_encode * 1e6:7.1f} us   (no dnspython)")
        return
    theirs = dns.message.from_wire(wire)
    their_decode = _per_call(lambda: dns.message.from_wire(wire))
    their_encode = _per_call(theirs.to_wire)
    print(
        f"  decode {ours_decode * 1e6:7.1f} us  (dnspython {their_decode * 1e6:7.1f} us, "
        f"x{their_decode / ours_decode:.1f})"
    )
    print(
        f"  encode {ours_encode * 1e6:7.1f} us  (dnspython {their_encode * 1e6:7.1f} us, "
        f"x{their_encode / ours_encode:.1f})"
    )


async def _lookups(rounds: int) -> None:
    client_device, server_device = memory_link()
    async with AsyncExitStack() as exits:
        client = await exits.enter_async_context(Stack(client_device, StackConfig("10.0.0.2", "fc00::2")))
        server = await exits.enter_async_context(
            Stack(server_device, StackConfig("10.0.0.1", "fc00::1", forward_all=True))
        )
        group = await exits.enter_async_context(anyio.create_task_group())
        responder = DnsResponder({"far.test": ["192.0.2.1", "2001:db8::1"]}, use_system_resolver=False)
        dns_socket = await server.udp_socket(53)
        echo_socket = await server.udp_socket(7)

        async def serve_dns() -> None:
            while True:
                data, source = await dns_socket.recv_from()
                reply = await responder.answer(data)
                if reply is not None:
                    await dns_socket.send_to(reply, source)

        async def echo() -> None:
            while True:
                data, source = await echo_socket.recv_from()
                await echo_socket.send_to(data, source)

        group.start_soon(serve_dns)
        group.start_soon(echo)
        probe = await client.udp_socket()
        payload = build_query("far.test", RecordType.A, id=1)
        start = time.perf_counter()
        for _ in range(rounds):
            await probe.send_to(payload, ("10.0.0.1", 7))
            await probe.recv_from()
        round_trip = (time.perf_counter() - start) / rounds
        uncached = DnsResolver(client, ["10.0.0.1"], cache_size=0)
        start = time.perf_counter()
        for _ in range(rounds):
            await uncached.resolve("far.test")
        lookup = (time.perf_counter() - start) / rounds
        cached = DnsResolver(client, ["10.0.0.1"])
        await cached.resolve("far.test")
        start = time.perf_counter()
        for _ in range(rounds):
            await cached.resolve("far.test")
        hit = (time.perf_counter() - start) / rounds
        print(f"lookups over a memory link ({rounds} rounds)")
        print(f"  UDP round trip (baseline)      {round_trip * 1e6:8.1f} us")
        print(
            f"  resolve, uncached (A + AAAA)   {lookup * 1e6:8.1f} us   "
            f"x{lookup / round_trip:.1f} the round trip"
        )
        print(f"  resolve, cached                {hit * 1e6:8.1f} us")
        group.cancel_scope.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}  load {os.getloadavg()[0]:.2f}  backend {args.backend}")
    _codec()
    anyio.run(_lookups, args.rounds, backend=args.backend)
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
