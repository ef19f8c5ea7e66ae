"""FaultInjector: seeded, reproducible impairments; delay and rate through the clock."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from smolmix_core.clock import VirtualClock
from smolmix_core.devices import FaultInjector, memory_link

pytestmark = pytest.mark.anyio


def _drain(device: object) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(device.receive_nowait())  # type: ignore[attr-defined]
        except anyio.WouldBlock:
            return out


async def _fate(seed: int, **faults: Any) -> tuple[list[bytes], dict[str, int]]:
    a, b = memory_link(capacity=10_000)
    link = FaultInjector(a, seed=seed, **faults)
    for i in range(2000):
        await link.send(i.to_bytes(2, "big") * 10)
    return _drain(b), link.stats()


async def test_loss_rate_is_close_to_requested_and_seed_replays() -> None:
    got, stats = await _fate(7, loss=0.1)
    assert 140 <= stats["lost"] <= 260
    assert len(got) == 2000 - stats["lost"]
    again, _ = await _fate(7, loss=0.1)
    assert again == got
    other, _ = await _fate(8, loss=0.1)
    assert other != got


async def test_duplicates_are_exact_copies_next_to_the_original() -> None:
    got, stats = await _fate(1, duplicate=0.2)
    assert 300 <= stats["duplicated"] <= 500
    assert len(got) == 2000 + stats["duplicated"]
    assert sorted(set(got)) == sorted(got[i] for i in range(len(got)) if i == 0 or got[i] != got[i - 1])


async def test_corruption_flips_exactly_one_bit() -> None:
    got, stats = await _fate(3, corrupt=0.05)
    originals = [i.to_bytes(2, "big") * 10 for i in range(2000)]
    damaged = [(g, o) for g, o in zip(got, originals, strict=True) if g != o]
    assert len(damaged) == stats["corrupted"] > 50
    for g, o in damaged:
        flipped = sum(bin(x ^ y).count("1") for x, y in zip(g, o, strict=True))
        assert flipped == 1


async def test_delay_and_jitter_follow_the_virtual_clock_and_keep_fifo() -> None:
    clock = VirtualClock()
    a, b = memory_link()
    arrivals: list[tuple[float, bytes]] = []
    async with clock.running(), FaultInjector(a, seed=1, delay=0.5, jitter=0.1, clock=clock) as link:
        for i in range(20):
            await link.send(bytes([i]))
        for _ in range(20):
            packet = await b.receive()
            arrivals.append((clock.now(), packet))
    assert [p for _, p in arrivals] == [bytes([i]) for i in range(20)]
    assert all(0.5 <= t <= 0.6 for t, _ in arrivals)
    assert arrivals[-1][0] > arrivals[0][0]


async def test_rate_limit_serialises_packets() -> None:
    clock = VirtualClock()
    a, b = memory_link()
    async with clock.running(), FaultInjector(a, seed=1, rate=10_000.0, clock=clock) as link:
        for _ in range(10):
            await link.send(b"x" * 1000)
        for _ in range(10):
            await b.receive()
        finished = clock.now()
    assert finished == pytest.approx(1.0)


async def test_reorder_lets_later_packets_overtake() -> None:
    clock = VirtualClock()
    a, b = memory_link(capacity=1000)
    async with clock.running(), FaultInjector(a, seed=5, reorder=0.2, clock=clock) as link:
        for i in range(200):
            await link.send(i.to_bytes(2, "big"))
        got = [int.from_bytes(await b.receive(), "big") for _ in range(200)]
    assert sorted(got) == list(range(200))
    assert got != list(range(200))
    assert link.stats()["reordered"] > 10


async def test_full_delay_line_drops_and_counts() -> None:
    clock = VirtualClock()
    a, _b = memory_link()
    async with FaultInjector(a, seed=1, delay=1.0, clock=clock, queue=5) as link:
        for _ in range(8):
            await link.send(b"p")
        assert link.stats()["queue_drops"] == 3
        assert link.stats()["held"] == 5


async def test_holding_injector_needs_async_with() -> None:
    a, _ = memory_link()
    link = FaultInjector(a, seed=1, delay=0.1)
    with pytest.raises(RuntimeError, match="async with"):
        await link.send(b"x")


async def test_receive_side_impairment() -> None:
    a, b = memory_link(capacity=1000)
    async with FaultInjector(b, seed=2, loss=0.5, on_receive=True) as lossy_in:
        for i in range(200):
            await a.send(bytes([i % 256]))
        await a.aclose()
        got = []
        while True:
            try:
                got.append(await lossy_in.receive())
            except anyio.EndOfStream:
                break
    assert len(got) == 200 - lossy_in.stats()["lost"]
    assert 60 < len(got) < 140


async def test_full_inner_device_gives_backpressure_without_changing_draws() -> None:
    reference, _ = await _fate_small(9)
    a, b = memory_link(capacity=2)
    link = FaultInjector(a, seed=9, duplicate=0.5, loss=0.2)
    async with anyio.create_task_group() as tg:

        async def sender() -> None:
            for i in range(100):
                await link.send(bytes([i]))

        tg.start_soon(sender)
        got = []
        for _ in reference:
            got.append(await b.receive())
            await anyio.lowlevel.checkpoint()
    assert got == reference


async def _fate_small(seed: int) -> tuple[list[bytes], dict[str, int]]:
    a, b = memory_link(capacity=10_000)
    link = FaultInjector(a, seed=seed, duplicate=0.5, loss=0.2)
    for i in range(100):
        await link.send(bytes([i]))
    return _drain(b), link.stats()


def test_probabilities_are_validated() -> None:
    a, _ = memory_link()
    with pytest.raises(ValueError):
        FaultInjector(a, seed=1, loss=1.5)
    with pytest.raises(ValueError):
        FaultInjector(a, seed=1, rate=0)
