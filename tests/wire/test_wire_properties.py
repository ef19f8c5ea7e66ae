"""Property tests: round trips, random input, truncation and corruption never escape MalformedPacket."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from wire_strategies import (
    addr4,
    addr6,
    icmpv4_messages,
    icmpv6_messages,
    ipv4_headers,
    ipv6_headers,
    payloads,
    tcp_headers,
    u16,
)

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    Ipv4Header,
    Ipv6Header,
    TcpHeader,
    UdpHeader,
    emit_icmpv4,
    emit_icmpv6,
    emit_ip,
    emit_ipv4,
    emit_ipv6,
    emit_tcp,
    emit_udp,
    parse_icmpv4,
    parse_icmpv6,
    parse_ip,
    parse_ipv4,
    parse_ipv6,
    parse_tcp,
    parse_udp,
    quoted_flow,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
addresses = st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6))
buffer_types: list[Callable[[bytes], Any]] = [bytes, bytearray, memoryview]


# --- parse(emit(x)) == x --------------------------------------------------------------------


@FAST
@given(ipv4_headers(), payloads, st.sampled_from(buffer_types))
def test_ipv4_round_trip(header: Ipv4Header, payload: bytes, wrap: Callable[[bytes], Any]) -> None:
    packet = emit_ipv4(header, payload)
    assert parse_ipv4(wrap(packet)) == (header, payload)


@FAST
@given(ipv6_headers(), payloads, st.sampled_from(buffer_types))
def test_ipv6_round_trip(header: Ipv6Header, payload: bytes, wrap: Callable[[bytes], Any]) -> None:
    packet = emit_ipv6(header, payload)
    assert parse_ipv6(wrap(packet)) == (header, payload)
    assert emit_ipv6(header, payload) == packet


@FAST
@given(tcp_headers(), payloads, addresses, st.sampled_from(buffer_types))
def test_tcp_round_trip(
    header: TcpHeader, payload: bytes, pair: tuple[bytes, bytes], wrap: Callable[[bytes], Any]
) -> None:
    src, dst = pair
    segment = emit_tcp(header, payload, src, dst)
    assert len(segment) % 2 == len(payload) % 2
    assert parse_tcp(wrap(segment), src, dst) == (header, payload)


@FAST
@given(u16, u16, payloads, addresses)
def test_udp_round_trip(src_port: int, dst_port: int, payload: bytes, pair: tuple[bytes, bytes]) -> None:
    src, dst = pair
    datagram = emit_udp(UdpHeader(src_port, dst_port), payload, src, dst)
    assert datagram[6:8] != b"\x00\x00"
    assert parse_udp(datagram, src, dst) == (UdpHeader(src_port, dst_port), payload)


@FAST
@given(icmpv4_messages())
def test_icmpv4_round_trip(message: Icmpv4Message) -> None:
    assert parse_icmpv4(emit_icmpv4(message)) == message


@FAST
@given(icmpv6_messages(), addr6, addr6)
def test_icmpv6_round_trip(message: Icmpv6Message, src: bytes, dst: bytes) -> None:
    assert parse_icmpv6(emit_icmpv6(message, src, dst), src, dst) == message


@FAST
@given(addresses, st.sampled_from([PROTO_TCP, PROTO_UDP]), u16, u16, st.integers(0, 40))
def test_quoted_flow_from_truncated_quote(
    pair: tuple[bytes, bytes], protocol: int, src_port: int, dst_port: int, extra: int
) -> None:
    src, dst = pair
    if protocol == PROTO_TCP:
        transport = emit_tcp(TcpHeader(src_port, dst_port, 1, 2, 0x18, 3), b"x" * 30, src, dst)
    else:
        transport = emit_udp(UdpHeader(src_port, dst_port), b"x" * 30, src, dst)
    packet = emit_ip(src, dst, protocol, transport)
    header_length = 20 if len(src) == 4 else 40
    quote = packet[: header_length + 8 + extra]  # RFC 792 promises header + 8 bytes
    tcp_seq = 1 if protocol == PROTO_TCP else None
    assert quoted_flow(quote) == (src, dst, protocol, src_port, dst_port, tcp_seq)
    assert quoted_flow(packet[: header_length + 4 + extra % 4]).tcp_seq is None  # ports, no sequence
    with pytest.raises(MalformedPacket):
        quoted_flow(packet[: header_length + 3])


# --- random bytes: succeed or MalformedPacket, nothing else ---------------------------------


def only_malformed(parse: Callable[[], object]) -> None:
    try:
        parse()
    except MalformedPacket:
        pass


@FUZZ
@given(st.binary(max_size=120), addresses, st.booleans())
def test_random_bytes_into_every_parser(data: bytes, pair: tuple[bytes, bytes], verify: bool) -> None:
    src, dst = pair
    only_malformed(lambda: parse_ip(data, verify_checksum=verify))
    only_malformed(lambda: parse_ipv4(data, verify_checksum=verify))
    only_malformed(lambda: parse_ipv6(data))
    only_malformed(lambda: parse_tcp(data, src, dst, verify_checksum=verify))
    only_malformed(lambda: parse_udp(data, src, dst, verify_checksum=verify))
    only_malformed(lambda: parse_icmpv4(data, verify_checksum=verify))
    only_malformed(lambda: parse_icmpv6(data, src, dst, verify_checksum=verify))
    only_malformed(lambda: quoted_flow(data))


@FUZZ
@given(
    st.sampled_from([0x45, 0x46, 0x4F, 0x60]),
    st.binary(max_size=100),
    st.lists(st.tuples(st.integers(0, 99), st.integers(0, 255)), max_size=6),
)
def test_random_bytes_behind_a_plausible_first_byte(
    first: int, rest: bytes, pokes: list[tuple[int, int]]
) -> None:
    """Reach the option and extension-header walkers, which fully random bytes rarely do."""
    data = bytearray([first]) + rest
    for position, value in pokes:
        if position < len(data):
            data[position] = value
    only_malformed(lambda: parse_ip(bytes(data), verify_checksum=False))
    only_malformed(lambda: quoted_flow(bytes(data)))
    tcp = bytearray(rest)
    if len(tcp) > 12:
        tcp[12] = first  # a data offset of 4..6 words, options behind it
    only_malformed(lambda: parse_tcp(memoryview(bytes(tcp)), bytes(4), bytes(4), verify_checksum=False))


# --- valid packets, truncated or corrupted --------------------------------------------------


def full_packet(kind: str, src: bytes, dst: bytes, header: TcpHeader, payload: bytes) -> bytes:
    if kind == "tcp":
        return emit_ip(src, dst, PROTO_TCP, emit_tcp(header, payload, src, dst))
    if kind == "udp":
        return emit_ip(
            src, dst, PROTO_UDP, emit_udp(UdpHeader(header.src_port, header.dst_port), payload, src, dst)
        )
    if len(src) == 4:
        message4 = Icmpv4Message(8, ident=header.src_port, seq=header.dst_port, data=payload)
        return emit_ip(src, dst, PROTO_ICMP, emit_icmpv4(message4))
    message6 = Icmpv6Message(128, ident=header.src_port, seq=header.dst_port, data=payload)
    return emit_ip(src, dst, PROTO_ICMPV6, emit_icmpv6(message6, src, dst))


def parse_all_layers(packet: bytes) -> object:
    parsed = parse_ip(packet)
    if parsed.protocol == PROTO_TCP:
        return parse_tcp(parsed.payload, parsed.src, parsed.dst)
    if parsed.protocol == PROTO_UDP:
        return parse_udp(parsed.payload, parsed.src, parsed.dst)
    if parsed.protocol == PROTO_ICMP:
        return parse_icmpv4(parsed.payload)
    if parsed.protocol == PROTO_ICMPV6:
        return parse_icmpv6(parsed.payload, parsed.src, parsed.dst)
    raise AssertionError(f"protocol changed to {parsed.protocol} undetected")


kinds = st.sampled_from(["tcp", "udp", "icmp"])


@settings(max_examples=60, deadline=None)
@given(kinds, addresses, tcp_headers(), payloads)
def test_every_truncation_is_malformed(
    kind: str, pair: tuple[bytes, bytes], header: TcpHeader, payload: bytes
) -> None:
    packet = full_packet(kind, *pair, header, payload)
    parse_all_layers(packet)
    for length in range(len(packet)):
        with pytest.raises(MalformedPacket):
            parse_ip(packet[:length])


def test_truncated_tcp_segment_fails_its_checksum() -> None:
    """Without IP's length, only the checksum (and the data offset) can catch a short segment."""
    src, dst = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    header = TcpHeader(1, 2, 3, 4, 0x18, 5)
    header.options.timestamp = (7, 8)
    segment = emit_tcp(header, random.Random(5).randbytes(301), src, dst)
    for length in range(len(segment)):
        with pytest.raises(MalformedPacket):
            parse_tcp(segment[:length], src, dst)


@settings(max_examples=80, deadline=None)
@given(kinds, addresses, tcp_headers(), payloads, st.data())
def test_a_flipped_byte_is_caught(
    kind: str, pair: tuple[bytes, bytes], header: TcpHeader, payload: bytes, data: st.DataObject
) -> None:
    src, dst = pair
    packet = full_packet(kind, src, dst, header, payload)
    ip_header = 20 if len(src) == 4 else 40
    # IPv4 protects its header; over IPv6 only the addresses (via the pseudo-header) are covered.
    positions = range(len(packet)) if len(src) == 4 else [*range(8, 40), *range(40, len(packet))]
    position = data.draw(st.sampled_from(list(positions)))
    flipped = bytearray(packet)
    flipped[position] ^= data.draw(st.integers(1, 255))
    # 0x45 -> 0x65 reads as IPv6, which has no header checksum: a different question.
    assume(flipped[0] >> 4 == packet[0] >> 4)
    if kind == "udp" and len(src) == 4:
        assume(flipped[ip_header + 6 : ip_header + 8] != b"\x00\x00")  # zero means "no checksum" on IPv4
    with pytest.raises(MalformedPacket):
        parse_all_layers(bytes(flipped))


def test_ipv4_header_flip_raises_checksum_error_specifically() -> None:
    packet = emit_ip(bytes(4), bytes([1, 2, 3, 4]), PROTO_UDP, b"12345678")
    for position in (1, 4, 5, 8, 12, 19):
        flipped = bytearray(packet)
        flipped[position] ^= 0x10
        with pytest.raises(ChecksumError):
            parse_ip(flipped)
