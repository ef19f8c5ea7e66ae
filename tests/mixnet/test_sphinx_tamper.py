"""What tampering does to a packet in flight.

- Any flipped byte of gamma or beta, on any link, makes the MAC fail at the very next hop
  (gamma covers all of beta).
- A flipped bit of alpha changes the hop's shared secret, so the MAC fails at that hop — or,
  when the new u-coordinate is a low-order point, the hop refuses it as a ``SphinxError``. The
  one exception is bit 255: X25519 ignores it (RFC 7748 masks it), so the packet is processed
  exactly as before, with the same replay tag — a replay filter therefore still catches the
  modified copy of a packet it has seen.
- A flipped payload byte is not covered by any MAC: every hop peels its Lioness layer, and the
  garbage is detected only where the payload is opened, at the final hop.
"""

from __future__ import annotations

import random

import pytest

from smolmix_core.errors import MacMismatch, ReplayDetected, SphinxError
from smolmix_core.mixnet.sphinx import (
    FinalHop,
    ForwardHop,
    ReplayFilter,
    RouteNode,
    SphinxProcessor,
    build_packet,
    generate_keypair,
)

HOPS = 4
MESSAGE = b"do not touch"


def network(replay: bool = False) -> tuple[list[RouteNode], list[SphinxProcessor]]:
    rng = random.Random(99)
    keys = [generate_keypair(rng) for _ in range(HOPS)]
    route = [RouteNode(bytes([0x40 + i]) * 32, public) for i, (_, public) in enumerate(keys)]
    processors = [
        SphinxProcessor(private, replay_filter=ReplayFilter(1000) if replay else None) for private, _ in keys
    ]
    return route, processors


def packets_on_each_link() -> tuple[list[bytes], list[SphinxProcessor]]:
    """The packet as it travels into hop 0, hop 1, …, hop HOPS-1."""
    route, processors = network()
    packet = build_packet(
        route, b"D" * 32, MESSAGE, delays_ns=[0] * HOPS, payload_size=200, rng=random.Random(1)
    )
    links = [packet]
    for processor in processors[:-1]:
        result = processor.process(links[-1])
        assert isinstance(result, ForwardHop)
        links.append(result.packet)
    return links, processors


def flip(packet: bytes, index: int, mask: int = 0x01) -> bytes:
    return packet[:index] + bytes([packet[index] ^ mask]) + packet[index + 1 :]


def test_every_gamma_and_beta_byte_is_covered_by_the_mac_of_the_next_hop() -> None:
    links, processors = packets_on_each_link()
    for hop, packet in enumerate(links):
        for index in range(32, 348):
            with pytest.raises(MacMismatch):
                processors[hop].process(flip(packet, index, mask=1 << (index % 8)))


def test_alpha_bit_flips_fail_at_that_hop_except_the_ignored_top_bit() -> None:
    links, processors = packets_on_each_link()
    for hop in (0, HOPS - 1):
        packet = links[hop]
        untouched = processors[hop].process(packet)
        for bit in range(255):
            with pytest.raises(SphinxError) as caught:
                processors[hop].process(flip(packet, bit // 8, 1 << (bit % 8)))
            assert isinstance(caught.value, MacMismatch) or "low-order" in str(caught.value)
        assert processors[hop].process(flip(packet, 31, 0x80)) == untouched


def test_top_bit_flip_of_alpha_is_caught_as_a_replay() -> None:
    route, processors = network(replay=True)
    packet = build_packet(route, b"D" * 32, MESSAGE, delays_ns=[0] * HOPS, payload_size=200)
    processors[0].process(packet)
    with pytest.raises(ReplayDetected):
        processors[0].process(flip(packet, 31, 0x80))


@pytest.mark.parametrize("index", [348, 348 + 31, 348 + 32, 348 + 199])
def test_payload_flips_travel_to_the_final_hop_and_fail_there(index: int) -> None:
    links, processors = packets_on_each_link()
    packet = flip(links[0], index)
    for processor in processors[:-1]:
        result = processor.process(packet)
        assert isinstance(result, ForwardHop)
        packet = result.packet
    with pytest.raises(SphinxError, match="malformed payload"):
        processors[-1].process(packet)


def test_untampered_packet_is_delivered() -> None:
    links, processors = packets_on_each_link()
    final = processors[-1].process(links[-1])
    assert isinstance(final, FinalHop)
    assert final.message == MESSAGE
