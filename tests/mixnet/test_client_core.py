"""MixnetClientCore end to end over an in-process mixnet of real Sphinx processors.

Two cores, three mix layers, two gateways playing the final hop (strip and launch the SURB-ACK,
push 1643 bytes). No mocks on the byte path.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sim_network import SimNetwork

from smolmix_core.errors import MixnetQueueFull, SurbError, TopologyError
from smolmix_core.mixnet.client_core import ClientCoreConfig
from smolmix_core.mixnet.encryption import encrypt_fragment
from smolmix_core.mixnet.fragment import split_into_sets
from smolmix_core.mixnet.interface import ReceivedMessage
from smolmix_core.mixnet.message import pad_message
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.sphinx import PacketSize


def _pair(config: ClientCoreConfig | None = None, seed: int = 1) -> SimNetwork:
    net = SimNetwork(seed=seed, config=config or ClientCoreConfig())
    net.add_client("alice", 0)
    net.add_client("bob", 1)
    return net


def _payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def _drop_first(count: int, link_label: str) -> Callable[[str, bytes], bool]:
    """A drop rule for the test network: lose the first ``count`` packets sent on ``link_label``."""
    left = count

    def drop(label: str, packet: bytes) -> bool:
        nonlocal left
        if label == link_label and left:
            left -= 1
            return True
        return False

    return drop


@pytest.mark.parametrize("size", [0, 1, 1602, 1603, 20_000, 1024 * 1024])
def test_plain_messages_arrive_exactly_once(size: int) -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(size), net.now)
    net.run()
    assert bob.drain_received() == [ReceivedMessage(_payload(size))]
    assert net.sizes_seen <= {PacketSize.REGULAR.total_size, PacketSize.ACK.total_size}
    stats = alice.stats()
    assert stats["acks_received"] == stats["fragments_queued"]
    assert stats["unacked_fragments"] == 0
    net.advance(60.0)
    assert alice.stats().get("ack_timeouts", 0) == 0, "acks cancelled every retransmission"
    assert alice.next_real_packet(net.now) is None
    assert alice.poll_deadline() is None


def test_one_fragment_per_packet_budget() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, bytes(1602), net.now)
    assert alice.queued_packets == 1
    alice.send_plain(bob.address, bytes(1603), net.now)
    assert alice.queued_packets == 3


def test_many_messages_on_many_lanes_all_arrive() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    sent = [_payload(100 * i + 1) for i in range(30)]
    for index, data in enumerate(sent):
        alice.send_plain(bob.address, data, net.now, lane=index % 4 or None)
    assert alice.lane_queue_length(1) > 0
    net.run()
    received = sorted(message.data for message in bob.drain_received())
    assert received == sorted(sent)


def test_dropped_packet_is_retransmitted_after_the_timeout() -> None:
    config = ClientCoreConfig(average_packet_delay=0.05, average_ack_delay=0.05)
    net = _pair(config)
    alice, bob = net.clients["alice"], net.clients["bob"]
    net.drop = _drop_first(1, "alice")
    alice.send_plain(bob.address, b"x" * 5000, net.now)
    net.run()
    assert bob.drain_received() == []
    assert alice.stats()["unacked_fragments"] == 1
    deadline = alice.poll_deadline()
    assert deadline is not None
    assert deadline >= 1.5, "timeout = 1.5 x sampled delays + 1.5 s"
    net.advance(deadline - net.now - 0.001)
    assert alice.next_real_packet(net.now) is None, "not retransmitted before the timeout"
    net.advance(0.002)
    net.run()
    assert bob.drain_received() == [ReceivedMessage(b"x" * 5000)]
    stats = alice.stats()
    assert stats["ack_timeouts"] == 1
    assert stats["retransmissions_sent"] == 1
    assert stats["unacked_fragments"] == 0


def test_lost_ack_causes_a_duplicate_that_is_dropped() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    net.drop = _drop_first(1, "alice:ack")
    alice.send_plain(bob.address, b"hello", net.now)
    net.run()
    assert bob.drain_received() == [ReceivedMessage(b"hello")]
    net.advance(10.0)
    net.run()
    assert alice.stats()["retransmissions_sent"] == 1
    assert bob.drain_received() == [], "the retransmitted duplicate is not delivered twice"
    assert bob.stats()["reassembly_fragments_late"] == 1


def test_duplicated_packets_deliver_once() -> None:
    net = _pair()
    net.duplicate = lambda packet: len(packet) == PacketSize.REGULAR.total_size
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(10_000), net.now)
    net.run()
    assert bob.drain_received() == [ReceivedMessage(_payload(10_000))]


def test_max_retransmissions_gives_up() -> None:
    net = _pair(ClientCoreConfig(max_retransmissions=2))
    net.drop = lambda label, packet: label == "alice"
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, b"lost", net.now)
    for _ in range(5):
        net.run()
        net.advance(30.0)
    stats = alice.stats()
    assert stats["retransmissions_sent"] == 2
    assert stats["fragments_abandoned"] == 1
    assert stats["unacked_fragments"] == 0


@pytest.mark.parametrize(
    ("config_limit", "message_limit", "expected"), [(None, 0, 0), (None, 1, 1), (1, 3, 1)]
)
def test_per_message_retransmission_limit(
    config_limit: int | None, message_limit: int, expected: int
) -> None:
    """A message's own limit applies (0: never resent, as the tunnel sends TCP); the config caps it."""
    net = _pair(ClientCoreConfig(max_retransmissions=config_limit))
    net.drop = lambda label, packet: label == "alice"
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, b"lost", net.now, max_retransmissions=message_limit)
    for _ in range(5):
        net.run()
        net.advance(30.0)
    stats = alice.stats()
    assert stats.get("retransmissions_sent", 0) == expected
    assert stats["fragments_abandoned"] == 1
    assert stats["unacked_fragments"] == 0


def test_lost_reply_with_no_retransmissions_is_abandoned() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=20, max_retransmissions=0)
    net.run()
    [message] = bob.drain_received()
    assert message.sender_tag is not None
    net.drop = _drop_first(1, "bob")
    bob.reply(message.sender_tag, b"answer", net.now, max_retransmissions=0)
    for _ in range(3):
        net.run()
        net.advance(10.0)
    assert alice.drain_received() == []
    assert bob.stats().get("retransmissions_sent", 0) == 0
    assert bob.reply_surbs_available(message.sender_tag) == 19, "no SURB spent on a resend"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_bad_retransmission_limit_is_a_value_error(bad: object) -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    with pytest.raises(ValueError, match="max_retransmissions"):
        alice.send_plain(bob.address, b"x", net.now, max_retransmissions=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("legacy", [True, False])
def test_anonymous_message_and_reply(legacy: bool) -> None:
    net = _pair(ClientCoreConfig(use_legacy_sphinx_format=legacy))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_anonymous(bob.address, b"question", net.now, reply_surbs=12)
    net.run()
    [message] = bob.drain_received()
    assert message.data == b"question"
    assert message.sender_tag is not None
    assert bob.reply_surbs_available(message.sender_tag) == 12
    bob.reply(message.sender_tag, b"answer", net.now)
    net.run()
    assert alice.drain_received() == [ReceivedMessage(b"answer")]
    assert bob.stats()["acks_received"] == bob.stats()["fragments_queued"]
    assert alice.stats()["reply_packets_received"] == 1


@pytest.mark.parametrize("legacy", [True, False])
def test_replier_asks_for_more_surbs_when_short(legacy: bool) -> None:
    net = _pair(ClientCoreConfig(use_legacy_sphinx_format=legacy))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=13)
    net.run()
    [message] = bob.drain_received()
    assert message.sender_tag is not None
    big_reply = _payload(40 * 1604)  # 41 fragments, only 3 SURBs above the reserve of 10
    bob.reply(message.sender_tag, big_reply, net.now)
    assert bob.lane_queue_length(None) == 41
    net.run()
    assert alice.drain_received() == [ReceivedMessage(big_reply)]
    bob_stats, alice_stats = bob.stats(), alice.stats()
    assert bob_stats["surb_requests_sent"] >= 1
    assert alice_stats["surb_requests_answered"] == bob_stats["surb_requests_sent"]
    assert bob.reply_surbs_available(message.sender_tag) >= 10, "the reserve is kept"
    assert bob.queued_packets == 0


def test_reply_without_surbs_is_a_surb_error() -> None:
    net = _pair()
    with pytest.raises(SurbError):
        net.clients["bob"].reply(bytes(16), b"nobody asked", net.now)


def test_lost_reply_is_retransmitted_with_a_fresh_surb() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=20)
    net.run()
    [message] = bob.drain_received()
    assert message.sender_tag is not None
    net.drop = _drop_first(1, "bob")
    bob.reply(message.sender_tag, b"answer", net.now)
    net.run()
    assert alice.drain_received() == []
    net.advance(10.0)
    net.run()
    assert alice.drain_received() == [ReceivedMessage(b"answer")]
    assert bob.reply_surbs_available(message.sender_tag) == 18


def test_loop_cover_is_discarded_and_its_ack_ignored() -> None:
    net = _pair()
    alice = net.clients["alice"]
    for _ in range(3):
        packet = alice.make_loop_cover(net.now)
        assert packet.is_cover
        assert packet.fragment_id is None
        assert len(packet.packet) == PacketSize.REGULAR.total_size
        net.send(packet, "alice")
    net.deliver()
    assert alice.drain_received() == []
    stats = alice.stats()
    assert stats["cover_packets_received"] == 3
    assert stats["cover_acks_received"] == 3
    assert stats.get("payloads_malformed", 0) == 0


def test_close_lane_drops_its_queued_packets() -> None:
    net = _pair()
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(10_000), net.now, lane=7)
    alice.send_plain(bob.address, b"keep", net.now)
    assert alice.lane_queue_length(7) == 7
    alice.close_lane(7)
    assert alice.lane_queue_length(7) == 0
    assert alice.stats()["fragments_dropped_lane_closed"] == 7
    net.run()
    assert bob.drain_received() == [ReceivedMessage(b"keep")]
    assert alice.stats()["unacked_fragments"] == 0


def test_bad_gateway_payloads_are_counted_never_raised() -> None:
    net = _pair()
    bob = net.clients["bob"]
    rng = random.Random(3)
    for size in (0, 5, 21, 1643, 1643, 2000):
        bob.handle_gateway_payload(rng.randbytes(size), net.now)
    bob.handle_gateway_payload(bytes(1643), net.now)  # all-zero key: X25519 refuses it
    stats = bob.stats()
    assert stats["payloads_bad_size"] == 3
    assert (
        stats["payloads_malformed"] + stats.get("acks_unknown", 0) + stats.get("fragments_received", 0) == 4
    )
    assert bob.drain_received() == []


def test_send_queue_is_bounded() -> None:
    net = _pair(ClientCoreConfig(max_pending_fragments=10))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(8 * 1604), net.now)
    with pytest.raises(MixnetQueueFull):
        alice.send_plain(bob.address, _payload(3 * 1604), net.now)
    assert alice.queued_packets == 9


def test_unknown_gateway_is_a_topology_error() -> None:
    net = _pair()
    stranger = Recipient(bytes(32), net.clients["bob"].address.encryption_key, b"\x09" * 32)
    with pytest.raises(TopologyError):
        net.clients["alice"].send_plain(stranger, b"x", net.now)


def test_extended_packet_size() -> None:
    net = _pair(ClientCoreConfig(packet_size=PacketSize.EXTENDED8))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(30_000), net.now)
    net.run()
    assert bob.drain_received() == [ReceivedMessage(_payload(30_000))]
    assert net.sizes_seen == {PacketSize.EXTENDED8.total_size, PacketSize.ACK.total_size}


def test_stalled_replies_rerequest_surbs_then_are_dropped() -> None:
    config = ClientCoreConfig(
        maximum_reply_surb_rerequest_waiting_period=10.0, maximum_reply_surb_drop_waiting_period=40.0
    )
    net = SimNetwork(seed=11, config=config)
    alice = net.add_client("alice", 0, ClientCoreConfig(retransmissions=False))
    bob = net.add_client("bob", 1)
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=12)
    net.run()
    [message] = bob.drain_received()
    assert message.sender_tag is not None
    net.drop = lambda label, packet: label == "alice"  # alice's answers never arrive
    bob.reply(message.sender_tag, _payload(4 * 1604), net.now)  # 5 fragments, 2 spendable SURBs
    net.run()
    assert bob.stats()["surb_requests_sent"] == 1
    assert bob.lane_queue_length(None) == 3
    for _ in range(8):  # 16 s
        net.advance(2.0)
        net.run()
    assert bob.stats()["surb_requests_sent"] == 2, "asked again after 10 s without SURBs"
    assert alice.stats()["surb_requests_answered"] == 2
    for _ in range(15):  # to 46 s
        net.advance(2.0)
        net.run()
    assert bob.stats()["reply_fragments_dropped_stale"] == 3
    assert bob.lane_queue_length(None) == 0
    assert bob.stats()["unacked_fragments"] == 0


def test_received_surbs_expire() -> None:
    net = _pair(ClientCoreConfig(maximum_reply_surb_age=3600.0))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=11)
    net.run()
    [message] = bob.drain_received()
    assert message.sender_tag is not None
    assert bob.poll_deadline() == pytest.approx(3600.0)
    net.advance(3600.0)
    assert bob.reply_surbs_available(message.sender_tag) == 0
    with pytest.raises(SurbError):
        bob.reply(message.sender_tag, b"too late", net.now)


def test_free_fragment_slots_track_unacked_fragments() -> None:
    net = _pair(ClientCoreConfig(max_pending_fragments=100))
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(10 * 1604), net.now)
    assert alice.free_fragment_slots == 89
    net.pump_client("alice")
    assert alice.queued_packets == 0
    assert alice.free_fragment_slots == 89, "in flight until acked"
    net.deliver()
    assert alice.free_fragment_slots == 100


def test_packets_in_flight_is_exact_through_send_ack_timeout_and_retransmission() -> None:
    config = ClientCoreConfig(average_packet_delay=0.0, average_ack_delay=0.0)
    net = _pair(config)
    alice, bob = net.clients["alice"], net.clients["bob"]
    alice.send_plain(bob.address, _payload(5 * 1604), net.now)
    assert (alice.packets_in_flight, alice.queued_packets) == (0, 6)
    assert net.pump_client("alice", limit=4) == 4
    assert (alice.packets_in_flight, alice.queued_packets) == (4, 2)
    net.drop = _drop_first(2, "alice")
    net.pump_client("alice")
    assert (alice.packets_in_flight, alice.queued_packets) == (6, 0)
    net.deliver()
    assert alice.packets_in_flight == 2, "the two lost packets await their ack"
    assert alice.stats()["packets_in_flight"] == 2
    deadline = alice.poll_deadline()
    assert deadline is not None
    net.advance(deadline - net.now + 0.001)
    assert (alice.packets_in_flight, alice.queued_packets) == (0, 2), "timed out: queued again"
    net.run()
    assert alice.packets_in_flight == 0
    assert [m.data for m in bob.drain_received()] == [_payload(5 * 1604)]


def test_core_caps_reply_surbs_per_message() -> None:
    net = _pair(ClientCoreConfig(maximum_allowed_reply_surb_request_size=7))
    alice, bob = net.clients["alice"], net.clients["bob"]
    for count in (-1, 8, 2**32 - 1):
        with pytest.raises(SurbError, match="between 0 and 7"):
            alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=count)
    assert alice.queued_packets == 0
    assert alice.stats().get("reply_surbs_sent", 0) == 0
    alice.send_anonymous(bob.address, b"q", net.now, reply_surbs=7)
    assert alice.stats()["reply_surbs_sent"] == 7


_FUZZ_NET = _pair(seed=21)


@settings(max_examples=60, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=3000),
        st.tuples(st.sampled_from([0, 1, 2]), st.binary(max_size=3000)).map(lambda t: bytes([t[0]]) + t[1]),
        st.tuples(st.integers(0, 5), st.integers(0, 3), st.binary(max_size=2500)).map(
            lambda t: b"\x01" + bytes(16) + bytes([t[0]]) + t[1].to_bytes(4, "big") + t[2]
        ),
        st.tuples(st.integers(0, 2**32 - 1), st.binary(max_size=10)).map(
            lambda t: (
                b"\x02\x01" + _FUZZ_NET.clients["alice"].address.to_bytes() + t[0].to_bytes(4, "big") + t[1]
            )
        ),
    ),
    st.integers(min_value=0, max_value=2**32),
)
def test_arbitrary_well_encrypted_messages_never_raise(raw: bytes, seed: int) -> None:
    bob = _FUZZ_NET.clients["bob"]
    rng = random.Random(seed)
    padded = pad_message(raw, 1611)
    for fragment_set in split_into_sets(padded, 1611, rng):
        for fragment in fragment_set:
            bob.handle_gateway_payload(
                encrypt_fragment(fragment.to_bytes(), bob.address.encryption_key, rng), 0.0
            )
    bob.handle_gateway_payload(rng.randbytes(1643), 0.0)
    for message in bob.drain_received():
        assert isinstance(message.data, bytes)
