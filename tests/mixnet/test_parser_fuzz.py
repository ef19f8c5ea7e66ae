"""Hostile input for every mixnet parser: only typed ``SmolmixError``s escape, nothing hangs.

Each parser gets random bytes and, more usefully, valid inputs with bytes flipped, cut off,
inserted or appended, and lengths set to their extremes, so that the fuzzing reaches the code
behind the first length check. Timing bounds are generous ceilings (a hang, not a speed target).
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sim_network import SimNetwork

from smolmix_core.errors import SmolmixError
from smolmix_core.mixnet.ack import decode_ack, encrypt_fragment_id
from smolmix_core.mixnet.base58 import b58decode, b58encode
from smolmix_core.mixnet.fragment import Fragment, FragmentHeader, FragmentIdentifier, Reassembler
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.message import (
    PlainMessage,
    RepliableKind,
    RepliableMessage,
    ReplyData,
    SurbRequest,
    decode_message,
    encode_message,
    unpad_message,
)
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.reply import ReplySurb
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import VERSION_259, ForwardHop, PacketSize, RouteNode, SphinxProcessor, Surb
from smolmix_core.mixnet.sphinx import build_packet as build_sphinx_packet
from smolmix_core.mixnet.sphinx.crypto import generate_keypair
from smolmix_core.mixnet.sphinx.payload import recover_message
from smolmix_core.mixnet.topology import Topology

T = TypeVar("T")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

NET = SimNetwork(seed=41)
SURB_RNG = random.Random(5)
REPLY_SURBS = {
    legacy: ReplySurb.build(
        NET.topology.random_route(SURB_RNG, NET.gateways[0].identity),
        b"\x07" * 32,
        delays_ns=[1, 2, 3, 4],
        rng=SURB_RNG,
        legacy=legacy,
    )
    for legacy in (True, False)
}
TAG = bytes(range(16))
KEYS = ClientKeys.generate(random.Random(8))
RECIPIENT = KEYS.address(NET.gateways[1].identity)
MESSAGES = [
    encode_message(PlainMessage(b"plain")),
    encode_message(ReplyData(b"reply")),
    encode_message(SurbRequest(RECIPIENT, 42)),
    *(
        encode_message(
            RepliableMessage(TAG, kind, (REPLY_SURBS[legacy].to_bytes(),) * 2, data, legacy=legacy)
        )
        for legacy in (True, False)
        for kind, data in ((RepliableKind.DATA, b"data"), (RepliableKind.ADDITIONAL_SURBS, b""))
    ),
]
SPHINX_KEYS = [generate_keypair(random.Random(seed)) for seed in range(4)]
SPHINX_ROUTE = [
    RouteNode(bytes([4, 6, 253, 127, 0, 0, n + 1]) + bytes(25), pub) for n, (_, pub) in enumerate(SPHINX_KEYS)
]
SPHINX_PACKET = build_sphinx_packet(
    SPHINX_ROUTE,
    b"\x09" * 32,
    b"fuzz me",
    delays_ns=[5, 6, 7, 8],
    payload_size=PacketSize.ACK.payload_size,
    version=VERSION_259,
    rng=random.Random(3),
)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A valid input with a few bytes flipped, inserted or removed, or cut or extended."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "extend"]))
        position = draw(st.integers(0, max(0, len(data) - 1)))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "set" and data:
            data[position] = draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0x7F, 0x80, 0xFF]))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[position:]
        elif action == "extend":
            data += draw(st.binary(max_size=64))
    return bytes(data)


def only_typed_errors(parse: Callable[[T], object], data: T) -> None:
    try:
        parse(data)
    except SmolmixError:
        pass


@FUZZ
@given(st.one_of(st.binary(max_size=3000), mutated(MESSAGES)))
def test_nym_messages(data: bytes) -> None:
    only_typed_errors(decode_message, data)
    only_typed_errors(unpad_message, data)


@FUZZ
@given(mutated([surb.to_bytes() for surb in REPLY_SURBS.values()]), st.booleans())
def test_reply_surbs_and_their_use(data: bytes, legacy: bool) -> None:
    try:
        surb = ReplySurb.from_bytes(data, legacy=legacy)
    except SmolmixError:
        return
    assert surb.to_bytes() == data
    surb.first_hop  # noqa: B018 - parsing succeeded, so the first hop must be usable
    only_typed_errors(lambda plaintext: surb.apply(plaintext, PacketSize.ACK), bytes(21))


@FUZZ
@given(st.one_of(st.binary(max_size=1200), mutated([surb.surb.to_bytes() for surb in REPLY_SURBS.values()])))
def test_sphinx_surbs(data: bytes) -> None:
    only_typed_errors(Surb.from_bytes, data)
    only_typed_errors(lambda raw: Surb.from_bytes(raw, version=VERSION_259), data)


@FUZZ
@given(st.one_of(st.binary(max_size=500), mutated([SPHINX_PACKET])))
def test_sphinx_processing(data: bytes) -> None:
    processor = SphinxProcessor(SPHINX_KEYS[0][0])
    try:
        result = processor.process(data)
    except SmolmixError:
        return
    # only the payload is unauthenticated at a forward hop: gamma and beta must be the original ones
    assert isinstance(result, ForwardHop)
    assert data[32:348] == SPHINX_PACKET[32:348]


FRAGMENTS = [
    bytes.fromhex("92345678030100") + b"payload",
    bytes.fromhex("92345678ffff8000abcd") + b"payload",
    bytes.fromhex("9234567807018000abcd") + b"payload",
]


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=40), mutated(FRAGMENTS)), max_size=20))
def test_fragments_and_reassembly(chunks: list[bytes]) -> None:
    reassembler = Reassembler(max_sets=8, max_bytes=4096)
    for data in chunks:
        only_typed_errors(FragmentHeader.parse, data)
        try:
            fragment = Fragment.from_bytes(data)
        except SmolmixError:
            continue
        reassembler.add(fragment, 0.0)
        assert reassembler.held_sets <= 8
        assert reassembler.held_bytes <= 4096


ACK_KEY = bytes(range(16))
ACKS = [encrypt_fragment_id(FragmentIdentifier(77, 3), ACK_KEY, random.Random(seed)) for seed in range(3)]


@FUZZ
@given(st.one_of(st.binary(max_size=40), mutated(ACKS)))
def test_acks_identifiers_and_addresses(data: bytes) -> None:
    only_typed_errors(lambda raw: decode_ack(raw, ACK_KEY), data)
    only_typed_errors(FragmentIdentifier.from_bytes, data)
    only_typed_errors(NymNodeRoutingAddress.from_bytes, data)
    only_typed_errors(NymNodeRoutingAddress.from_padded, data)
    only_typed_errors(NymNodeRoutingAddress.parse_prefix, data)
    only_typed_errors(Recipient.from_bytes, data)
    only_typed_errors(ClientKeys.from_bytes, data)
    only_typed_errors(recover_message, data)


RECIPIENT_TEXT = str(RECIPIENT).encode()


@FUZZ
@given(st.one_of(st.text(max_size=200), mutated([RECIPIENT_TEXT]).map(lambda raw: raw.decode("latin-1"))))
def test_text_forms(text: str) -> None:
    only_typed_errors(Recipient.parse, text)
    only_typed_errors(lambda raw: b58decode(raw, max_size=32), text)
    only_typed_errors(ReplySurb.from_base58, text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@st.composite
def mutated_topology(draw: st.DrawFn) -> object:
    descriptor = NET.topology.to_dict()
    section = draw(st.sampled_from(["mixnodes", "gateways"]))
    entries = descriptor[section]
    index = draw(st.integers(0, len(entries) - 1))
    field = draw(st.sampled_from(sorted(entries[index])))
    entries[index][field] = draw(json_values | st.sampled_from([float("inf"), 10**40, -1, "", "9" * 5000]))
    return descriptor


@FUZZ
@given(st.one_of(json_values, mutated_topology()))
def test_topology_descriptors(descriptor: object) -> None:
    try:
        Topology.from_dict(descriptor)  # type: ignore[arg-type]
    except SmolmixError:
        pass


# --- hostile lengths: refused at once, no allocation proportional to the claim ----------------


@pytest.mark.parametrize("legacy_tag", [0, 3])
def test_huge_surb_counts_are_refused_at_once(legacy_tag: int) -> None:
    count = struct.pack(">I", 2**32 - 1) if legacy_tag == 0 else struct.pack(">HB", 2**16 - 1, 5)
    started = time.perf_counter()
    with pytest.raises(SmolmixError, match="announces"):
        decode_message(b"\x01" + TAG + bytes([legacy_tag]) + count + bytes(2000))
    assert time.perf_counter() - started < 0.5


def test_long_base58_text_is_refused_at_once() -> None:
    started = time.perf_counter()
    for parse in (
        lambda text: Recipient.parse(f"{text}.{text}@{text}"),
        ReplySurb.from_base58,
        lambda text: Topology.from_dict({"mixnodes": [{"identity": text}], "gateways": []}),
    ):
        with pytest.raises(SmolmixError):
            parse("2" * 2_000_000)
    assert time.perf_counter() - started < 1.0
    assert b58decode(b58encode(bytes(32)), max_size=32) == bytes(32)
