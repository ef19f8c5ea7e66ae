"""Fragments: header vectors, splitting into full fragments and linked sets, and reassembly
that survives reordering, duplication and loss with bounded memory."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import FragmentError
from smolmix_core.mixnet.fragment import (
    COVER_FRAGMENT_ID,
    Fragment,
    FragmentHeader,
    FragmentIdentifier,
    Reassembler,
    number_of_fragments,
    split_into_sets,
)
from smolmix_core.mixnet.message import pad_message, unpad_message

FRAGMENT_SIZE = 1611  # regular packet: 2048 - 405 SURB-ACK - 32 key
UNLINKED = FRAGMENT_SIZE - 7
LINKED = FRAGMENT_SIZE - 10
FULL_SET = 255 * UNLINKED
EDGE_SET = FULL_SET - 3
MIDDLE_SET = FULL_SET - 6


def test_spec_header_vectors() -> None:
    assert FragmentHeader(0x12345678, 3, 1).to_bytes() == bytes.fromhex("92345678030100")
    linked = FragmentHeader(0x12345678, 255, 255, next_set_id=0xABCD)
    assert linked.to_bytes() == bytes.fromhex("92345678ffff8000abcd")
    assert FragmentHeader.parse(linked.to_bytes()) == (linked, 10)
    pre = FragmentHeader(0x12345678, 7, 1, previous_set_id=5)
    assert FragmentHeader.parse(pre.to_bytes() + b"data") == (pre, 10)
    assert FragmentHeader.parse(bytes.fromhex("92345678030100")) == (FragmentHeader(0x12345678, 3, 1), 7)


def test_fragment_identifier_bytes() -> None:
    ident = FragmentIdentifier(0x01020304, 9)
    assert ident.to_bytes() == bytes.fromhex("0102030409")
    assert FragmentIdentifier.from_bytes(ident.to_bytes()) == ident
    assert COVER_FRAGMENT_ID.to_bytes() == bytes(5)
    with pytest.raises(FragmentError, match="negative"):
        FragmentIdentifier.from_bytes(bytes.fromhex("8000000001"))
    with pytest.raises(FragmentError, match="5 bytes"):
        FragmentIdentifier.from_bytes(b"1234")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes.fromhex("123456780301"), "needs 7 bytes"),
        (bytes.fromhex("12345678030100"), "flag bit"),
        (bytes.fromhex("92345678000100"), "not a valid position"),
        (bytes.fromhex("92345678030000"), "not a valid position"),
        (bytes.fromhex("92345678030400"), "not a valid position"),
        (bytes.fromhex("80000000030100"), "outside"),
        (bytes.fromhex("9234567803018000"), "needs 10 bytes"),
        (bytes.fromhex("923456780301" + "01000005"), "flag bit"),
        (bytes.fromhex("923456780302" + "80000005"), "only fragment 255 of 255"),
        (bytes.fromhex("92345678030180000000"), "linked set id 0"),
        (bytes.fromhex("92345678030192345678"), "linked set id"),
    ],
)
def test_malformed_headers(data: bytes, message: str) -> None:
    with pytest.raises(FragmentError, match=message):
        FragmentHeader.parse(data)


def _padded(size: int, seed: int) -> tuple[bytes, bytes]:
    data = random.Random(seed).randbytes(size)
    return data, pad_message(data, FRAGMENT_SIZE)


def _check_split(padded: bytes, seed: int) -> list[list[Fragment]]:
    sets = split_into_sets(padded, FRAGMENT_SIZE, random.Random(seed))
    fragments = [fragment for fragment_set in sets for fragment in fragment_set]
    count, space_left = number_of_fragments(len(padded), FRAGMENT_SIZE)
    assert space_left == 0
    assert len(fragments) == count
    assert all(len(fragment.to_bytes()) == FRAGMENT_SIZE for fragment in fragments), "padding fills all"
    assert all(len(fragment_set) <= 255 for fragment_set in sets)
    assert all(len(fragment_set) == 255 for fragment_set in sets[:-1])
    for left, right in itertools.pairwise(sets):
        assert left[-1].header.next_set_id == right[0].header.set_id
        assert right[0].header.previous_set_id == left[0].header.set_id
    assert len({fragment_set[0].header.set_id for fragment_set in sets}) == len(sets)
    assert b"".join(fragment.payload for fragment in fragments) == padded
    return sets


def _reassemble(fragments: list[Fragment], reassembler: Reassembler) -> list[bytes]:
    done = []
    for fragment in fragments:
        wire = Fragment.from_bytes(fragment.to_bytes())
        result = reassembler.add(wire, now=0.0)
        if result is not None:
            done.append(result)
    return done


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=40_000), st.integers(min_value=0, max_value=2**32), st.booleans())
def test_small_messages_round_trip_shuffled_and_duplicated(size: int, seed: int, duplicate: bool) -> None:
    data, padded = _padded(size, seed)
    sets = _check_split(padded, seed)
    fragments = [fragment for fragment_set in sets for fragment in fragment_set]
    rng = random.Random(seed)
    if duplicate:
        fragments += rng.sample(fragments, k=max(1, len(fragments) // 3))
    rng.shuffle(fragments)
    reassembler = Reassembler()
    done = _reassemble(fragments, reassembler)
    assert len(done) == 1, "exactly once even with duplicates"
    assert unpad_message(done[0]) == data
    assert reassembler.held_bytes == 0
    assert reassembler.held_sets == 0


@settings(max_examples=4, deadline=None)
@given(st.integers(min_value=40_000, max_value=5 * 1024 * 1024), st.integers(min_value=0, max_value=2**32))
def test_large_random_sizes_round_trip(size: int, seed: int) -> None:
    data, padded = _padded(size, seed)
    fragments = [fragment for fragment_set in _check_split(padded, seed) for fragment in fragment_set]
    random.Random(seed).shuffle(fragments)
    done = _reassemble(fragments, Reassembler())
    assert len(done) == 1
    assert unpad_message(done[0]) == data


@pytest.mark.parametrize(
    "size",
    [
        FULL_SET - 1,  # largest single-set message (plus its padding byte)
        FULL_SET,  # one byte more: two linked sets, the second a single linked fragment
        2 * EDGE_SET - 1,  # two full sets
        2 * EDGE_SET,  # three sets
        2 * EDGE_SET + MIDDLE_SET + 5000,
        5 * 1024 * 1024,
    ],
)
def test_large_messages_with_linked_sets(size: int) -> None:
    data, padded = _padded(size, size)
    sets = _check_split(padded, size)
    expected_sets = {FULL_SET - 1: 1, FULL_SET: 2, 2 * EDGE_SET - 1: 2, 2 * EDGE_SET: 3}
    if size in expected_sets:
        assert len(sets) == expected_sets[size]
    fragments = [fragment for fragment_set in sets for fragment in fragment_set]
    rng = random.Random(size)
    fragments += rng.sample(fragments, k=50)
    rng.shuffle(fragments)
    done = _reassemble(fragments, Reassembler())
    assert len(done) == 1
    assert unpad_message(done[0]) == data


def test_number_of_fragments_edges() -> None:
    assert number_of_fragments(1, FRAGMENT_SIZE) == (1, UNLINKED - 1)
    assert number_of_fragments(UNLINKED, FRAGMENT_SIZE) == (1, 0)
    assert number_of_fragments(UNLINKED + 1, FRAGMENT_SIZE) == (2, UNLINKED - 1)
    assert number_of_fragments(FULL_SET, FRAGMENT_SIZE) == (255, 0)
    assert number_of_fragments(EDGE_SET + LINKED - 1, FRAGMENT_SIZE) == (256, 1)
    assert number_of_fragments(EDGE_SET + LINKED, FRAGMENT_SIZE) == (256, 0)
    assert number_of_fragments(EDGE_SET + LINKED + 41 * UNLINKED - 5, FRAGMENT_SIZE) == (255 + 42, 5)
    ten_sets = EDGE_SET + 8 * MIDDLE_SET + LINKED + 41 * UNLINKED
    assert number_of_fragments(ten_sets, FRAGMENT_SIZE) == (9 * 255 + 42, 0)


def test_plain_message_of_1602_bytes_is_one_packet() -> None:
    # spec §7: 1 type byte + 1602 data + 1 padding byte = 1604 = one unlinked fragment
    assert number_of_fragments(1 + 1602 + 1, FRAGMENT_SIZE) == (1, 0)
    assert number_of_fragments(1 + 1603 + 1, FRAGMENT_SIZE)[0] == 2


def test_incomplete_messages_expire_and_free_memory() -> None:
    _, padded = _padded(10 * UNLINKED - 1, 1)
    fragments = split_into_sets(padded, FRAGMENT_SIZE, random.Random(1))[0]
    reassembler = Reassembler(timeout=30.0)
    for fragment in fragments[:-1]:
        assert reassembler.add(fragment, now=10.0) is None
    assert reassembler.held_bytes == 9 * UNLINKED
    assert reassembler.next_deadline() == 40.0
    assert reassembler.expire(39.9) == 0
    assert reassembler.expire(40.0) == 1
    assert reassembler.held_bytes == 0
    assert reassembler.held_sets == 0
    assert reassembler.counters["messages_expired"] == 1
    assert reassembler.next_deadline() is None
    # the missing fragment arriving after expiry starts a new set that cannot complete alone
    assert reassembler.add(fragments[-1], now=41.0) is None


def test_activity_on_any_set_of_a_message_keeps_all_its_sets_alive() -> None:
    _, padded = _padded(FULL_SET + 10 * UNLINKED, 2)
    first, second = split_into_sets(padded, FRAGMENT_SIZE, random.Random(2))
    reassembler = Reassembler(timeout=30.0)
    for fragment in first:
        reassembler.add(fragment, now=0.0)
    for index, fragment in enumerate(second[:-1]):
        reassembler.add(fragment, now=20.0 + index)
    assert reassembler.expire(35.0) == 0, "first set is complete and linked to an active one"
    assert reassembler.add(second[-1], now=40.0) is not None


def test_byte_cap_evicts_least_recently_active_message() -> None:
    reassembler = Reassembler(max_bytes=5 * UNLINKED)
    messages = [
        split_into_sets(_padded(4 * UNLINKED - 1, seed)[1], FRAGMENT_SIZE, random.Random(seed))[0]
        for seed in (1, 2)
    ]
    for fragment in messages[0][:3]:
        reassembler.add(fragment, now=0.0)
    for fragment in messages[1][:3]:
        reassembler.add(fragment, now=1.0)
    assert reassembler.counters["messages_evicted"] == 1
    assert reassembler.held_bytes <= 5 * UNLINKED
    for fragment in messages[1][3:]:
        result = reassembler.add(fragment, now=2.0)
    assert result is not None, "the recent message survived the eviction"


def test_set_cap() -> None:
    reassembler = Reassembler(max_sets=3)
    for seed in range(10):
        fragments = split_into_sets(_padded(3 * UNLINKED - 1, seed)[1], FRAGMENT_SIZE, random.Random(seed))[0]
        reassembler.add(fragments[0], now=float(seed))
    assert reassembler.held_sets == 3
    assert reassembler.counters["messages_evicted"] == 7


def test_late_duplicates_after_completion_are_dropped() -> None:
    _, padded = _padded(3 * UNLINKED - 1, 9)
    fragments = split_into_sets(padded, FRAGMENT_SIZE, random.Random(9))[0]
    reassembler = Reassembler(completed_ttl=60.0)
    results = [reassembler.add(fragment, now=0.0) for fragment in fragments]
    assert results[-1] is not None
    assert reassembler.add(fragments[0], now=1.0) is None
    assert reassembler.counters["fragments_late"] == 1
    assert reassembler.held_sets == 0
    reassembler.expire(61.0)
    assert reassembler.add(fragments[0], now=62.0) is None
    assert reassembler.held_sets == 1, "after the memory expires the id is new again"


def test_inconsistent_total_is_dropped_not_merged() -> None:
    reassembler = Reassembler()
    reassembler.add(Fragment(FragmentHeader(77, 3, 1), b"a" * UNLINKED), now=0.0)
    assert reassembler.add(Fragment(FragmentHeader(77, 4, 2), b"b" * UNLINKED), now=0.0) is None
    assert reassembler.counters["fragments_inconsistent"] == 1
    assert reassembler.held_bytes == UNLINKED


# --- a literal port of upstream chunking, to pin our splitting to it ----------------------------
# nymtech/nym common/nymsphinx/chunking/src/{lib.rs,set.rs}: number_of_required_fragments,
# total_number_of_sets, prepare_unlinked_fragmented_set, prepare_linked_fragment_set and
# split_into_sets, transcribed line by line (same bounds arithmetic, same loops).


def _up_sizes(plaintext: int) -> tuple[int, int, int, int, int]:
    unlinked, linked = plaintext - 7, plaintext - 10
    full = 255 * unlinked
    return unlinked, linked, full, full - 3, full - 6


def _up_total_sets(message_len: int, plaintext: int) -> int:
    _, _, full, one_way, two_way = _up_sizes(plaintext)
    if message_len <= full:
        return 1
    if message_len <= 2 * one_way:
        return 2
    return -(-(message_len - 2 * one_way) // two_way) + 2


def _up_required_fragments(message_len: int, plaintext: int) -> tuple[int, int]:
    max_unlinked, max_linked, _, _, _ = _up_sizes(plaintext)
    n = _up_total_sets(message_len, plaintext)
    if n == 1:
        if message_len < max_unlinked:
            return 1, max_unlinked - message_len
        quot, rem = divmod(message_len, max_unlinked)
        return (quot, 0) if rem == 0 else (quot + 1, max_unlinked - rem)
    without_last = (n - 1) * 255
    linked_without_last = (2 * n - 2) - 1
    unlinked_without_last = without_last - linked_without_last
    final_len = message_len - linked_without_last * max_linked - unlinked_without_last * max_unlinked
    if final_len < max_linked:
        return without_last + 1, max_linked - final_len
    if final_len == max_linked:
        return without_last + 1, 0
    quot, rem = divmod(final_len - max_linked, max_unlinked)
    return (without_last + quot + 1, 0) if rem == 0 else (without_last + quot + 2, max_unlinked - rem)


def _up_split(message: bytes, plaintext: int, ids: list[int]) -> list[list[bytes]]:
    max_unlinked, max_linked, _, one_way, two_way = _up_sizes(plaintext)

    def header(set_id: int, total: int, current: int, link: int | None) -> bytes:
        tail = b"\x00" if link is None else (link | 0x8000_0000).to_bytes(4, "big")
        return (set_id | 0x8000_0000).to_bytes(4, "big") + bytes([total, current]) + tail

    def unlinked_set(chunk: bytes, set_id: int) -> list[bytes]:
        count = -(-len(chunk) // max_unlinked)
        return [
            header(set_id, count, i, None) + chunk[(i - 1) * max_unlinked : min(len(chunk), i * max_unlinked)]
            for i in range(1, count + 1)
        ]

    def linked_set(chunk: bytes, set_id: int, previous: int | None, following: int | None) -> list[bytes]:
        if following is not None:
            count = 255
        else:
            tail = len(chunk) - max_linked if len(chunk) >= max_linked else 0
            count = 1 + -(-tail // max_unlinked)
        lb = 0
        ub = min(len(chunk), max_linked) if previous is not None else max_unlinked
        out = []
        for i in range(1, count + 1):
            link = previous if i == 1 else None
            if i == count and following is not None:
                link = following
            out.append(header(set_id, count, i, link) + chunk[lb:ub])
            lb, ub = ub, min(len(chunk), ub + max_unlinked)
        return out

    n = _up_total_sets(len(message), plaintext)
    if n == 1:
        return [unlinked_set(message, ids[0])]
    sets = []
    lb, ub = 0, one_way
    for i in range(n):
        previous = ids[i - 1] if i else None
        following = ids[i + 1] if i < n - 1 else None
        sets.append(linked_set(message[lb:ub], ids[i], previous, following))
        lb = ub
        ub = min(len(message), ub + (one_way if i == n - 2 else two_way))
    return sets


def _boundary_lengths(plaintext: int) -> list[int]:
    unlinked, linked, full, one_way, two_way = _up_sizes(plaintext)
    anchors = [
        1,
        unlinked,
        full,
        one_way + linked,
        2 * one_way,
        2 * one_way + two_way,
        3 * one_way + 2 * two_way,
    ]
    return sorted({max(1, anchor + delta) for anchor in anchors for delta in (-2, -1, 0, 1, 2)})


@pytest.mark.parametrize("plaintext", [20, 41, FRAGMENT_SIZE])
def test_splitting_matches_a_literal_port_of_upstream_chunking(plaintext: int) -> None:
    for length in _boundary_lengths(plaintext):
        message = bytes(random.Random(length).randbytes(length))
        assert number_of_fragments(length, plaintext) == _up_required_fragments(length, plaintext), length
        padded = pad_message(message, plaintext)
        ours = split_into_sets(padded, plaintext, random.Random(length))
        ids = [fragment_set[0].header.set_id for fragment_set in ours]
        expected = _up_split(padded, plaintext, ids)
        assert [[fragment.to_bytes() for fragment in fragment_set] for fragment_set in ours] == expected, (
            length
        )
        assert {len(fragment) for fragment_set in expected for fragment in fragment_set} == {plaintext}
