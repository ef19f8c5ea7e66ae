"""Mix nodes and gateways over loopback TCP with hand-built Sphinx packets (no client core).

Route: gateway link → L1 → L2 → L3 → gateway, each a real server on an ephemeral port.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smolmix_core.errors import GatewayError
from smolmix_core.mixnet.framing import encode_frame
from smolmix_core.mixnet.gateway import GatewayConfig, GatewayServer
from smolmix_core.mixnet.gateway_link import GatewayLink
from smolmix_core.mixnet.node import LinkObservation, MixNodeServer, NodeConfig
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import PacketSize, RouteNode, build_packet, generate_keypair

pytestmark = pytest.mark.anyio


@dataclass
class Net:
    mixes: list[MixNodeServer]
    gateway: GatewayServer
    observed: list[LinkObservation]

    def route(self) -> list[RouteNode]:
        hops = [*self.mixes, self.gateway]
        return [RouteNode(NymNodeRoutingAddress(*hop.address).to_padded(32), hop.sphinx_key) for hop in hops]

    @property
    def first_hop(self) -> NymNodeRoutingAddress:
        return NymNodeRoutingAddress(*self.mixes[0].address)


@asynccontextmanager
async def small_net(config: NodeConfig | None = None) -> AsyncIterator[Net]:
    observed: list[LinkObservation] = []
    mixes = [
        MixNodeServer(
            generate_keypair()[0], os.urandom(32), layer=layer, config=config, monitor=observed.append
        )
        for layer in (1, 2, 3)
    ]
    gateway = GatewayServer(
        generate_keypair()[0], os.urandom(32), monitor=observed.append, config=GatewayConfig()
    )
    async with anyio.create_task_group() as tg:
        for server in (*mixes, gateway):
            await tg.start(server.serve)
        try:
            yield Net(mixes, gateway, observed)
        finally:
            tg.cancel_scope.cancel()


def surb_ack(net: Net, destination: bytes, ack_payload: bytes, delays_ns: list[int] | None = None) -> bytes:
    packet = build_packet(
        net.route(),
        destination,
        ack_payload,
        delays_ns=delays_ns or [0] * 4,
        payload_size=PacketSize.ACK.payload_size,
    )
    return net.first_hop.to_padded(19) + packet


def regular_packet(net: Net, destination: bytes, body: bytes, delays_ns: list[int] | None = None) -> bytes:
    """A regular packet whose plaintext is SURB-ACK(405) ‖ body(1643), as a real client builds it."""
    assert len(body) == 1643
    plaintext = surb_ack(net, destination, b"A" * 21) + body
    return build_packet(
        net.route(),
        destination,
        plaintext,
        delays_ns=delays_ns or [0] * 4,
        payload_size=PacketSize.REGULAR.payload_size,
    )


async def connect(net: Net, identity_secret: bytes) -> GatewayLink:
    return await GatewayLink.connect(net.gateway.client_url, net.gateway.identity, identity_secret)


async def eventually(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a counter condition (servers expose counters, not events)."""
    with anyio.fail_after(within):
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.01)


def identity_of(secret: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()


async def receive_n(link: GatewayLink, count: int, within: float = 10.0) -> list[bytes]:
    received: list[bytes] = []
    with anyio.fail_after(within):
        while len(received) < count:
            received.append(await link.receive())
    return received


async def test_packet_crosses_three_mixes_and_its_surb_ack_comes_back() -> None:
    async with small_net() as net:
        secret = os.urandom(32)
        link = await connect(net, secret)
        body = os.urandom(1643)
        await link.send(net.first_hop, regular_packet(net, identity_of(secret), body))
        payloads = await receive_n(link, 2)
        assert sorted(payloads, key=len) == [b"A" * 21, body]
        assert net.gateway.stats()["surb_acks_launched"] == 1
        for mix in net.mixes:
            assert mix.stats()["packets_processed"] == 2
        sizes = {(o.direction, o.size) for o in net.observed}
        mix_sizes = {size for direction, size in sizes if direction in ("in", "out", "uplink")}
        assert mix_sizes == {2413, 386}
        assert {size for direction, size in sizes if direction == "push"} == {1643, 21}
        await link.aclose()


async def test_mix_delays_hold_packets() -> None:
    async with small_net() as net:
        secret = os.urandom(32)
        link = await connect(net, secret)
        delay = 40_000_000
        packet = build_packet(
            net.route(),
            identity_of(secret),
            b"d" * 21,
            delays_ns=[delay] * 4,
            payload_size=PacketSize.ACK.payload_size,
        )
        started = time.monotonic()
        await link.send(net.first_hop, packet)
        assert await receive_n(link, 1) == [b"d" * 21]
        assert time.monotonic() - started >= 3 * delay / 1e9
        await link.aclose()


async def test_bad_input_is_dropped_counted_and_the_node_keeps_serving() -> None:
    async with small_net() as net:
        mix = net.mixes[0]
        secret = os.urandom(32)
        destination = identity_of(secret)
        link = await connect(net, secret)
        # 1. garbage: unknown size tag → the stream is closed, counted
        garbage = await anyio.connect_tcp(*mix.address)
        await garbage.send(b"\x08\x63\x00\x00" + os.urandom(100))
        # 2. truncated frame, then the peer goes away
        truncated = await anyio.connect_tcp(*mix.address)
        await truncated.send(encode_frame(os.urandom(386))[:200])
        await truncated.aclose()
        # 3. a well-framed packet with a corrupted MAC
        packet = bytearray(
            build_packet(net.route(), destination, b"x" * 21, delays_ns=[0] * 4, payload_size=38)
        )
        packet[40] ^= 0xFF
        # 4. a replayed valid packet (delivered once)
        valid = build_packet(net.route(), destination, b"r" * 21, delays_ns=[0] * 4, payload_size=38)
        peer = await anyio.connect_tcp(*mix.address)
        await peer.send(encode_frame(bytes(packet)) + encode_frame(valid) + encode_frame(valid))
        # 5. a wrong-size packet through the client link
        await link.send(net.first_hop, os.urandom(1000))
        # 6. random bytes of a legal size: the MAC cannot verify
        await peer.send(encode_frame(os.urandom(2413)))
        assert await receive_n(link, 1) == [b"r" * 21]
        await eventually(lambda: mix.stats().get("truncated_frames", 0) >= 1)
        await eventually(lambda: mix.stats().get("dropped_bad_framing", 0) >= 1)
        await eventually(lambda: mix.stats().get("dropped_bad_mac", 0) >= 2)
        stats = mix.stats()
        assert stats["dropped_replay"] == 1
        assert net.gateway.stats()["dropped_bad_size"] == 1
        # the node still serves everyone
        body = os.urandom(1643)
        await link.send(net.first_hop, regular_packet(net, destination, body))
        assert body in await receive_n(link, 2)
        for stream in (garbage, peer):
            await stream.aclose()
        await link.aclose()


async def test_fault_hook_drops_a_seeded_fraction() -> None:
    async with small_net(NodeConfig(drop_probability=0.5, fault_seed=7)) as net:
        secret = os.urandom(32)
        link = await connect(net, secret)
        for _ in range(40):
            packet = build_packet(
                net.route(), identity_of(secret), b"f" * 21, delays_ns=[0] * 4, payload_size=38
            )
            await link.send(net.first_hop, packet)
        await eventually(lambda: net.mixes[0].stats()["packets_received"] >= 40, within=10)
        dropped = sum(mix.stats().get("dropped_fault", 0) for mix in net.mixes)
        assert 0 < dropped < 40
        delivered = 40 - dropped
        assert len(await receive_n(link, delivered)) == delivered
        await link.aclose()


async def test_gateway_link_authentication_and_backlog() -> None:
    async with small_net() as net:
        # wrong expected gateway identity: the client refuses the gateway
        with pytest.raises(GatewayError):
            await GatewayLink.connect(net.gateway.client_url, os.urandom(32), os.urandom(32))
        # a client that is offline gets its payloads on (re)connect
        secret = os.urandom(32)
        link = await connect(net, secret)
        await link.aclose()
        for index in range(3):
            packet = build_packet(
                net.route(), identity_of(secret), bytes([index]) * 21, delays_ns=[0] * 4, payload_size=38
            )
            sender = await connect(net, os.urandom(32))
            await sender.send(net.first_hop, packet)
            await sender.aclose()
        await eventually(lambda: net.gateway.stats().get("backlog_stored", 0) >= 3)
        link = await connect(net, secret)
        assert sorted(await receive_n(link, 3)) == [bytes([i]) * 21 for i in range(3)]
        assert net.gateway.stats()["backlog_delivered"] == 3
        # a second link for the same identity replaces the first
        second = await connect(net, secret)
        packet = build_packet(net.route(), identity_of(secret), b"z" * 21, delays_ns=[0] * 4, payload_size=38)
        await second.send(net.first_hop, packet)
        assert await receive_n(second, 1) == [b"z" * 21]
        assert net.gateway.stats()["client_links_replaced"] == 1
        await link.aclose()
        await second.aclose()


async def test_garbage_on_the_gateway_client_port() -> None:
    async with small_net() as net:
        stream = await anyio.connect_tcp(net.gateway.host, net.gateway.client_port)
        await stream.send(os.urandom(300) + b"\r\n\r\n")
        await stream.aclose()
        from smolmix_core.mixnet.ws import ws_connect

        websocket = await ws_connect(net.gateway.client_url)
        await websocket.send(b"not a hello")
        await websocket.aclose()
        await eventually(lambda: net.gateway.stats().get("client_handshake_failures", 0) >= 1)
        await eventually(lambda: net.gateway.stats().get("client_auth_failures", 0) >= 1)
        secret = os.urandom(32)
        link = await connect(net, secret)
        packet = build_packet(net.route(), identity_of(secret), b"k" * 21, delays_ns=[0] * 4, payload_size=38)
        await link.send(net.first_hop, packet)
        assert await receive_n(link, 1) == [b"k" * 21]
        await link.aclose()


async def test_a_later_packet_with_a_shorter_delay_overtakes() -> None:
    async with small_net() as net:
        secret = os.urandom(32)
        link = await connect(net, secret)
        destination = identity_of(secret)
        slow = build_packet(
            net.route(), destination, b"s" * 21, delays_ns=[300_000_000, 0, 0, 0], payload_size=38
        )
        fast = build_packet(
            net.route(), destination, b"f" * 21, delays_ns=[5_000_000, 0, 0, 0], payload_size=38
        )
        await link.send(net.first_hop, slow)
        await eventually(lambda: net.mixes[0].stats()["delay_queue"] == 1)
        await link.send(net.first_hop, fast)
        assert await receive_n(link, 2) == [b"f" * 21, b"s" * 21]
        await link.aclose()


def dirty(padded: bytes, used: int) -> bytes:
    return padded[:used] + bytes(range(0xA0, 0xA0 + len(padded) - used))


async def test_next_hops_ignore_padding_bytes_like_upstream() -> None:
    """Upstream parses a routing address as a prefix: whatever follows it is not looked at."""
    async with small_net() as net:
        secret = os.urandom(32)
        link = await connect(net, secret)
        hops = [*net.mixes, net.gateway]
        route = [
            RouteNode(dirty(NymNodeRoutingAddress(*hop.address).to_padded(32), 7), hop.sphinx_key)
            for hop in hops
        ]
        ack = build_packet(route, identity_of(secret), b"a" * 21, delays_ns=[0] * 4, payload_size=38)
        ack_with_dirty_first_hop = dirty(net.first_hop.to_padded(19), 7) + ack
        body = os.urandom(1643)
        packet = build_packet(
            route,
            identity_of(secret),
            ack_with_dirty_first_hop + body,
            delays_ns=[0] * 4,
            payload_size=PacketSize.REGULAR.payload_size,
        )
        await link.send(net.first_hop, packet)
        assert sorted(await receive_n(link, 2), key=len) == [b"a" * 21, body]
        assert net.gateway.stats()["surb_acks_launched"] == 1
        assert all("dropped_bad_next_hop" not in mix.stats() for mix in net.mixes)
        await link.aclose()
