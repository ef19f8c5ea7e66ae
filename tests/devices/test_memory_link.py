"""memory_link: ordered delivery both ways, bounded queues with their stated policies, closing."""

from __future__ import annotations

import anyio
import pytest

from smolmix_core.devices import memory_link

pytestmark = pytest.mark.anyio


async def test_packets_arrive_in_order_both_ways() -> None:
    a, b = memory_link(mtu=1500, capacity=8)
    async with anyio.create_task_group() as tg:

        async def send_all() -> None:
            for i in range(100):
                await a.send(bytes([i]) * 20)

        tg.start_soon(send_all)
        received = [await b.receive() for _ in range(100)]
    assert received == [bytes([i]) * 20 for i in range(100)]
    await b.send(b"back")
    assert await a.receive() == b"back"
    assert a.stats()["sent"] == 100
    assert b.stats()["received"] == 100


async def test_wait_policy_blocks_sender_until_reader_makes_room() -> None:
    a, b = memory_link(capacity=2)
    a.send_nowait(b"1")
    a.send_nowait(b"2")
    with pytest.raises(anyio.WouldBlock):
        a.send_nowait(b"3")
    with anyio.move_on_after(0.05) as scope:
        await a.send(b"3")
    assert scope.cancelled_caught, "send must wait while the link is full"
    async with anyio.create_task_group() as tg:
        tg.start_soon(a.send, b"3")
        await anyio.sleep(0.01)
        assert await b.receive() == b"1"
    assert [b.receive_nowait(), b.receive_nowait()] == [b"2", b"3"]
    assert a.stats()["dropped_full"] == 0


async def test_drop_policy_drops_newest_and_counts() -> None:
    a, b = memory_link(capacity=3, when_full="drop")
    for i in range(10):
        await a.send(bytes([i]))
    assert a.stats()["dropped_full"] == 7
    assert [b.receive_nowait() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    with pytest.raises(anyio.WouldBlock):
        b.receive_nowait()


async def test_oversize_packets_are_dropped_and_counted() -> None:
    a, b = memory_link(mtu=100)
    await a.send(b"x" * 101)
    await a.send(b"y" * 100)
    assert await b.receive() == b"y" * 100
    assert a.stats()["dropped_oversize"] == 1


async def test_closing_one_end_ends_the_other() -> None:
    a, b = memory_link()
    await a.send(b"last")
    await a.aclose()
    assert await b.receive() == b"last"
    with pytest.raises(anyio.EndOfStream):
        await b.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await b.send(b"nobody listens")
    with pytest.raises(anyio.ClosedResourceError):
        await a.send(b"x")
    with pytest.raises(anyio.ClosedResourceError):
        await a.receive()


async def test_close_wakes_a_waiting_receiver() -> None:
    a, b = memory_link()
    outcome: list[str] = []

    async def wait_for_packet() -> None:
        try:
            await b.receive()
        except anyio.EndOfStream:
            outcome.append("eof")

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait_for_packet)
        await anyio.sleep(0.01)
        await a.aclose()
    assert outcome == ["eof"]


def test_rejects_nonsense_parameters() -> None:
    with pytest.raises(ValueError):
        memory_link(capacity=0)
    with pytest.raises(ValueError):
        memory_link(mtu=10)
