"""Round trips through every codec with hand-picked values."""

from __future__ import annotations

import pytest

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_ECHO_REQUEST,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV4_PORT_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_PACKET_TOO_BIG,
    PROTO_AH,
    PROTO_HOPOPTS,
    PROTO_ICMP,
    PROTO_IPV6_DSTOPTS,
    PROTO_IPV6_FRAGMENT,
    PROTO_IPV6_ROUTING,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    Ipv4Header,
    Ipv6Header,
    TcpFlags,
    TcpHeader,
    TcpOptions,
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

SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([93, 184, 216, 34])
SRC6 = bytes.fromhex("fd000000000000000000000000000001")
DST6 = bytes.fromhex("2001db80000000000000000000000042")


def test_ipv4_round_trip_with_options_and_padding() -> None:
    header = Ipv4Header(
        SRC4,
        DST4,
        PROTO_UDP,
        ttl=3,
        identification=0xBEEF,
        dscp_ecn=0xB8,
        dont_fragment=False,
        more_fragments=True,
        fragment_offset=185,
        options=b"\x94\x04\x00\x00",
    )  # router alert
    packet = emit_ipv4(header, b"payload")
    parsed, payload = parse_ipv4(packet + b"\x00" * 6)  # Ethernet-style trailing padding
    assert parsed == header
    assert payload == b"payload"
    assert parsed.is_fragment


def test_ipv4_bad_checksum_and_skip() -> None:
    packet = bytearray(emit_ipv4(Ipv4Header(SRC4, DST4, PROTO_TCP), b"x"))
    packet[8] ^= 1  # TTL
    with pytest.raises(ChecksumError):
        parse_ipv4(packet)
    header, _ = parse_ipv4(packet, verify_checksum=False)
    assert header.ttl == 65


def test_ipv6_round_trip_with_every_extension_header() -> None:
    extensions = (
        (PROTO_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0])),
        (PROTO_IPV6_DSTOPTS, bytes([0, 1, 1, 12]) + bytes(12)),
        (PROTO_IPV6_ROUTING, bytes([0, 0, 4, 0, 0, 0, 0, 0])),
        (PROTO_AH, bytes([0, 4, 0, 0]) + bytes(20)),
        (PROTO_IPV6_FRAGMENT, bytes([0, 0, 0, 0, 0, 0, 0, 7])),
    )
    header = Ipv6Header(
        SRC6,
        DST6,
        PROTO_UDP,
        hop_limit=9,
        traffic_class=0x2E,
        flow_label=0xABCDE,
        extension_headers=extensions,
    )
    packet = emit_ipv6(header, b"data")
    parsed, payload = parse_ipv6(packet)
    # emit links the chain, so the raw Next Header bytes differ from the input; the rest matches.
    assert [kind for kind, _ in parsed.extension_headers] == [kind for kind, _ in extensions]
    assert [raw[1:] for _, raw in parsed.extension_headers] == [raw[1:] for _, raw in extensions]
    assert (parsed.src, parsed.dst, parsed.next_header, parsed.hop_limit) == (SRC6, DST6, PROTO_UDP, 9)
    assert (parsed.traffic_class, parsed.flow_label) == (0x2E, 0xABCDE)
    assert payload == b"data"
    assert parsed.fragment == (0, False, 7)
    assert not parsed.is_fragment  # atomic fragment (RFC 6946)
    assert emit_ipv6(parsed, payload) == packet


def test_ip_dispatch_and_fragment_reporting() -> None:
    packet = emit_ip(SRC4, DST4, PROTO_TCP, b"abc", ttl=7, ident=9)
    parsed = parse_ip(packet)
    assert (parsed.version, parsed.src, parsed.dst, parsed.protocol, parsed.payload) == (
        4,
        SRC4,
        DST4,
        PROTO_TCP,
        b"abc",
    )
    assert not parsed.is_fragment
    packet6 = emit_ip(SRC6, DST6, PROTO_UDP, b"xyz", ttl=5)
    parsed6 = parse_ip(packet6)
    assert (parsed6.version, parsed6.protocol, parsed6.payload) == (6, PROTO_UDP, b"xyz")
    frag6 = emit_ipv6(
        Ipv6Header(
            SRC6, DST6, PROTO_UDP, extension_headers=((PROTO_IPV6_FRAGMENT, bytes([0, 0, 0, 1, 0, 0, 0, 1])),)
        ),
        b"first",
    )
    assert parse_ip(frag6).is_fragment
    frag4 = emit_ipv4(Ipv4Header(SRC4, DST4, PROTO_UDP, fragment_offset=3), b"later")
    assert parse_ip(frag4).is_fragment
    with pytest.raises(MalformedPacket):
        parse_ip(b"\x50" + bytes(40))
    with pytest.raises(MalformedPacket):
        parse_ip(b"")


def test_tcp_round_trip_syn_options() -> None:
    options = TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamp=(123456, 0))
    header = TcpHeader(49152, 443, 0xFFFFFFFF, 0, int(TcpFlags.SYN), 64240, options=options)
    segment = emit_tcp(header, b"", SRC4, DST4)
    assert len(segment) == 40
    parsed, payload = parse_tcp(segment, SRC4, DST4)
    assert parsed == header
    assert payload == b""


def test_tcp_round_trip_data_with_timestamps_and_sack() -> None:
    header = TcpHeader(
        443,
        49152,
        1000,
        2000,
        int(TcpFlags.ACK | TcpFlags.PSH),
        501,
        options=TcpOptions(timestamp=(5, 6), sack_blocks=((3000, 4000), (5000, 6000))),
    )
    segment = emit_tcp(header, b"odd-length payload!", SRC6, DST6)
    parsed, payload = parse_tcp(memoryview(segment), SRC6, DST6)
    assert parsed == header
    assert payload == b"odd-length payload!"
    assert isinstance(payload, bytes)


def test_tcp_unknown_options_listed_and_reemitted() -> None:
    header = TcpHeader(
        1, 2, 3, 4, 0x10, 5, options=TcpOptions(mss=536, unknown=((30, b"\x01\x02"), (253, b"")))
    )
    segment = emit_tcp(header, b"", SRC4, DST4)
    parsed, _ = parse_tcp(segment, SRC4, DST4)
    assert parsed.options.unknown == ((30, b"\x01\x02"), (253, b""))
    assert parsed == header


def test_tcp_checksum_checked() -> None:
    segment = bytearray(emit_tcp(TcpHeader(1, 2, 3, 4, 0x18, 5), b"hello", SRC4, DST4))
    segment[-1] ^= 0x40
    with pytest.raises(ChecksumError):
        parse_tcp(segment, SRC4, DST4)
    _, payload = parse_tcp(segment, SRC4, DST4, verify_checksum=False)
    assert payload == b"hell/"


@pytest.mark.parametrize(
    "options",
    [b"\x02", b"\x02\x00\x00\x00", b"\x02\x01\x00\x00", b"\x08\x0e" + bytes(10), b"\x01\x01\x01\x05"],
)
def test_tcp_malformed_option_lengths(options: bytes) -> None:
    padded = options + b"\x00" * (-len(options) % 4)
    header = bytearray(emit_tcp(TcpHeader(1, 2, 3, 4, 0x10, 5), b"", SRC4, DST4))
    header[12] = ((20 + len(padded)) // 4) << 4
    segment = bytes(header) + padded
    with pytest.raises(MalformedPacket):
        parse_tcp(segment, SRC4, DST4, verify_checksum=False)


def test_udp_round_trip_and_zero_checksum_rules() -> None:
    datagram = emit_udp(UdpHeader(5353, 53), b"query", SRC4, DST4)
    assert parse_udp(datagram, SRC4, DST4) == (UdpHeader(5353, 53), b"query")
    unchecked = datagram[:6] + b"\x00\x00" + datagram[8:]
    assert parse_udp(unchecked, SRC4, DST4) == (UdpHeader(5353, 53), b"query")
    datagram6 = emit_udp(UdpHeader(5353, 53), b"query", SRC6, DST6)
    assert parse_udp(datagram6, SRC6, DST6)[1] == b"query"
    with pytest.raises(ChecksumError):
        parse_udp(datagram6[:6] + b"\x00\x00" + datagram6[8:], SRC6, DST6)


def test_udp_computed_zero_is_sent_as_ffff() -> None:
    # A payload word equal to the checksum of the zero-payload datagram makes the sum fold to
    # 0xFFFF, so the computed checksum is 0 and must go on the wire as 0xFFFF.
    header = UdpHeader(1, 2)
    payload = emit_udp(header, b"\x00\x00", SRC4, DST4)[6:8]
    datagram = emit_udp(header, payload, SRC4, DST4)
    assert datagram[6:8] == b"\xff\xff"
    assert parse_udp(datagram, SRC4, DST4)[1] == payload


def test_icmpv4_echo_and_errors() -> None:
    echo = Icmpv4Message(ICMPV4_ECHO_REQUEST, ident=0x1234, seq=7, data=b"ping!")
    assert parse_icmpv4(emit_icmpv4(echo)) == echo
    quoted = emit_ip(SRC4, DST4, PROTO_UDP, emit_udp(UdpHeader(40000, 53), b"q", SRC4, DST4))
    unreachable = Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_PORT_UNREACHABLE, data=quoted[:28])
    parsed = parse_icmpv4(emit_icmpv4(unreachable))
    assert parsed == unreachable
    assert parsed.is_error
    assert quoted_flow(parsed.original) == (SRC4, DST4, PROTO_UDP, 40000, 53, None)
    frag_needed = Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_FRAGMENTATION_NEEDED, mtu=1280, data=quoted)
    assert parse_icmpv4(emit_icmpv4(frag_needed)).mtu == 1280


def test_icmpv6_echo_and_packet_too_big() -> None:
    reply = Icmpv6Message(ICMPV6_ECHO_REPLY, ident=1, seq=2, data=b"pong")
    message = emit_icmpv6(reply, SRC6, DST6)
    assert parse_icmpv6(message, SRC6, DST6) == reply
    with pytest.raises(ChecksumError):
        parse_icmpv6(message, DST6, SRC6[:-1] + b"\x02")
    quoted = emit_ip(SRC6, DST6, PROTO_TCP, emit_tcp(TcpHeader(50000, 443, 1, 0, 2, 100), b"", SRC6, DST6))
    too_big = Icmpv6Message(ICMPV6_PACKET_TOO_BIG, mtu=1400, data=quoted)
    parsed = parse_icmpv6(emit_icmpv6(too_big, DST6, SRC6), DST6, SRC6)
    assert parsed == too_big
    assert quoted_flow(parsed.original) == (SRC6, DST6, PROTO_TCP, 50000, 443, 1)


def test_quoted_flow_of_icmp_echo_uses_identifier() -> None:
    inner = emit_icmpv4(Icmpv4Message(ICMPV4_ECHO_REQUEST, ident=77, seq=1))
    quoted = emit_ip(SRC4, DST4, PROTO_ICMP, inner)
    assert quoted_flow(quoted) == (SRC4, DST4, PROTO_ICMP, 77, 77, None)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_emitters_accept_any_bytes_like_payload(wrap: type) -> None:
    payload = b"some payload bytes"
    header = TcpHeader(1, 2, 3, 4, 0x18, 5, options=TcpOptions(timestamp=(1, 2)))
    assert emit_tcp(header, wrap(payload), SRC4, DST4) == emit_tcp(header, payload, SRC4, DST4)
    assert emit_udp(UdpHeader(1, 2), wrap(payload), SRC6, DST6) == emit_udp(
        UdpHeader(1, 2), payload, SRC6, DST6
    )
    assert emit_ip(SRC4, DST4, PROTO_UDP, wrap(payload)) == emit_ip(SRC4, DST4, PROTO_UDP, payload)
    assert emit_ip(SRC6, DST6, PROTO_UDP, wrap(payload)) == emit_ip(SRC6, DST6, PROTO_UDP, payload)
    options4 = Ipv4Header(SRC4, DST4, PROTO_UDP, options=b"\x94\x04\x00\x00")
    assert emit_ipv4(options4, wrap(payload)) == emit_ipv4(options4, payload)
