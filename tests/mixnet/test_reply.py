"""Reply SURBs, sender tags, the creator's reply keys and the replier's SURB store rules."""

from __future__ import annotations

import random

import pytest
from sim_network import SimNetwork

from smolmix_core.errors import SurbError
from smolmix_core.mixnet.encryption import reply_key_digest
from smolmix_core.mixnet.message import V1_REPLY_SURB_SIZE, v2_reply_surb_size
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.reply import ReceivedSurbStore, ReplyKeyStore, ReplySurb, SenderTags
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import FinalHop, ForwardHop, PacketSize


def _surb(net: SimNetwork, legacy: bool, seed: int = 1) -> ReplySurb:
    rng = random.Random(seed)
    route = net.topology.random_route(rng, net.gateways[0].identity)
    return ReplySurb.build(route, b"\x07" * 32, delays_ns=[0, 0, 0, 0], rng=rng, legacy=legacy)


@pytest.mark.parametrize(("legacy", "size"), [(True, V1_REPLY_SURB_SIZE), (False, v2_reply_surb_size(4))])
def test_reply_surb_encodings_and_use(legacy: bool, size: int) -> None:
    net = SimNetwork(seed=2)
    surb = _surb(net, legacy)
    raw = surb.to_bytes()
    assert len(raw) == size
    assert ReplySurb.from_bytes(raw, legacy=legacy) == surb
    assert ReplySurb.from_base58(surb.to_base58(), legacy=legacy) == surb
    plaintext = random.Random(3).randbytes(PacketSize.REGULAR.plaintext_size)
    packet = surb.apply(plaintext, PacketSize.REGULAR)
    assert len(packet) == PacketSize.REGULAR.total_size
    address = surb.first_hop.address
    while True:
        result = net.process_at(address, packet)
        if isinstance(result, FinalHop):
            break
        assert isinstance(result, ForwardHop)
        address, packet = NymNodeRoutingAddress.from_padded(result.next_address).address, result.packet
    assert address == net.gateways[0].routing_address.address
    assert result.destination == b"\x07" * 32
    assert result.message == plaintext


def test_reply_surb_errors() -> None:
    net = SimNetwork(seed=2)
    surb = _surb(net, True)
    with pytest.raises(SurbError, match="too short"):
        ReplySurb.from_bytes(bytes(16))
    with pytest.raises(SurbError, match="malformed"):
        ReplySurb.from_bytes(surb.to_bytes()[:-1])
    with pytest.raises(SurbError, match="malformed"):
        ReplySurb.from_bytes(surb.to_bytes(), legacy=False)
    with pytest.raises(SurbError, match="base58"):
        ReplySurb.from_base58("0OIl")
    with pytest.raises(SurbError, match="must be 2048"):
        surb.apply(bytes(100), PacketSize.REGULAR)
    with pytest.raises(SurbError, match="base58"):
        ReplySurb.from_base58("2" * 100_000)


@pytest.mark.parametrize("legacy", [True, False])
def test_reply_surb_first_hop_must_be_a_routing_address_like_upstream(legacy: bool) -> None:
    """anonymous-replies reply_surb.rs from_bytes: ``NymNodeRoutingAddress::try_from(first_hop)?``."""
    surb = _surb(SimNetwork(seed=3), legacy)
    assert surb.first_hop.host.startswith("127.0.1.")
    raw = bytearray(surb.to_bytes())
    first_hop = 16 + 348
    assert raw[first_hop] == 4
    raw[first_hop] = 5
    with pytest.raises(SurbError, match="IP version"):
        ReplySurb.from_bytes(bytes(raw), legacy=legacy)
    raw[first_hop] = 4
    raw[first_hop + 31] = 0xAA  # upstream does not inspect what follows the address
    assert ReplySurb.from_bytes(bytes(raw), legacy=legacy).first_hop == surb.first_hop


def test_sender_tags_are_stable_per_recipient_and_bounded() -> None:
    tags = SenderTags(random.Random(1), capacity=2)
    first, second, third = (Recipient(bytes([n]) * 32, bytes(32), bytes(32)) for n in (1, 2, 3))
    tag = tags.tag_for(first)
    assert len(tag) == 16
    assert tags.tag_for(first) == tag
    assert tags.tag_for(second) != tag
    tags.tag_for(first)  # most recently used
    tags.tag_for(third)  # evicts `second`
    assert tags.tag_for(first) == tag


def test_reply_keys_are_single_use_expire_and_are_bounded() -> None:
    store = ReplyKeyStore(max_age=100.0, capacity=3)
    keys = [bytes([n]) * 16 for n in range(5)]
    for index, key in enumerate(keys[:3]):
        store.insert(key, now=float(index))
    assert store.pop(reply_key_digest(keys[1])) == keys[1]
    assert store.pop(reply_key_digest(keys[1])) is None, "used once"
    store.insert(keys[3], now=3.0)
    store.insert(keys[4], now=4.0)
    assert store.evicted == 1
    assert store.pop(reply_key_digest(keys[0])) is None
    assert store.next_deadline() == 102.0
    store.expire(102.0)
    assert store.pop(reply_key_digest(keys[2])) is None
    assert store.pop(reply_key_digest(keys[4])) == keys[4]


def _fake_surbs(net: SimNetwork, count: int) -> list[ReplySurb]:
    base = _surb(net, True)
    return [ReplySurb(bytes([n % 256]) * 16, base.surb) for n in range(count)]


def test_store_keeps_the_reserve_for_requests() -> None:
    net = SimNetwork(seed=4)
    store = ReceivedSurbStore(reserve=10)
    tag = b"t" * 16
    store.insert(tag, _fake_surbs(net, 12), now=0.0)
    assert store.spendable(tag) == 2
    assert len(store.take(tag, 5)) == 2
    assert store.take(tag, 1) == []
    assert len(store.take(tag, 1, use_reserve=True)) == 1
    assert store.available(tag) == 9


def test_store_caps_and_expiry() -> None:
    net = SimNetwork(seed=4)
    store = ReceivedSurbStore(max_per_tag=20, max_age=50.0, max_tags=2)
    store.insert(b"a" * 16, _fake_surbs(net, 25), now=0.0)
    assert store.available(b"a" * 16) == 20
    assert store.dropped_full == 5
    store.insert(b"b" * 16, _fake_surbs(net, 1), now=10.0)
    store.insert(b"c" * 16, _fake_surbs(net, 1), now=10.0)
    assert not store.knows(b"a" * 16), "least recently active tag forgotten"
    assert store.next_deadline() == 60.0
    store.expire(60.0)
    assert store.available(b"b" * 16) == 0
    assert store.expired == 2


def test_request_rules() -> None:
    net = SimNetwork(seed=4)
    store = ReceivedSurbStore(reserve=10, max_per_tag=200, min_request=10, max_request=100)
    tag = b"r" * 16
    store.insert(tag, _fake_surbs(net, 30), now=0.0)
    assert not store.should_request(tag, queued=20), "30 held cover 20 queued plus the reserve"
    assert store.should_request(tag, queued=21)
    assert store.request_size(3) == 10
    assert store.request_size(40) == 40
    assert store.request_size(400) == 100
    store.note_request(tag, 50, now=1.0)
    assert store.pending_reception(tag) == 50
    assert not store.should_request(tag, queued=60), "requested SURBs count as on their way"
    store.insert(tag, _fake_surbs(net, 20), now=2.0, requested=True)
    assert store.pending_reception(tag) == 30
    store.note_request(tag, 200, now=3.0)
    assert not store.should_request(tag, queued=1000), "never beyond the storage cap"


def test_give_back_returns_surbs_to_the_front() -> None:
    net = SimNetwork(seed=4)
    store = ReceivedSurbStore(reserve=0)
    tag = b"g" * 16
    surbs = _fake_surbs(net, 3)
    store.insert(tag, surbs, now=0.0)
    taken = store.take(tag, 1)
    store.give_back(tag, taken, now=1.0)
    assert store.take(tag, 3) == surbs
