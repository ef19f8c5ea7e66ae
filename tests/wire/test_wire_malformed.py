"""Specific malformed inputs each parser must reject, and values each emitter must refuse."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wire_strategies import addr4, payloads, u8, u16

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire import (
    ICMPV4_QUOTE_LIMIT,
    ICMPV6_QUOTE_LIMIT,
    MAX_EXTENSION_HEADERS,
    PROTO_HOPOPTS,
    PROTO_IPV6_DSTOPTS,
    PROTO_IPV6_FRAGMENT,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    Ipv4Header,
    Ipv6Header,
    TcpHeader,
    TcpOptions,
    UdpHeader,
    build_ipv4,
    emit_icmpv4,
    emit_icmpv6,
    emit_ip,
    emit_ipv4,
    emit_ipv6,
    emit_tcp,
    emit_udp,
    error_quote,
    parse_icmpv4,
    parse_icmpv6,
    parse_ip,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
    quoted_flow,
)

SRC4, DST4 = bytes([192, 0, 2, 1]), bytes([198, 51, 100, 7])
SRC6, DST6 = bytes(15) + b"\x01", bytes(15) + b"\x02"


def with_checksum(header: bytearray) -> bytes:
    """Recompute an IPv4 header checksum after a deliberate structural change."""
    header[10:12] = b"\x00\x00"
    total = int.from_bytes(header, "big")
    header[10:12] = (0xFFFF - total % 0xFFFF).to_bytes(2, "big")
    return bytes(header)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p.__setitem__(0, 0x44), "IHL below 5"),
        (lambda p: p.__setitem__(0, 0x47), "IHL past the packet"),
        (lambda p: p.__setitem__(0, 0x55), "version 5"),
        (lambda p: p.__setitem__(slice(2, 4), (19).to_bytes(2, "big")), "total length below header"),
        (lambda p: p.__setitem__(slice(2, 4), (200).to_bytes(2, "big")), "total length past the packet"),
    ],
)
def test_ipv4_structural_errors(change: object, why: str) -> None:
    packet = bytearray(emit_ipv4(Ipv4Header(SRC4, DST4, PROTO_UDP), b"0123"))
    change(packet)  # type: ignore[operator]
    with pytest.raises(MalformedPacket) as caught:
        parse_ipv4(with_checksum(packet))
    assert not isinstance(caught.value, ChecksumError), why


def test_ipv4_parse_rejects_an_ipv6_packet_and_vice_versa() -> None:
    with pytest.raises(MalformedPacket):
        parse_ipv4(emit_ip(SRC6, DST6, PROTO_UDP, b""))
    with pytest.raises(MalformedPacket):
        parse_ipv6(emit_ip(SRC4, DST4, PROTO_UDP, b"") + bytes(20))


def ext(kind: int, length_units: int = 0) -> tuple[int, bytes]:
    return kind, bytes((0, length_units)) + bytes(6 + 8 * length_units)


def test_ipv6_hop_by_hop_must_come_first() -> None:
    packet = emit_ipv6(
        Ipv6Header(SRC6, DST6, PROTO_UDP, extension_headers=(ext(PROTO_IPV6_DSTOPTS), ext(PROTO_HOPOPTS))),
        b"",
    )
    with pytest.raises(MalformedPacket, match="Hop-by-Hop"):
        parse_ipv6(packet)


def test_ipv6_extension_header_count_is_bounded() -> None:
    chain = tuple(ext(PROTO_IPV6_DSTOPTS) for _ in range(MAX_EXTENSION_HEADERS))
    parse_ipv6(emit_ipv6(Ipv6Header(SRC6, DST6, PROTO_UDP, extension_headers=chain), b""))
    too_many = (*chain, ext(PROTO_IPV6_DSTOPTS))
    with pytest.raises(MalformedPacket, match="more than"):
        parse_ipv6(emit_ipv6(Ipv6Header(SRC6, DST6, PROTO_UDP, extension_headers=too_many), b""))


def test_ipv6_extension_header_longer_than_the_packet() -> None:
    packet = bytearray(
        emit_ipv6(Ipv6Header(SRC6, DST6, PROTO_UDP, extension_headers=(ext(PROTO_IPV6_DSTOPTS),)), b"")
    )
    packet[41] = 1  # claims 16 bytes; 8 are there
    with pytest.raises(MalformedPacket, match="past the packet"):
        parse_ipv6(packet)
    packet[41] = 0
    packet[5] -= 1  # payload length now cuts the extension header short
    with pytest.raises(MalformedPacket):
        parse_ipv6(packet[:-1])


def test_ipv6_payload_length_past_the_bytes_received() -> None:
    packet = emit_ip(SRC6, DST6, PROTO_UDP, b"12345678")
    with pytest.raises(MalformedPacket):
        parse_ipv6(packet[:-1])
    header, payload = parse_ipv6(packet + b"pad")  # trailing link bytes are ignored
    assert payload == b"12345678"
    assert header.next_header == PROTO_UDP


def test_tcp_data_offset_out_of_range() -> None:
    segment = bytearray(emit_tcp(TcpHeader(1, 2, 3, 4, 0x10, 5), b"", SRC4, DST4))
    for offset in (0, 4, 6, 15):  # below 5 words, or beyond the 20 bytes present
        segment[12] = offset << 4
        with pytest.raises(MalformedPacket):
            parse_tcp(segment, SRC4, DST4, verify_checksum=False)


def test_tcp_known_option_with_a_wrong_length_is_listed_not_fatal() -> None:
    header = bytearray(emit_tcp(TcpHeader(1, 2, 3, 4, 0x10, 5), b"", SRC4, DST4))
    header[12] = 6 << 4
    segment = bytes(header) + b"\x02\x03\x05\x00"  # "MSS" of 3 bytes, then EOL
    parsed, _ = parse_tcp(segment, SRC4, DST4, verify_checksum=False)
    assert parsed.options.mss is None
    assert parsed.options.unknown == ((2, b"\x05"),)


def test_tcp_options_after_eol_are_ignored() -> None:
    header = bytearray(emit_tcp(TcpHeader(1, 2, 3, 4, 0x10, 5), b"", SRC4, DST4))
    header[12] = 7 << 4
    segment = bytes(header) + b"\x02\x04\x05\xb4\x00\x03\x03\x07"
    parsed, _ = parse_tcp(segment, SRC4, DST4, verify_checksum=False)
    assert parsed.options == TcpOptions(mss=1460)


def test_udp_length_field_errors() -> None:
    datagram = bytearray(emit_udp(UdpHeader(1, 2), b"abcd", SRC4, DST4))
    for length in (0, 7, 13):
        datagram[4:6] = length.to_bytes(2, "big")
        with pytest.raises(MalformedPacket):
            parse_udp(datagram, SRC4, DST4, verify_checksum=False)
    with pytest.raises(MalformedPacket):
        parse_udp(b"\x00" * 7, SRC4, DST4)


def test_udp_shorter_length_cuts_payload_and_checksum_covers_only_that() -> None:
    datagram = emit_udp(UdpHeader(1, 2), b"abcd", SRC4, DST4) + b"trailing"
    assert parse_udp(datagram, SRC4, DST4) == (UdpHeader(1, 2), b"abcd")
    flipped = bytearray(datagram)
    flipped[9] ^= 1
    with pytest.raises(ChecksumError):
        parse_udp(flipped, SRC4, DST4)


def test_icmp_short_and_bad_checksum() -> None:
    with pytest.raises(MalformedPacket):
        parse_icmpv4(b"\x08\x00\x00\x00\x00\x00\x00")
    with pytest.raises(MalformedPacket):
        parse_icmpv6(b"\x80\x00\x00\x00\x00\x00\x00", SRC6, DST6)
    with pytest.raises(ChecksumError):
        parse_icmpv4(bytes(8))  # all zero: the checksum of this would be 0xFFFF
    message = bytearray(emit_icmpv4(Icmpv4Message(8, ident=1, seq=1, data=b"x")))
    message[-1] ^= 0x80
    with pytest.raises(ChecksumError):
        parse_icmpv4(message)


def test_quoted_flow_rejects_unusable_quotes() -> None:
    for quote in (b"", b"\x45" + bytes(10), b"\x60" + bytes(30), b"\x75" + bytes(40), b"\x43" + bytes(30)):
        with pytest.raises(MalformedPacket):
            quoted_flow(quote)


def test_quoted_flow_of_later_fragment_has_no_ports() -> None:
    later = emit_ipv4(Ipv4Header(SRC4, DST4, PROTO_UDP, fragment_offset=10), b"not-a-udp-header")
    assert quoted_flow(later) == (SRC4, DST4, PROTO_UDP, 0, 0, None)
    fragment = (PROTO_IPV6_FRAGMENT, bytes((0, 0, 0, 0x50, 0, 0, 0, 1)))
    later6 = emit_ipv6(Ipv6Header(SRC6, DST6, PROTO_TCP, extension_headers=(fragment,)), b"no-header")
    assert quoted_flow(later6) == (SRC6, DST6, PROTO_TCP, 0, 0, None)


def test_error_quote_limits_keep_errors_within_minimum_mtu() -> None:
    big4 = emit_ip(SRC4, DST4, PROTO_UDP, bytes(3000))
    big6 = emit_ip(SRC6, DST6, PROTO_UDP, bytes(3000))
    assert len(error_quote(big4)) == ICMPV4_QUOTE_LIMIT
    assert 20 + len(emit_icmpv4(Icmpv4Message(3, 3, data=error_quote(big4)))) == 576
    assert 40 + len(emit_icmpv6(Icmpv6Message(1, 4, data=error_quote(big6)), SRC6, DST6)) == 1280
    assert len(error_quote(big6)) == ICMPV6_QUOTE_LIMIT
    assert error_quote(big4[:50]) == big4[:50]


@pytest.mark.parametrize(
    "emit",
    [
        lambda: emit_tcp(TcpHeader(70000, 1, 0, 0, 0, 0), b"", SRC4, DST4),
        lambda: emit_tcp(TcpHeader(1, 1, 2**32, 0, 0, 0), b"", SRC4, DST4),
        lambda: emit_tcp(TcpHeader(1, 1, 0, 0, 0x200, 0), b"", SRC4, DST4),
        lambda: emit_tcp(TcpHeader(1, 1, 0, 0, 0, 0, options=TcpOptions(mss=70000)), b"", SRC4, DST4),
        lambda: emit_tcp(
            TcpHeader(1, 1, 0, 0, 0, 0, options=TcpOptions(unknown=((1, b""),))), b"", SRC4, DST4
        ),
        lambda: emit_tcp(
            TcpHeader(1, 1, 0, 0, 0, 0, options=TcpOptions(timestamp=(1, 2), sack_blocks=((1, 2),) * 4)),
            b"",
            SRC4,
            DST4,
        ),
        lambda: emit_udp(UdpHeader(1, 2), bytes(65530), SRC4, DST4),
        lambda: emit_udp(UdpHeader(-1, 2), b"", SRC4, DST4),
        lambda: emit_ipv4(Ipv4Header(SRC4, DST4, 6, ttl=256), b""),
        lambda: emit_ipv4(Ipv4Header(SRC4, DST4, 6, fragment_offset=0x2000), b""),
        lambda: emit_ipv4(Ipv4Header(SRC4, DST4, 6, options=bytes(44)), b""),
        lambda: emit_ipv4(Ipv4Header(SRC6, DST6, 6), b""),
        lambda: emit_ip(SRC4, DST4, 6, bytes(65516)),
        lambda: emit_ip(b"\x01\x02", b"\x03\x04", 6, b""),
        lambda: emit_ipv6(Ipv6Header(SRC6, DST6, 6, flow_label=1 << 20), b""),
        lambda: emit_ipv6(Ipv6Header(SRC6, DST6, 6, extension_headers=((PROTO_TCP, bytes(8)),)), b""),
        lambda: emit_ipv6(
            Ipv6Header(SRC6, DST6, 6, extension_headers=((PROTO_IPV6_DSTOPTS, bytes(12)),)), b""
        ),
        lambda: emit_icmpv4(Icmpv4Message(8, ident=1 << 16)),
        lambda: emit_icmpv4(Icmpv4Message(3, 4, mtu=-1)),
        lambda: emit_icmpv6(Icmpv6Message(2, mtu=1 << 32), SRC6, DST6),
    ],
)
def test_emitters_refuse_unencodable_values(emit: object) -> None:
    with pytest.raises(ValueError):
        emit()  # type: ignore[operator]


@settings(max_examples=100, deadline=None)
@given(addr4, addr4, u8, payloads, u8, u16, u8, st.booleans())
def test_emit_ip_fast_path_equals_emit_ipv4(
    src: bytes, dst: bytes, protocol: int, payload: bytes, ttl: int, ident: int, tos: int, dont_fragment: bool
) -> None:
    expected = emit_ipv4(Ipv4Header(src, dst, protocol, ttl, ident, tos, dont_fragment), payload)
    assert (
        emit_ip(src, dst, protocol, payload, ttl=ttl, ident=ident, dont_fragment=dont_fragment, tos=tos)
        == expected
    )
    assert (
        build_ipv4(src, dst, protocol, payload, ttl, ident, tos, 0x4000 if dont_fragment else 0) == expected
    )
    assert parse_ip(expected).header == Ipv4Header(src, dst, protocol, ttl, ident, tos, dont_fragment)
