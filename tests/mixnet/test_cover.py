"""Loop cover: the marker fragment, and packets to self that look like real ones and vanish."""

from __future__ import annotations

from sim_network import SimNetwork

from smolmix_core.mixnet.cover import LOOP_COVER_PAYLOAD, is_loop_cover, loop_cover_fragment
from smolmix_core.mixnet.fragment import FragmentHeader
from smolmix_core.mixnet.sphinx import PacketSize


def test_cover_fragment_layout() -> None:
    fragment = loop_cover_fragment(1611)
    assert LOOP_COVER_PAYLOAD == b"The cake is a lie!"
    assert len(fragment) == 1611
    assert fragment == LOOP_COVER_PAYLOAD + b"\x01" + bytes(1611 - 19)
    assert is_loop_cover(fragment)


def test_real_fragments_are_never_cover() -> None:
    assert not is_loop_cover(FragmentHeader(1, 1, 1).to_bytes() + LOOP_COVER_PAYLOAD)
    assert not is_loop_cover(LOOP_COVER_PAYLOAD[:-1])
    assert not is_loop_cover(b"")


def test_loop_cover_goes_round_and_is_discarded() -> None:
    net = SimNetwork(seed=8)
    alice = net.add_client("alice", 0)
    bob = net.add_client("bob", 1)
    bob.send_plain(alice.address, b"real", net.now)
    real = bob.next_real_packet(net.now)
    assert real is not None
    for _ in range(5):
        cover = alice.make_loop_cover(net.now)
        assert cover.is_cover
        assert cover.fragment_id is None
        assert len(cover.packet) == len(real.packet) == PacketSize.REGULAR.total_size
        assert cover.packet_size is real.packet_size
        net.send(cover, "alice")
    net.deliver()
    assert alice.drain_received() == []
    stats = alice.stats()
    assert stats["cover_packets_prepared"] == 5
    assert stats["cover_packets_received"] == 5
    assert stats["cover_acks_received"] == 5
    assert stats.get("messages_received", 0) == 0
    assert alice.poll_deadline() is None, "cover is never retransmitted"
