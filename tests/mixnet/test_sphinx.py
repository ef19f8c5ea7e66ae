"""Sphinx round trips, tampering, replays and SURBs (spec mixnet.md §2–§5, §12)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import MacMismatch, ReplayDetected, SphinxError
from smolmix_core.mixnet.sphinx import (
    HEADER_SIZE,
    MAX_PATH_LENGTH,
    VERSION_258,
    VERSION_259,
    FinalHop,
    ForwardHop,
    PacketSize,
    ReplayFilter,
    RouteNode,
    SphinxProcessor,
    build_packet,
    generate_keypair,
)

DESTINATION = bytes(range(32))
VERSIONS = [VERSION_258, VERSION_259]
SIZES = [PacketSize.REGULAR, PacketSize.ACK]


def make_network(hops: int, seed: int = 7) -> tuple[list[RouteNode], list[SphinxProcessor]]:
    rng = random.Random(seed)
    route, processors = [], []
    for i in range(hops):
        private, public = generate_keypair(rng)
        route.append(RouteNode(address=bytes([0x10 + i]) * 32, public_key=public))
        processors.append(SphinxProcessor(private))
    return route, processors


def deliver(packet: bytes, processors: list[SphinxProcessor]) -> tuple[list[ForwardHop], FinalHop]:
    forwards: list[ForwardHop] = []
    for processor in processors[:-1]:
        result = processor.process(packet)
        assert isinstance(result, ForwardHop)
        forwards.append(result)
        packet = result.packet
    final = processors[-1].process(packet)
    assert isinstance(final, FinalHop)
    return forwards, final


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: s.name)
@pytest.mark.parametrize("hops", range(1, MAX_PATH_LENGTH + 1))
def test_round_trip(hops: int, size: PacketSize, version: int) -> None:
    route, processors = make_network(hops)
    message = bytes(random.Random(hops).randbytes(size.plaintext_size))
    delays = [1_000_000 * (i + 1) for i in range(hops)]
    identifier = b"I" * 16
    packet = build_packet(
        route,
        DESTINATION,
        message,
        delays_ns=delays,
        payload_size=size.payload_size,
        identifier=identifier,
        version=version,
        rng=random.Random(1),
    )
    assert len(packet) == size.total_size
    forwards, final = deliver(packet, processors)
    for i, hop in enumerate(forwards):
        assert hop.next_address == route[i + 1].address
        assert hop.delay_ns == delays[i]
        assert len(hop.packet) == size.total_size
    assert final.destination == DESTINATION
    assert final.identifier == identifier
    assert final.message == message
    tags = [hop.replay_tag for hop in forwards] + [final.replay_tag]
    assert len(set(tags)) == hops
    assert all(len(tag) == 32 for tag in tags)


@pytest.mark.parametrize("message", [b"", b"\x01", b"\x00\x01\x00", b"\x01" * 40, b"hello\x01\x00\x00"])
def test_messages_ending_in_marker_bytes_survive(message: bytes) -> None:
    route, processors = make_network(3)
    packet = build_packet(route, DESTINATION, message, delays_ns=[0, 0, 0], payload_size=100)
    assert deliver(packet, processors)[1].message == message


def test_message_that_does_not_fit_is_rejected() -> None:
    route, _ = make_network(2)
    size = PacketSize.ACK
    build_packet(
        route, DESTINATION, bytes(size.plaintext_size), delays_ns=[0, 0], payload_size=size.payload_size
    )
    with pytest.raises(SphinxError, match="does not fit"):
        build_packet(
            route,
            DESTINATION,
            bytes(size.plaintext_size + 1),
            delays_ns=[0, 0],
            payload_size=size.payload_size,
        )
    with pytest.raises(SphinxError):
        build_packet(route, DESTINATION, b"", delays_ns=[0, 0], payload_size=32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"delays_ns": [0]}, "delays"),
        ({"delays_ns": [0, -1]}, "u64"),
        ({"delays_ns": [0, 1 << 64]}, "u64"),
        ({"identifier": b"short"}, "identifier"),
        ({"version": 257}, "version"),
        ({"destination": b"x" * 31}, "destination"),
    ],
)
def test_malformed_build_arguments(kwargs: dict[str, object], match: str) -> None:
    route, _ = make_network(2)
    arguments: dict[str, object] = {"delays_ns": [0, 0], "payload_size": 100, "destination": DESTINATION}
    arguments.update(kwargs)
    destination = arguments.pop("destination")
    with pytest.raises(SphinxError, match=match):
        build_packet(route, destination, b"m", **arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("hops", [0, MAX_PATH_LENGTH + 1])
def test_route_length_is_bounded(hops: int) -> None:
    route, _ = make_network(MAX_PATH_LENGTH + 1)
    with pytest.raises(SphinxError, match="hops"):
        build_packet(route[:hops], DESTINATION, b"m", delays_ns=[0] * hops, payload_size=100)


def test_route_node_checks_lengths() -> None:
    with pytest.raises(SphinxError):
        RouteNode(address=b"a" * 31, public_key=b"k" * 32)
    with pytest.raises(SphinxError):
        RouteNode(address=b"a" * 32, public_key=b"k" * 33)


@pytest.mark.parametrize("hops", range(1, MAX_PATH_LENGTH + 1))
def test_header_is_always_348_bytes(hops: int) -> None:
    route, _ = make_network(hops)
    packet = build_packet(route, DESTINATION, b"m", delays_ns=[0] * hops, payload_size=50)
    assert HEADER_SIZE == 348
    assert len(packet) == HEADER_SIZE + 50


def test_replays_are_rejected_by_the_filter() -> None:
    route, processors = make_network(2)
    guarded = SphinxProcessor(generate_keypair(random.Random(7))[0], replay_filter=ReplayFilter(capacity=100))
    packet = build_packet(route, DESTINATION, b"once", delays_ns=[0, 0], payload_size=100)
    first = guarded.process(packet)
    assert isinstance(first, ForwardHop)
    with pytest.raises(ReplayDetected):
        guarded.process(packet)
    other = build_packet(route, DESTINATION, b"once", delays_ns=[0, 0], payload_size=100)
    assert isinstance(guarded.process(other), ForwardHop)
    # without a filter a hop processes the same packet twice, identically
    assert processors[0].process(packet) == processors[0].process(packet)


def test_wrong_node_key_fails_the_mac() -> None:
    route, processors = make_network(3)
    packet = build_packet(route, DESTINATION, b"m", delays_ns=[0, 0, 0], payload_size=100)
    with pytest.raises(MacMismatch):
        processors[1].process(packet)


@pytest.mark.parametrize("length", [0, 100, HEADER_SIZE, HEADER_SIZE + 32])
def test_short_packets_are_rejected(length: int) -> None:
    _, processors = make_network(1)
    with pytest.raises(SphinxError):
        processors[0].process(bytes(length))


def test_packet_size_lookups() -> None:
    assert PacketSize.from_tag(1) is PacketSize.REGULAR
    assert PacketSize.for_total_size(386) is PacketSize.ACK
    table = {(s.tag, s.total_size, s.payload_size, s.plaintext_size) for s in PacketSize}
    assert table == {
        (1, 2413, 2065, 2048),
        (2, 386, 38, 21),
        (3, 33133, 32785, 32768),
        (4, 8557, 8209, 8192),
        (5, 16749, 16401, 16384),
    }
    for size in PacketSize:
        assert size.total_size == HEADER_SIZE + size.payload_size
        assert size.plaintext_size == size.payload_size - 17
    with pytest.raises(SphinxError):
        PacketSize.from_tag(9)
    with pytest.raises(SphinxError):
        PacketSize.for_total_size(2412)


def test_replay_filter_forgets_the_oldest_generation_only() -> None:
    replay = ReplayFilter(capacity=4)
    tags = [bytes([i]) * 32 for i in range(6)]
    assert replay.check_and_add(tags[0])
    assert replay.check_and_add(tags[1])
    assert not replay.check_and_add(tags[0])
    assert replay.check_and_add(tags[2])  # rotates: {0, 1} become the previous generation
    assert tags[0] in replay
    assert replay.check_and_add(tags[3])
    assert replay.check_and_add(tags[4])  # rotates again: {0, 1} are forgotten
    assert tags[0] not in replay
    assert tags[2] in replay
    assert replay.check_and_add(tags[0])


def test_replay_filter_memory_is_bounded() -> None:
    replay = ReplayFilter(capacity=100)
    rng = random.Random(0)
    recent: list[bytes] = []
    for _ in range(1000):
        tag = rng.randbytes(32)
        assert replay.check_and_add(tag)
        recent.append(tag)
        assert len(replay) <= 100
    assert all(tag in replay for tag in recent[-50:])
    replay.clear()
    assert len(replay) == 0
    with pytest.raises(ValueError):
        replay.check_and_add(b"short")


@settings(max_examples=40, deadline=None)
@given(
    hops=st.integers(1, MAX_PATH_LENGTH),
    version=st.sampled_from(VERSIONS),
    payload_size=st.integers(33, 600),
    data=st.data(),
)
def test_any_fitting_message_round_trips(
    hops: int, version: int, payload_size: int, data: st.DataObject
) -> None:
    message = data.draw(st.binary(max_size=payload_size - 17))
    identifier = data.draw(st.binary(min_size=16, max_size=16))
    delays = data.draw(st.lists(st.integers(0, (1 << 64) - 1), min_size=hops, max_size=hops))
    route, processors = make_network(hops)
    packet = build_packet(
        route,
        DESTINATION,
        message,
        delays_ns=delays,
        payload_size=payload_size,
        identifier=identifier,
        version=version,
    )
    forwards, final = deliver(packet, processors)
    assert [hop.delay_ns for hop in forwards] == delays[:-1]
    assert (final.identifier, final.message) == (identifier, message)
