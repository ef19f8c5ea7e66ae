"""Internet checksum: RFC 1071 vectors, odd lengths, the 0/0xFFFF cases, and a word-loop oracle."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.wire import (
    checksum_ok,
    finish_checksum,
    internet_checksum,
    pseudo_header_sum,
    transport_checksum,
    word_sum,
)


def reference_checksum(data: bytes) -> int:
    """The textbook RFC 1071 loop: 16-bit words, end-around carry, complement."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for index in range(0, len(data), 2):
        total += (data[index] << 8) | data[index + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def test_rfc1071_example_sum() -> None:
    # RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (with carries folded).
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert internet_checksum(data) == ~0xDDF2 & 0xFFFF
    assert finish_checksum(word_sum(data)) == 0x220D


def test_known_ipv4_header() -> None:
    # A classic worked example: this header's checksum field is 0xb861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert internet_checksum(header) == 0xB861
    with_checksum = header[:10] + b"\xb8\x61" + header[12:]
    assert internet_checksum(with_checksum) == 0
    assert checksum_ok(word_sum(with_checksum))


def test_empty_and_all_zero_give_ffff() -> None:
    assert internet_checksum(b"") == 0xFFFF
    assert internet_checksum(b"\x00" * 7) == 0xFFFF
    assert not checksum_ok(word_sum(b"\x00\x00"))


def test_sum_congruent_to_zero_but_nonzero_gives_zero() -> None:
    # 0xFFFF alone and 0x8000 + 0x7FFF are "-0" in one's complement: checksum 0, not 0xFFFF.
    assert internet_checksum(b"\xff\xff") == 0
    assert internet_checksum(b"\x80\x00\x7f\xff") == 0
    assert checksum_ok(word_sum(b"\xff\xff"))


def test_odd_length_pads_with_zero() -> None:
    assert internet_checksum(b"\x12") == ~0x1200 & 0xFFFF
    assert internet_checksum(b"\x12\x34\x56") == internet_checksum(b"\x12\x34\x56\x00")


def test_parts_are_placed_where_they_land() -> None:
    data = bytes(range(1, 40))
    assert internet_checksum(data[:3], data[3:4], data[4:17], data[17:]) == internet_checksum(data)
    assert internet_checksum(b"", b"\x01", b"", b"\x02\x03") == internet_checksum(b"\x01\x02\x03")


def test_accepts_bytearray_and_memoryview() -> None:
    data = bytes(range(200))
    assert (
        internet_checksum(bytearray(data)) == internet_checksum(memoryview(data)) == reference_checksum(data)
    )


def test_pseudo_header_matches_explicit_layouts() -> None:
    src4, dst4 = bytes([192, 168, 1, 2]), bytes([10, 9, 8, 7])
    segment = b"\x30\x39\x00\x50abcdefg"
    explicit4 = src4 + dst4 + bytes([0, 6]) + len(segment).to_bytes(2, "big")
    assert transport_checksum(src4, dst4, 6, segment) == reference_checksum(explicit4 + segment)
    src6, dst6 = bytes(range(16)), bytes(range(100, 116))
    explicit6 = src6 + dst6 + len(segment).to_bytes(4, "big") + bytes([0, 0, 0, 17])
    assert transport_checksum(src6, dst6, 17, segment) == reference_checksum(explicit6 + segment)
    total = pseudo_header_sum(src6, dst6, 17, len(segment)) + word_sum(segment)
    assert finish_checksum(total) == reference_checksum(explicit6 + segment)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=70), max_size=5))
def test_matches_word_loop(parts: list[bytes]) -> None:
    assert internet_checksum(*parts) == reference_checksum(b"".join(parts))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0 and any(b)))
def test_inserting_the_checksum_verifies(data: bytes) -> None:
    checksum = internet_checksum(data)
    assert checksum_ok(word_sum(data, checksum.to_bytes(2, "big")))
