"""SURB-ACKs: 21-byte fragment-id ciphertexts and the 405-byte ack blocks built over Sphinx."""

from __future__ import annotations

import random

import pytest
from sim_network import SimNetwork

from smolmix_core.errors import FragmentError
from smolmix_core.mixnet.ack import (
    ACK_PLAINTEXT_SIZE,
    SURB_ACK_SIZE,
    build_surb_ack,
    decode_ack,
    encrypt_fragment_id,
)
from smolmix_core.mixnet.fragment import FragmentIdentifier
from smolmix_core.mixnet.routing import MAX_UNPADDED_SIZE, NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import FinalHop, ForwardHop, PacketSize


def test_sizes_match_the_spec() -> None:
    assert ACK_PLAINTEXT_SIZE == PacketSize.ACK.plaintext_size == 21
    assert SURB_ACK_SIZE == 405


def test_fragment_id_round_trip_with_random_iv() -> None:
    key = bytes(range(16))
    ident = FragmentIdentifier(123456, 7)
    rng = random.Random(1)
    first, second = encrypt_fragment_id(ident, key, rng), encrypt_fragment_id(ident, key, rng)
    assert len(first) == 21
    assert first != second, "a fresh IV every time"
    assert decode_ack(first, key) == ident
    assert decode_ack(second, key) == ident


def test_other_keys_do_not_recover_the_id() -> None:
    ident = FragmentIdentifier(99, 1)
    data = encrypt_fragment_id(ident, bytes(16), random.Random(2))
    try:
        assert decode_ack(data, b"\x01" * 16) != ident
    except FragmentError:
        pass


def test_wrong_length_is_rejected() -> None:
    with pytest.raises(FragmentError, match="21 bytes"):
        decode_ack(bytes(20), bytes(16))


def test_surb_ack_travels_back_to_its_creator() -> None:
    net = SimNetwork(seed=5)
    alice = net.add_client("alice", 0)
    rng = random.Random(3)
    gateway = net.gateways[0]
    route = net.topology.random_route(rng, gateway.identity)
    delays = [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    ident = FragmentIdentifier(4242, 9)
    key = bytes(range(16, 32))
    surb_ack = build_surb_ack(
        ident, ack_key=key, route=route, destination=alice.address.identity, delays_ns=delays, rng=rng
    )
    assert len(surb_ack.data) == SURB_ACK_SIZE
    assert surb_ack.mix_delay == pytest.approx(0.006), "the gateway's delay is not counted"
    first_hop = NymNodeRoutingAddress.from_padded(surb_ack.data[:MAX_UNPADDED_SIZE])
    assert first_hop == route[0].routing_address
    packet = surb_ack.data[MAX_UNPADDED_SIZE:]
    assert len(packet) == PacketSize.ACK.total_size
    seen_delays = []
    for node in route:
        result = net.process_at(node.routing_address.address, packet)
        if isinstance(result, ForwardHop):
            seen_delays.append(result.delay_ns)
            packet = result.packet
    assert isinstance(result, FinalHop)
    assert result.destination == alice.address.identity
    assert seen_delays == delays[:3]
    assert decode_ack(result.message, key) == ident
