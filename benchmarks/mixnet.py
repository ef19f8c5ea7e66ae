"""Mixnet speed: Sphinx rates, devnet message throughput, and 1 KB message latency.

Every figure is printed with its goal and next to a baseline measured in the same run:

- throughput against the **Sphinx ceiling**: each regular message packet costs two packet
  creations (the packet and its SURB-ACK) and eight hop processings (four hops each) on this
  one core, so ``1 / (2/create + 8/process)`` packets/s is the most a one-process devnet can
  move, whatever the networking code does;
- Sphinx rates against raw X25519 and (create) the literal key schedule of spec §3.1;
- latency against a **raw loopback TCP round trip** of 1 KB with anyio (the floor of five TCP
  links is about five one-way trips) and, with per-hop delays, against the expected mixing delay
  (3 mixes × mean delay; the gateway's final hop adds none).

    python benchmarks/mixnet.py                    # about a minute
    python benchmarks/mixnet.py --repeat 5         # best of 5 per throughput figure
    python benchmarks/mixnet.py --extended         # also 32 KiB extended packets
    python benchmarks/mixnet.py --processes        # also a devnet with one process per node
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import anyio
import anyio.abc

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sphinx_rates import (
    GOAL_CREATE_PER_SECOND,
    GOAL_PROCESS_PER_SECOND,
    literal_create_rate,
    measure_create,
    measure_process,
    measure_x25519,
)

from smolmix_core.devnet import Devnet
from smolmix_core.devnet.processes import run_devnet_processes
from smolmix_core.mixnet.client import SphinxClient, SphinxClientConfig
from smolmix_core.mixnet.sphinx import PacketSize

REGULAR_PAYLOAD = 1604  # message bytes per regular packet (spec §7)


def sphinx_ceiling(create: float, process: float) -> float:
    """Message bytes per second one core can carry through a one-process devnet."""
    packets = 1.0 / (2.0 / create + 8.0 / process)
    return packets * REGULAR_PAYLOAD


async def tcp_round_trip(samples: int = 200, size: int = 1024) -> float:
    """Median seconds for 1 KB to go to a loopback echo server and back."""

    async def echo(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.send(await stream.receive())
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    times = []
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            payload = os.urandom(size)
            for _ in range(samples):
                start = time.perf_counter()
                await stream.send(payload)
                received = 0
                while received < size:
                    received += len(await stream.receive())
                times.append(time.perf_counter() - start)
        tg.cancel_scope.cancel()
    return statistics.median(times)


async def throughput(net_client: tuple[SphinxClient, SphinxClient], total: int, message: int) -> float:
    """Message bytes per second from one client to another, ``total`` bytes in ``message``-sized pieces."""
    sender, receiver = net_client
    count = max(1, total // message)
    payload = os.urandom(message)
    start = time.perf_counter()

    async def send_all() -> None:
        for _ in range(count):
            await sender.send(receiver.address, payload)

    async with anyio.create_task_group() as tg:
        tg.start_soon(send_all)
        for _ in range(count):
            received = await receiver.receive()
            assert len(received.data) == message
    return count * message / (time.perf_counter() - start)


async def latencies(sender: SphinxClient, receiver: SphinxClient, samples: int) -> list[float]:
    payload = os.urandom(1024)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        await sender.send(receiver.address, payload)
        await receiver.receive()
        times.append(time.perf_counter() - start)
    return times


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


async def best_throughput(
    pair: tuple[SphinxClient, SphinxClient], total: int, message: int, repeat: int
) -> tuple[float, float]:
    """Best and median of ``repeat`` runs (the machine is shared: other load only slows a run down)."""
    rates = [await throughput(pair, total, message) for _ in range(repeat)]
    return max(rates), statistics.median(rates)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


async def main(args: argparse.Namespace) -> None:
    print(f"machine: {load()}")
    print("\nSphinx (one core, 4-hop regular packets)")
    x25519 = measure_x25519(args.seconds / 2)
    create = measure_create(args.seconds)
    create_literal = literal_create_rate(args.seconds)
    process = measure_process(args.seconds)
    ceiling = sphinx_ceiling(create, process)
    print(f"  X25519 (baseline)           {x25519:9,.0f} /s")
    print(
        f"  create                      {create:9,.0f} packets/s   (goal ≥ {GOAL_CREATE_PER_SECOND:,}/s: "
        f"ratio {create / GOAL_CREATE_PER_SECOND:.2f})   = {create / create_literal:.2f} × "
        f"the literal key schedule, {x25519 / create:.1f} X25519s' worth"
    )
    print(
        f"  process                     {process:9,.0f} packets/s   (goal ≥ {GOAL_PROCESS_PER_SECOND:,}/s: "
        f"ratio {process / GOAL_PROCESS_PER_SECOND:.2f})   = {x25519 / process:.1f} X25519s' worth"
    )
    print(
        f"  one-core devnet ceiling     {ceiling / 1e6:9.2f} MB/s of message bytes (2 creates + 8 processes)"
    )

    rtt = await tcp_round_trip()
    print(f"\nraw loopback TCP round trip, 1 KB: {ms(rtt)} (median)")

    total = int(args.megabytes * 2**20)
    print(
        f"\nthroughput, in-process devnet, fast mode, {total / 2**20:g} MiB in 64 KiB messages, "
        f"best of {args.repeat} (median after it)"
    )
    async with Devnet.start(seed=1) as net:
        pair = (await net.client(0), await net.client(1))
        await throughput(pair, 64 * 1024, 64 * 1024)
        rate, rate_median = await best_throughput(pair, total, 64 * 1024, args.repeat)
        print(
            f"  regular packets             {rate / 1e6:9.2f} MB/s ({rate_median / 1e6:.2f})   "
            f"(goal ≥ 1 MB/s: ratio {rate / 1e6:.2f})"
        )
        print(f"      = {rate / ceiling:.2f} × the one-core Sphinx ceiling")
        if args.extended:
            config = SphinxClientConfig.fast()
            config = replace(config, core=replace(config.core, packet_size=PacketSize.EXTENDED32))
            pair = (await net.client(0, config=config), await net.client(1, config=config))
            rate_ext, ext_median = await best_throughput(pair, total * 4, 256 * 1024, args.repeat)
            print(
                f"  extended 32 KiB packets     {rate_ext / 1e6:9.2f} MB/s ({ext_median / 1e6:.2f})   "
                f"(goal ≥ 4 MB/s: ratio {rate_ext / 4e6:.2f})"
            )
            print(f"      = {rate_ext / rate:.2f} × regular packets")

    print(f"\nlatency of a 1 KB message ({args.samples} samples; loopback TCP round trip {ms(rtt)})")
    async with Devnet.start(seed=2) as net:
        sender, receiver = await net.client(0), await net.client(1)
        await latencies(sender, receiver, 5)
        zero = await latencies(sender, receiver, args.samples)
        print(
            f"  no delays                   median {ms(statistics.median(zero))}   p95 {ms(p95(zero))}"
            f"   = {statistics.median(zero) / rtt:.0f} × TCP round trip   (goal ≤ 20 ms: ratio"
            f" {p95(zero) / 0.020:.2f} at p95)"
        )
        delayed_config = SphinxClientConfig.fast()
        delayed_config = replace(
            delayed_config,
            core=replace(delayed_config.core, average_packet_delay=0.015, average_ack_delay=0.015),
        )
        sender = await net.client(0, config=delayed_config)
        receiver = await net.client(1, config=delayed_config)
        delayed = await latencies(sender, receiver, args.samples)
        print(
            f"  15 ms per hop               median {ms(statistics.median(delayed))}   p95 {ms(p95(delayed))}"
            f"   (expected mixing delay: mean {ms(0.045)}; median of the sum of 3 Exp(15 ms) ≈ {ms(0.0401)})"
        )
        poisson = replace(SphinxClientConfig(), core=delayed_config.core)
        sender = await net.client(0, config=poisson)
        receiver = await net.client(1, config=poisson)
        shaped = await latencies(sender, receiver, max(10, args.samples // 2))
        print(
            f"  15 ms/hop + Poisson + cover median {ms(statistics.median(shaped))}   p95 {ms(p95(shaped))}"
            f"   (expected: {ms(0.045)} mixing + {ms(0.020)} mean wait for the next 20 ms tick)"
        )

    if args.processes:
        print("\nthroughput, devnet with one process per node (clients in this process)")
        async with run_devnet_processes() as descriptor:
            config = descriptor.client_config()
            async with (
                SphinxClient.connect(
                    descriptor.topology, descriptor.topology.gateways[0], config=config
                ) as a,
                SphinxClient.connect(
                    descriptor.topology, descriptor.topology.gateways[1], config=config
                ) as b,
            ):
                await throughput((a, b), 64 * 1024, 64 * 1024)
                rate_proc, proc_median = await best_throughput((a, b), total, 64 * 1024, args.repeat)
        print(f"  regular packets             {rate_proc / 1e6:9.2f} MB/s ({proc_median / 1e6:.2f})")
        print(
            f"      = {rate_proc / ceiling:.2f} × the one-core Sphinx ceiling, "
            f"{rate_proc / rate:.2f} × the in-process devnet"
        )
    print(f"\nmachine at the end: {load()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per Sphinx rate measurement")
    parser.add_argument("--megabytes", type=float, default=2.0, help="payload moved per throughput figure")
    parser.add_argument("--samples", type=int, default=40, help="messages per latency figure")
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure (best is shown)")
    parser.add_argument("--extended", action="store_true", help="also measure 32 KiB extended packets")
    parser.add_argument("--processes", action="store_true", help="also measure a one-process-per-node devnet")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
