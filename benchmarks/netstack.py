"""Userspace stack speed: goodput, loss recovery, kernel interop, connection rate, memory.

Every figure is printed next to a baseline measured in the same run: the kernel's own TCP over
loopback, driven in-process through anyio sockets (``anyio.connect_tcp`` to 127.0.0.1) with the
same transfer size and write size. Goals from the project brief are printed beside each line.

    python benchmarks/netstack.py                 # about ten seconds
    python benchmarks/netstack.py --size 8        # MB per transfer (default 64)
    python benchmarks/netstack.py --backend trio

The TUN measurement needs root and /dev/net/tun; it is skipped with a message otherwise.
"""

from __future__ import annotations

import argparse
import gc
import os
import secrets
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager

import anyio
from anyio.abc import ByteStream, SocketListener

from smolmix_core.devices import Device, FaultInjector, TunDevice, memory_link
from smolmix_core.netstack import Stack, StackConfig

CHUNK = 64 * 1024


def _config(ip4: str, ip6: str, mtu: int) -> StackConfig:
    return StackConfig(ipv4=ip4, ipv6=ip6, mtu=mtu, seed=1)


async def _pump(sender: ByteStream, receiver: ByteStream, size: int) -> float:
    """Seconds to move ``size`` bytes from ``sender`` to ``receiver`` (send, FIN, read to EOF)."""
    block = b"\xa5" * CHUNK
    received = 0

    async def write() -> None:
        for _ in range(size // CHUNK):
            await sender.send(block)
        await sender.send_eof()

    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(write)
        while True:
            try:
                received += len(await receiver.receive())
            except anyio.EndOfStream:
                break
    elapsed = time.perf_counter() - start
    assert received == size // CHUNK * CHUNK, (received, size)
    return elapsed


async def _loopback_listener() -> SocketListener:
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1")).listeners[0]
    assert isinstance(listener, SocketListener)
    return listener


async def kernel_loopback_goodput(size: int) -> float:
    listener = await _loopback_listener()
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        accepted: list[ByteStream] = []
        ready = anyio.Event()

        async def accept() -> None:
            accepted.append(await listener.accept())
            ready.set()

        tg.start_soon(accept)
        client = await anyio.connect_tcp("127.0.0.1", port)
        await ready.wait()
        elapsed = await _pump(client, accepted[0], size)
        await client.aclose()
        await accepted[0].aclose()
    return size / elapsed / 1e6


async def stacks_goodput(size: int, mtu: int, loss: float = 0.0) -> tuple[float, dict[str, int]]:
    a_dev: Device
    b_dev: Device
    a_dev, b_dev = memory_link(mtu=mtu, capacity=512)
    async with AsyncExitStack() as exits:
        if loss:
            a_dev = await exits.enter_async_context(FaultInjector(a_dev, seed=1, loss=loss))
            b_dev = await exits.enter_async_context(FaultInjector(b_dev, seed=2, loss=loss))
        a = await exits.enter_async_context(Stack(a_dev, _config("10.0.0.1", "fd00::1", mtu)))
        b = await exits.enter_async_context(Stack(b_dev, _config("10.0.0.2", "fd00::2", mtu)))
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect(("10.0.0.2", 80))
        server = await listener.accept()
        elapsed = await _pump(client, server, size)
        stats = {**a.stats(), "receiver_retransmits": b.stats()["tcp_retransmits"]}
        await client.aclose()
        await server.aclose()
    return size / elapsed / 1e6, stats


async def stacks_connection_rate(count: int) -> float:
    a_dev, b_dev = memory_link()
    async with (
        Stack(a_dev, _config("10.0.0.1", "fd00::1", 1500)) as a,
        Stack(b_dev, _config("10.0.0.2", "fd00::2", 1500)) as b,
    ):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        start = time.perf_counter()
        for _ in range(count):
            client = await a.tcp_connect(("10.0.0.2", 80))
            server = await listener.accept()
            await client.send(b"x")
            await server.receive()
            await client.aclose()
            await server.aclose()
        return count / (time.perf_counter() - start)


async def kernel_connection_rate(count: int) -> float:
    listener = await _loopback_listener()
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener:
        start = time.perf_counter()
        for _ in range(count):
            client = await anyio.connect_tcp("127.0.0.1", port)
            server = await listener.accept()
            await client.send(b"x")
            await server.receive()
            await client.aclose()
            await server.aclose()
        return count / (time.perf_counter() - start)


async def idle_connection_memory(count: int) -> tuple[float, float]:
    """(bytes per connection end, of which buffer storage) measured with tracemalloc."""
    a_dev, b_dev = memory_link(capacity=4096)
    async with (
        Stack(a_dev, _config("10.0.0.1", "fd00::1", 1500)) as a,
        Stack(b_dev, _config("10.0.0.2", "fd00::2", 1500)) as b,
    ):
        listener = await b.tcp_listen(("0.0.0.0", 80), backlog=count)
        warm = await a.tcp_connect(("10.0.0.2", 80))
        streams = [warm, await listener.accept()]
        await anyio.sleep(0.1)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.take_snapshot()
        for _ in range(count):
            streams.append(await a.tcp_connect(("10.0.0.2", 80)))
            streams.append(await listener.accept())
        await anyio.sleep(0.2)  # let delayed ACKs and wake-ups settle
        gc.collect()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        total = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        buffers = sum(
            stat.size_diff
            for stat in after.compare_to(before, "lineno")
            if stat.traceback[0].filename.endswith("tcp_buffers.py")
        )
        for stream in streams:
            stream.abort()
    return total / (2 * count), buffers / (2 * count)


# --- our stack to the Linux kernel through TUN -------------------------------------------------

_SINK = """
import socket, sys
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("10.78.0.1", 5001))
server.listen(1)
print("ready", flush=True)
conn, _ = server.accept()
total = 0
while True:
    data = conn.recv(1 << 20)
    if not data:
        break
    total += len(data)
conn.sendall(str(total).encode())
conn.close()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def tun_to_kernel_sink(mtu: int) -> Iterator[TunDevice]:
    """A TUN interface in a fresh namespace where a kernel TCP sink (another process) listens."""
    token = secrets.token_hex(3)
    netns, name = f"smxb-{token}", f"smxb{token}"
    _ip("netns", "add", netns)
    tun = None
    sink = None
    try:
        tun = TunDevice(name, mtu=mtu)
        _ip("link", "set", name, "netns", netns)
        _ip("-n", netns, "addr", "add", "10.78.0.1/24", "dev", name)
        _ip("-n", netns, "link", "set", name, "up")
        sink = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", _SINK], stdout=subprocess.PIPE, text=True
        )
        assert sink.stdout is not None
        assert sink.stdout.readline().strip() == "ready"
        yield tun
    finally:
        if sink is not None:
            sink.kill()
            sink.wait()
        if tun is not None:
            tun.close()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)


async def tun_goodput(tun: TunDevice, size: int) -> float:
    async with Stack(tun, _config("10.78.0.2", "fd78::2", tun.mtu)) as stack:
        stream = await stack.tcp_connect(("10.78.0.1", 5001))
        block = b"\x5a" * CHUNK
        start = time.perf_counter()
        for _ in range(size // CHUNK):
            await stream.send(block)
        await stream.send_eof()
        reply = b""
        while True:
            try:
                reply += await stream.receive()
            except anyio.EndOfStream:
                break
        elapsed = time.perf_counter() - start
        await stream.aclose()
    assert int(reply) == size // CHUNK * CHUNK
    return size / elapsed / 1e6


def measure_tun(size: int, mtu: int, backend: str) -> float | str:
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        return "skipped: needs root and /dev/net/tun"
    with tun_to_kernel_sink(mtu) as tun:
        return anyio.run(tun_goodput, tun, size, backend=backend)


# --- report ----------------------------------------------------------------------------------


def _line(label: str, value: float | str, unit: str, baseline: float, goal: str) -> None:
    if isinstance(value, str):
        print(f"{label:<44} {value}")
        return
    print(f"{label:<44} {value:9.1f} {unit:<8} {value / baseline:6.2f}× kernel   goal: {goal}")


async def memory_link_figures(size: int) -> float:
    await kernel_loopback_goodput(size // 4)  # warm up
    kernel = await kernel_loopback_goodput(size)
    print(f"baseline: kernel TCP over loopback, in-process anyio sockets: {kernel:.1f} MB/s")
    print()
    lossless, _ = await stacks_goodput(size, 1500)
    _line("two stacks, memory link, MTU 1500", lossless, "MB/s", kernel, ">= 30 MB/s")
    big, _ = await stacks_goodput(size, 65535)
    _line("two stacks, memory link, MTU 65535", big, "MB/s", kernel, "(report)")
    lossy, stats = await stacks_goodput(size, 1500, loss=0.01)
    _line("two stacks, MTU 1500, 1% loss each way", lossy, "MB/s", kernel, ">= 50% of lossless")
    print(
        f"{'':<44} {lossy / lossless:9.0%} of lossless; {stats['tcp_retransmits']} retransmits, "
        f"{stats['tcp_fast_recoveries']} fast recoveries, {stats['tcp_rto_timeouts']} RTOs"
    )
    return kernel


async def connection_figures() -> None:
    kernel_rate = await kernel_connection_rate(300)
    print(f"baseline: kernel connect+accept+1 byte+close over loopback: {kernel_rate:.0f}/s")
    rate = await stacks_connection_rate(300)
    print(f"{'connections per second, two stacks':<44} {rate:9.0f} /s      {rate / kernel_rate:6.2f}× kernel")
    print()
    per_end, buffers = await idle_connection_memory(200)
    print(
        f"{'memory per idle connection end':<44} {per_end / 1024:9.1f} KiB     "
        f"of which buffer storage {buffers / 1024:.1f} KiB; besides buffers "
        f"{(per_end - buffers) / 1024:.1f} KiB   goal: <= 20 KiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=64, help="MB per transfer (default 64)")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    arguments = parser.parse_args()
    backend = arguments.backend
    size = arguments.size * 1024 * 1024
    load = os.getloadavg()
    print(f"smolmix netstack benchmark on {backend}, {arguments.size} MB per transfer")
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    started = time.perf_counter()
    kernel = anyio.run(memory_link_figures, size, backend=backend)
    for mtu, goal in ((1500, ">= 20 MB/s"), (65535, "(report)")):
        _line(
            f"our client -> Linux kernel via TUN, MTU {mtu}",
            measure_tun(size, mtu, backend),
            "MB/s",
            kernel,
            goal,
        )
    print()
    anyio.run(connection_figures, backend=backend)
    print(f"\n(total {time.perf_counter() - started:.1f} s; load average now {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
