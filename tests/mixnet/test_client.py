"""SphinxClient end to end on the in-process devnet over loopback TCP (no mocks on the byte path)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import replace

import anyio
import pytest

from smolmix_core.devnet import Devnet
from smolmix_core.errors import MixnetClientClosed
from smolmix_core.mixnet.client import SphinxClient, SphinxClientConfig
from smolmix_core.mixnet.interface import ReceivedMessage
from smolmix_core.mixnet.node import LinkObservation
from smolmix_core.mixnet.sphinx import PacketSize

pytestmark = pytest.mark.anyio

REGULAR, ACK = 2413, 386


def quick_retransmit(config: SphinxClientConfig, addition: float = 0.3) -> SphinxClientConfig:
    """Loopback round trips take milliseconds; retransmit after 0.3 s instead of 1.5 s."""
    return replace(config, core=replace(config.core, ack_wait_addition=addition))


async def receive_within(client: SphinxClient, seconds: float = 20.0) -> ReceivedMessage:
    with anyio.fail_after(seconds):
        return await client.receive()


async def test_small_messages_both_ways_and_every_link_carries_exact_sizes() -> None:
    observed: list[LinkObservation] = []
    async with Devnet.start(seed=11, monitor=observed.append) as net:
        alice = await net.client(0)
        bob = await net.client(1)
        for size in (1, 100, 1602, 1603, 5000):
            payload = os.urandom(size)
            await alice.send(bob.address, payload)
            assert await receive_within(bob) == ReceivedMessage(payload, None)
            await bob.send(alice.address, payload[::-1])
            assert await receive_within(alice) == ReceivedMessage(payload[::-1], None)
        sizes = Counter((o.direction, o.size) for o in observed)
        link_sizes = {size for (direction, size) in sizes if direction in ("in", "out", "uplink")}
        assert link_sizes == {REGULAR, ACK}
        assert {size for (direction, size) in sizes if direction == "push"} <= {1643, 21}
        assert sum(count for (direction, _), count in sizes.items() if direction == "in") > 0


async def test_one_megabyte_message() -> None:
    async with Devnet.start(seed=12) as net:
        alice = await net.client(0)
        bob = await net.client(1)
        payload = os.urandom(2**20)
        await alice.send(bob.address, payload)
        message = await receive_within(bob, 120)
        assert message.data == payload
        assert alice.stats()["packets_sent"] == -(-(len(payload) + 2) // 1604)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_ten_percent_loss_every_message_arrives_exactly_once() -> None:
    async with Devnet.start(seed=13, drop_probability=0.10) as net:
        config = quick_retransmit(net.client_config)
        alice = await net.client(0, config=config)
        bob = await net.client(1, config=config)
        messages = {os.urandom(8) + bytes([i]) * (i * 700 + 1) for i in range(12)}
        for message in messages:
            await alice.send(bob.address, message)
        received: list[bytes] = []
        with anyio.fail_after(120):
            while len(received) < len(messages):
                received.append((await bob.receive()).data)
        assert sorted(received) == sorted(messages)
        # duplicates of retransmitted fragments are absorbed; nothing more arrives
        with anyio.move_on_after(1.0):
            extra = await bob.receive()
            pytest.fail(f"a message arrived twice: {len(extra.data)} bytes")
        dropped = sum(stats.get("dropped_fault", 0) for stats in net.stats().values())
        assert dropped > 0
        assert alice.stats()["retransmissions_sent"] > 0


async def test_anonymous_replies_through_surbs_including_more_surbs() -> None:
    async with Devnet.start(seed=14) as net:
        alice = await net.client(0)
        service = await net.client(1)
        await alice.send_anonymous(service.address, b"question", reply_surbs=3)
        request = await receive_within(service)
        assert request.data == b"question"
        assert request.sender_tag is not None
        assert len(request.sender_tag) == 16
        # a reply that needs far more SURBs than were attached: the service asks for more
        answer = os.urandom(40_000)
        await service.reply(request.sender_tag, answer)
        reply = await receive_within(alice, 60)
        assert reply == ReceivedMessage(answer, None)
        assert service.stats()["surb_requests_sent"] >= 1
        assert alice.stats()["surb_requests_answered"] >= 1
        # further conversation on the same tag with reply_surbs=0
        await alice.send_anonymous(service.address, b"again", reply_surbs=0)
        again = await receive_within(service)
        assert again == ReceivedMessage(b"again", request.sender_tag)
        await service.reply(again.sender_tag or b"", b"ok")
        assert (await receive_within(alice)).data == b"ok"


async def test_loop_cover_is_sent_received_and_discarded() -> None:
    async with Devnet.start(seed=15, fast=False, average_packet_delay=0.002) as net:
        config = replace(
            net.client_config, message_sending_average_delay=0.01, loop_cover_traffic_average_delay=0.01
        )
        alice = await net.client(0, config=config)
        bob = await net.client(1, config=config)
        with anyio.fail_after(30):
            while alice.stats().get("cover_packets_received", 0) < 5:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        assert alice.stats()["cover_packets_sent"] >= 5
        await alice.send(bob.address, b"real traffic among cover")
        assert (await receive_within(bob)).data == b"real traffic among cover"
        with anyio.move_on_after(0.3):
            stray = await alice.receive()
            pytest.fail(f"cover reached the application: {stray!r}")


async def test_send_waits_when_the_queue_is_full() -> None:
    async with Devnet.start(seed=16, fast=False, average_packet_delay=0.0) as net:
        config = replace(
            net.client_config,
            message_sending_average_delay=60.0,
            disable_loop_cover_traffic_stream=True,
            max_queued_packets=4,
        )
        alice = await net.client(0, config=config)
        bob = await net.client(1)
        await alice.send(bob.address, os.urandom(6000))  # 4 packets: the queue is now full
        assert alice.queued_packets >= 4
        with anyio.move_on_after(0.5) as scope:
            await alice.send(bob.address, b"must wait")
        assert scope.cancelled_caught


async def test_fast_bursts_stay_within_the_in_flight_window() -> None:
    async with Devnet.start(seed=20) as net:
        config = replace(net.client_config, max_packets_in_flight=3, fast_burst_packets=16)
        alice = await net.client(0, config=config)
        bob = await net.client(1)
        in_flight_at_uplink: list[int] = []

        def watch(observation: LinkObservation) -> None:
            if observation.direction == "uplink":
                in_flight_at_uplink.append(alice.stats()["packets_in_flight"])

        net.gateways[0].monitor = watch
        payload = os.urandom(20 * 1604)
        await alice.send(bob.address, payload)
        assert (await receive_within(bob)).data == payload
        assert len(in_flight_at_uplink) >= 21
        assert max(in_flight_at_uplink) <= 3


def test_a_burst_holds_at_least_one_packet() -> None:
    with pytest.raises(ValueError, match="fast_burst_packets"):
        SphinxClientConfig.fast(fast_burst_packets=0)


async def test_aclose_leaves_no_task_and_receive_reports_closed() -> None:
    async with Devnet.start(seed=17) as net:
        with anyio.fail_after(10):
            async with SphinxClient.connect(
                net.topology, net.topology.gateways[0], config=net.client_config
            ) as client:
                await client.send(client.address, b"to myself")
                assert (await client.receive()).data == b"to myself"
        with pytest.raises(MixnetClientClosed):
            await client.receive()
        with pytest.raises(MixnetClientClosed):
            await client.send(client.address, b"after close")
        other = await net.client(1)
        await other.aclose()
        await other.aclose()
        assert [message async for message in other] == []


async def test_extended_packet_size() -> None:
    observed: list[LinkObservation] = []
    async with Devnet.start(seed=18, monitor=observed.append) as net:
        config = SphinxClientConfig.fast()
        config = replace(config, core=replace(config.core, packet_size=PacketSize.EXTENDED8))
        alice = await net.client(0, config=config)
        bob = await net.client(1, config=config)
        payload = os.urandom(100_000)
        await alice.send(bob.address, payload)
        assert (await receive_within(bob)).data == payload
        with anyio.fail_after(10):
            while alice.stats().get("acks_received", 0) < 13:  # noqa: ASYNC110 (acks trail the data)
                await anyio.sleep(0.01)
        assert {o.size for o in observed if o.direction in ("in", "out", "uplink")} == {8557, ACK}
        assert alice.stats()["packets_sent"] == 13


async def test_client_reconnects_and_gets_what_arrived_meanwhile() -> None:
    async with Devnet.start(seed=19) as net:
        alice = await net.client(0)
        bob = await net.client(1)
        gateway = net.gateways[0]
        assert await gateway.disconnect_client(alice.address.identity)
        await bob.send(alice.address, b"while you were away")
        assert (await receive_within(alice)).data == b"while you were away"
        await alice.send(bob.address, b"back again")
        assert (await receive_within(bob)).data == b"back again"
        assert alice.stats()["reconnections"] >= 1
        assert gateway.stats()["client_links"] >= 2
