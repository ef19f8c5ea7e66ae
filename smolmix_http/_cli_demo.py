"""``smolmix demo``: two userspace TCP/IP stacks on an in-memory link, one TCP connection, measured.

Nothing leaves the process: stack A (10.0.0.1) and stack B (10.0.0.2) exchange raw IP packets
through a memory link, optionally made lossy and slow by a seeded fault injector. The demo opens
a connection, uploads and downloads random data, checks both with SHA-256 and prints what it saw.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from smolmix_core.devices import Device, FaultInjector, PcapWriter, memory_link
from smolmix_core.netstack import Stack, StackConfig, TcpStream

CLIENT_IP, SERVER_IP, PORT = "10.0.0.1", "10.0.0.2", 7
CHUNK = 64 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=float, default=8.0, help="MB to move each way (default 8)")
    parser.add_argument("--loss", type=float, default=0.0, help="packet loss each way, percent (default 0)")
    parser.add_argument("--delay", type=float, default=0.0, help="one-way link delay, ms (default 0)")
    parser.add_argument("--mtu", type=int, default=1500, help="link MTU in bytes (default 1500)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the fault injector (default 1)")
    parser.add_argument(
        "--pcap",
        metavar="FILE",
        help="write the client's packets to a pcap file (packet by packet: whole even if the demo is killed)",
    )
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.loss < 100 or args.delay < 0 or args.size <= 0 or not 68 <= args.mtu <= 65535:
        raise SystemExit(
            "smolmix demo: need 0 <= --loss < 100, --delay >= 0, --size > 0, 68 <= --mtu <= 65535"
        )
    report = anyio.run(_demo, args, backend=args.backend)
    return 0 if report.ok else 1


@dataclass
class _Leg:
    seconds: float
    received: bytes


@dataclass
class _Report:
    ok: bool


async def _demo(args: argparse.Namespace) -> _Report:
    size = int(args.size * 1e6)
    upload, download = os.urandom(size), os.urandom(size)
    loss = args.loss / 100
    print(
        f"smolmix demo: two userspace TCP/IP stacks on an in-memory link "
        f"(MTU {args.mtu}, loss {args.loss:g}% each way, delay {args.delay:g} ms, {args.backend})"
    )
    async with AsyncExitStack() as exits:
        client_dev: Device
        server_dev: Device
        client_dev, server_dev = memory_link(mtu=args.mtu, capacity=1024)
        if args.pcap:
            writer = exits.enter_context(PcapWriter(args.pcap))
            client_dev = writer.tap(client_dev)
        if loss or args.delay:
            faults = {"loss": loss, "delay": args.delay / 1000}
            client_dev = await exits.enter_async_context(FaultInjector(client_dev, seed=args.seed, **faults))
            server_dev = await exits.enter_async_context(
                FaultInjector(server_dev, seed=args.seed + 1, **faults)
            )
        client_stack = await exits.enter_async_context(
            Stack(client_dev, StackConfig(ipv4=CLIENT_IP, ipv6="fd00::1", mtu=args.mtu))
        )
        server_stack = await exits.enter_async_context(
            Stack(server_dev, StackConfig(ipv4=SERVER_IP, ipv6="fd00::2", mtu=args.mtu))
        )
        listener = await server_stack.tcp_listen((SERVER_IP, PORT))
        started = time.perf_counter()
        client = await client_stack.tcp_connect((SERVER_IP, PORT), timeout=30)
        handshake = time.perf_counter() - started
        server = await listener.accept()
        print(f"  connected {client.local_address[0]}:{client.local_address[1]} -> {SERVER_IP}:{PORT}")
        print(f"  handshake      {handshake * 1000:8.2f} ms")
        up = await _one_way(client, server, upload)
        down = await _one_way(server, client, download)
        await client.aclose()
        await server.aclose()
        await listener.aclose()
        ok = True
        for name, leg, sent in (("upload", up, upload), ("download", down, download)):
            match = hashlib.sha256(leg.received).digest() == hashlib.sha256(sent).digest()
            ok = ok and match
            print(
                f"  {name:<9} {len(sent) / 1e6:7.1f} MB  {len(sent) / leg.seconds / 1e6:8.1f} MB/s   "
                f"sha256 {'ok' if match else 'MISMATCH'} ({hashlib.sha256(leg.received).hexdigest()[:16]}…)"
            )
        client_stats, server_stats = client_stack.stats(), server_stack.stats()

        def both(counter: str) -> int:
            return client_stats.get(counter, 0) + server_stats.get(counter, 0)

        print(
            f"  packets        client sent {client_stats['packets_out']}, server sent "
            f"{server_stats['packets_out']}; lost on the link {both('device.lost')}"
        )
        print(
            f"  recovery       {both('tcp_retransmits')} retransmits, "
            f"{both('tcp_fast_recoveries')} fast recoveries, {both('tcp_rto_timeouts')} timeouts"
        )
        if args.pcap:
            print(f"  capture        {args.pcap} (LINKTYPE_RAW; open with tcpdump -r or Wireshark)")
    print("  result         " + ("both directions verified" if ok else "DATA MISMATCH"))
    return _Report(ok)


async def _one_way(sender: TcpStream, receiver: TcpStream, data: bytes) -> _Leg:
    """Send ``data`` in 64 KiB writes while the other side reads exactly that many bytes."""
    chunks: list[bytes] = []
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:

        async def write() -> None:
            view = memoryview(data)
            for offset in range(0, len(data), CHUNK):
                await sender.send(view[offset : offset + CHUNK])

        tg.start_soon(write)
        remaining = len(data)
        while remaining:
            chunk = await receiver.receive(min(remaining, 1 << 20))
            chunks.append(chunk)
            remaining -= len(chunk)
    return _Leg(time.perf_counter() - started, b"".join(chunks))
