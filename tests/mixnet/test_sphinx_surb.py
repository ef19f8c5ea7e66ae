"""SURBs: build, serialise, parse, use, and the creator's final hop recovers the reply (spec §12)."""

from __future__ import annotations

import random

import pytest

from smolmix_core.errors import MalformedSurb, SphinxError, SurbError
from smolmix_core.mixnet.sphinx import (
    HEADER_SIZE,
    MAX_PATH_LENGTH,
    VERSION_258,
    VERSION_259,
    FinalHop,
    ForwardHop,
    PacketSize,
    RouteNode,
    SphinxProcessor,
    Surb,
    build_surb,
    generate_keypair,
)

CREATOR = b"C" * 32


def make_network(hops: int, seed: int = 3) -> tuple[list[RouteNode], list[SphinxProcessor]]:
    rng = random.Random(seed)
    keys = [generate_keypair(rng) for _ in range(hops)]
    route = [RouteNode(bytes([0x20 + i]) * 32, public) for i, (_, public) in enumerate(keys)]
    return route, [SphinxProcessor(private) for private, _ in keys]


@pytest.mark.parametrize(("version", "per_hop"), [(VERSION_258, 192), (VERSION_259, 16)])
@pytest.mark.parametrize("hops", range(1, MAX_PATH_LENGTH + 1))
def test_surb_round_trip_through_bytes(hops: int, version: int, per_hop: int) -> None:
    route, processors = make_network(hops)
    identifier = bytes(range(16))
    surb = build_surb(route, CREATOR, delays_ns=[5] * hops, identifier=identifier, version=version)
    wire = surb.to_bytes()
    assert len(wire) == HEADER_SIZE + 32 + per_hop * hops
    parsed = Surb.from_bytes(wire, version=version)
    assert parsed == surb
    assert parsed.first_hop_address == route[0].address
    assert parsed.hops == hops

    reply = b"an anonymous reply"
    packet = parsed.use(reply, payload_size=PacketSize.REGULAR.payload_size)
    assert len(packet) == PacketSize.REGULAR.total_size
    for processor in processors[:-1]:
        result = processor.process(packet)
        assert isinstance(result, ForwardHop)
        assert result.delay_ns == 5
        packet = result.packet
    final = processors[-1].process(packet)
    assert isinstance(final, FinalHop)
    assert (final.destination, final.identifier, final.message) == (CREATOR, identifier, reply)


@pytest.mark.parametrize("version", [VERSION_258, VERSION_259])
def test_surb_lengths_that_are_not_whole_hops_are_rejected(version: int) -> None:
    route, _ = make_network(4)
    wire = build_surb(route, CREATOR, delays_ns=[0] * 4, version=version).to_bytes()
    per_hop = 192 if version == VERSION_258 else 16
    for bad in (wire[:-1], wire + b"\x00", wire[: HEADER_SIZE + 32], wire[:100], wire + bytes(per_hop * 2)):
        with pytest.raises(MalformedSurb):
            Surb.from_bytes(bad, version=version)
    with pytest.raises(SurbError):
        Surb.from_bytes(wire[:-1], version=version)
    with pytest.raises(SphinxError):
        Surb.from_bytes(wire, version=257)


def test_v258_surb_read_as_v259_is_rejected() -> None:
    route, _ = make_network(2)
    wire = build_surb(route, CREATOR, delays_ns=[0, 0], version=VERSION_258).to_bytes()
    # 2·192 = 24·16: parses as a 24-hop v259 SURB, which does not exist
    with pytest.raises(MalformedSurb):
        Surb.from_bytes(wire, version=VERSION_259)


def test_surb_message_that_does_not_fit_is_rejected() -> None:
    route, _ = make_network(3)
    surb = build_surb(route, CREATOR, delays_ns=[0, 0, 0])
    with pytest.raises(SphinxError, match="does not fit"):
        surb.use(bytes(22), payload_size=PacketSize.ACK.payload_size)
    assert len(surb.use(bytes(21), payload_size=PacketSize.ACK.payload_size)) == PacketSize.ACK.total_size


def test_surbs_are_unlinkable_headers() -> None:
    route, _ = make_network(3)
    first = build_surb(route, CREATOR, delays_ns=[0, 0, 0])
    second = build_surb(route, CREATOR, delays_ns=[0, 0, 0])
    assert first.header != second.header
    assert first.payload_keys != second.payload_keys


def test_repr_does_not_leak_key_material() -> None:
    route, _ = make_network(2)
    surb = build_surb(route, CREATOR, delays_ns=[0, 0])
    assert surb.payload_keys[0].hex() not in repr(surb)
    assert repr(surb.payload_keys[0]) not in repr(surb)
