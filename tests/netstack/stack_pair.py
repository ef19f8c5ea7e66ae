"""Test support for the driver: two Stacks joined by a memory link (optionally impaired)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio

from smolmix_core.clock import Clock
from smolmix_core.devices import Device, FaultInjector, memory_link
from smolmix_core.netstack import Stack, StackConfig, TcpConfig

A4, A6 = "10.0.0.1", "fd00::1"
B4, B6 = "10.0.0.2", "fd00::2"


@asynccontextmanager
async def stack_pair(
    *,
    mtu: int = 1500,
    clock: Clock | None = None,
    faults: dict[str, Any] | None = None,
    seed: int = 1,
    tcp: TcpConfig | None = None,
    b_forward_all: bool = False,
    capacity: int = 256,
    stack_options: dict[str, Any] | None = None,
    wrap: Any = None,
) -> AsyncIterator[tuple[Stack, Stack]]:
    """Stack A (10.0.0.1, fd00::1) and stack B (10.0.0.2, fd00::2) over one memory link.

    ``faults`` impairs both directions with separately seeded FaultInjectors; ``wrap`` may wrap
    each raw device (``wrap(device, side)``) before the stacks see it.
    """
    a_dev: Device
    b_dev: Device
    a_dev, b_dev = memory_link(mtu=mtu, capacity=capacity)
    tcp = tcp or TcpConfig()
    async with AsyncExitStack() as exits:
        if wrap is not None:
            a_dev, b_dev = wrap(a_dev, "a"), wrap(b_dev, "b")
        if faults is not None:
            a_dev = await exits.enter_async_context(
                FaultInjector(a_dev, seed=seed * 2, clock=clock, **faults)
            )
            b_dev = await exits.enter_async_context(
                FaultInjector(b_dev, seed=seed * 2 + 1, clock=clock, **faults)
            )
        options = stack_options or {}
        stack_a = await exits.enter_async_context(
            Stack(
                a_dev,
                StackConfig(ipv4=A4, ipv6=A6, mtu=mtu, tcp=tcp, seed=seed),
                clock=clock,
                **options,
            )
        )
        stack_b = await exits.enter_async_context(
            Stack(
                b_dev,
                StackConfig(
                    ipv4=B4,
                    ipv6=B6,
                    mtu=mtu,
                    tcp=tcp,
                    seed=seed + 1000,
                    forward_all=b_forward_all,
                ),
                clock=clock,
                **options,
            )
        )
        yield stack_a, stack_b


async def read_all(stream: anyio.abc.ByteReceiveStream) -> bytes:
    """Everything until EndOfStream, asserting no empty chunk is ever returned."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = await stream.receive()
        except anyio.EndOfStream:
            return b"".join(chunks)
        assert chunk, "receive() must never return b''"
        chunks.append(chunk)


async def eventually(predicate: Any, limit: float = 5.0) -> None:
    """Poll ``predicate`` until true (for state that has no event of its own to wait on)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110 - polling is the point: no event to wait on
            await anyio.sleep(0.001)
