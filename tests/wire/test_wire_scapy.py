"""scapy as an independent oracle.

Packets scapy builds parse to the same fields with our codecs; packets we emit dissect to the same
fields in scapy, and scapy's recomputed checksums give back our bytes exactly. AH is only checked
at the IPv6 layer: scapy computes no upper-layer checksum through it.
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import (
    addr4,
    addr6,
    icmpv4_messages,
    icmpv6_messages,
    ipv4_headers,
    payloads,
    tcp_headers,
    u8,
    u16,
    u32,
)

from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_PACKET_TOO_BIG,
    PROTO_AH,
    PROTO_HOPOPTS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_IPV6_DSTOPTS,
    PROTO_IPV6_FRAGMENT,
    PROTO_IPV6_NONXT,
    PROTO_IPV6_ROUTING,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    Ipv4Header,
    Ipv6Header,
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
    parse_tcp,
    parse_udp,
    quoted_flow,
)

pytest.importorskip("scapy.all")
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror
from scapy.layers.inet import TCPOptions as SCAPY_TCP_OPTIONS
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6PacketTooBig,
    ICMPv6TimeExceeded,
    IPerror6,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    in6_chksum,
)
from scapy.layers.ipsec import AH
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

ORACLE = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
addresses = st.one_of(st.tuples(addr4, addr4), st.tuples(addr6, addr6))


def ntoa(address: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(address) == 4 else socket.AF_INET6, address)


def ip_layer(src: bytes, dst: bytes) -> Any:
    return IP(src=ntoa(src), dst=ntoa(dst)) if len(src) == 4 else IPv6(src=ntoa(src), dst=ntoa(dst))


SCAPY_NAMED_KINDS = frozenset(SCAPY_TCP_OPTIONS[0])


def unnamed_by_scapy(header: TcpHeader) -> TcpHeader:
    """Keep only unknown options scapy also leaves raw (it decodes kinds it names, e.g. 34 TFO)."""
    header.options.unknown = tuple(
        item for item in header.options.unknown if item[0] not in SCAPY_NAMED_KINDS
    )
    return header


scapy_tcp_headers = tcp_headers().map(unnamed_by_scapy)


def scapy_tcp_options(options: TcpOptions) -> list[tuple[Any, Any]]:
    """Our options as a scapy option list, in another order than ours, with a stray NOP."""
    listed: list[tuple[Any, Any]] = []
    if options.sack_blocks:
        listed.append(("SAck", tuple(edge for block in options.sack_blocks for edge in block)))
    if options.window_scale is not None:
        listed.append(("WScale", options.window_scale))
    if options.timestamp is not None:
        listed.append(("Timestamp", options.timestamp))
    listed.append(("NOP", None))
    if options.sack_permitted:
        listed.append(("SAckOK", b""))
    if options.mss is not None:
        listed.append(("MSS", options.mss))
    listed.extend(options.unknown)
    return listed


def scapy_tcp(header: TcpHeader) -> Any:
    return TCP(
        sport=header.src_port,
        dport=header.dst_port,
        seq=header.seq,
        ack=header.ack,
        flags=header.flags,
        window=header.window,
        urgptr=header.urgent,
        options=scapy_tcp_options(header.options),
    )


def options_seen_by_scapy(segment: Any) -> TcpOptions:
    found = {name: value for name, value in segment.options if isinstance(name, str)}
    edges = found.get("SAck", ())
    return TcpOptions(
        mss=found.get("MSS"),
        window_scale=found.get("WScale"),
        sack_permitted="SAckOK" in found,
        sack_blocks=tuple(zip(edges[::2], edges[1::2])),
        timestamp=found.get("Timestamp"),
        unknown=tuple((kind, bytes(body)) for kind, body in segment.options if isinstance(kind, int)),
    )


def scapy_icmpv6_checksum(upper_layer: Any, message: bytes) -> int:
    return int(in6_chksum(PROTO_ICMPV6, upper_layer, message))  # type: ignore[no-untyped-call]


def dissect(packet: bytes) -> Any:
    return IP(packet) if packet[0] >> 4 == 4 else IPv6(packet)


def rebuilt(packet: bytes, transport: type) -> bytes:
    """scapy's dissection of ``packet`` with every checksum deleted and recomputed."""
    dissected = dissect(packet)
    if IP in dissected:
        del dissected[IP].chksum
    layer = dissected[transport]
    if hasattr(layer, "chksum"):
        del layer.chksum
    else:
        del layer.cksum
    return bytes(dissected)


# --- scapy builds, we parse ----------------------------------------------------------------


@ORACLE
@given(ipv4_headers(), scapy_tcp_headers, payloads)
def test_scapy_ipv4_tcp_parses_to_same_fields(ip: Ipv4Header, tcp: TcpHeader, payload: bytes) -> None:
    flags = ("DF+" if ip.dont_fragment else "") + ("MF" if ip.more_fragments else "")
    built = bytes(
        IP(
            src=ntoa(ip.src),
            dst=ntoa(ip.dst),
            ttl=ip.ttl,
            id=ip.identification,
            tos=ip.dscp_ecn,
            flags=flags.strip("+"),
            frag=ip.fragment_offset,
        )
        / scapy_tcp(tcp)
        / Raw(payload)
    )
    packet = parse_ip(built)
    ip.protocol = PROTO_TCP
    ip.options = b""
    assert packet.header == ip
    assert packet.is_fragment == ip.is_fragment
    assert parse_tcp(packet.payload, packet.src, packet.dst) == (tcp, payload)


@st.composite
def scapy_extension_chains(draw: st.DrawFn) -> tuple[list[Any], list[int]]:
    """scapy IPv6 extension headers (routing with segments-left 0, so checksums use ``dst``)."""
    layers: list[Any] = []
    kinds: list[int] = []
    if draw(st.booleans()):
        layers.append(IPv6ExtHdrHopByHop())
        kinds.append(PROTO_HOPOPTS)
    for kind in draw(
        st.lists(st.sampled_from([PROTO_IPV6_ROUTING, PROTO_IPV6_DSTOPTS, PROTO_IPV6_FRAGMENT]), max_size=3)
    ):
        if kind == PROTO_IPV6_ROUTING:
            hops = [ntoa(draw(addr6)) for _ in range(draw(st.integers(0, 2)))]
            layers.append(IPv6ExtHdrRouting(addresses=hops, segleft=0))
        elif kind == PROTO_IPV6_DSTOPTS:
            layers.append(IPv6ExtHdrDestOpt())
        else:
            layers.append(IPv6ExtHdrFragment(id=draw(u32), offset=0, m=0))  # atomic: still whole
        kinds.append(kind)
    return layers, kinds


def stacked(*layers: Any) -> Any:
    packet = layers[0]
    for layer in layers[1:]:
        packet = packet / layer
    return packet


@ORACLE
@given(
    addr6,
    addr6,
    u8,
    st.integers(0, 0xFFFFF),
    scapy_extension_chains(),
    st.booleans(),
    scapy_tcp_headers,
    payloads,
)
def test_scapy_ipv6_extension_headers_parse(
    src: bytes,
    dst: bytes,
    traffic_class: int,
    flow_label: int,
    chain: tuple[list[Any], list[int]],
    use_tcp: bool,
    tcp: TcpHeader,
    payload: bytes,
) -> None:
    layers, kinds = chain
    upper = scapy_tcp(tcp) if use_tcp else UDP(sport=tcp.src_port, dport=tcp.dst_port)
    base = IPv6(src=ntoa(src), dst=ntoa(dst), tc=traffic_class, fl=flow_label, hlim=tcp.window & 0xFF)
    built = bytes(stacked(base, *layers, upper, Raw(payload)))
    packet = parse_ip(built)
    assert isinstance(packet.header, Ipv6Header)
    assert (packet.src, packet.dst, packet.protocol) == (src, dst, PROTO_TCP if use_tcp else PROTO_UDP)
    assert (packet.header.traffic_class, packet.header.flow_label) == (traffic_class, flow_label)
    assert packet.header.hop_limit == tcp.window & 0xFF
    assert [kind for kind, _ in packet.header.extension_headers] == kinds
    assert [raw for _, raw in packet.header.extension_headers] == [
        bytes(layer)[: len(raw)]
        for layer, (_, raw) in zip(built_layers(built, len(layers)), packet.header.extension_headers)
    ]
    assert not packet.is_fragment
    if use_tcp:
        assert parse_tcp(packet.payload, src, dst) == (tcp, payload)
    else:
        assert parse_udp(packet.payload, src, dst) == (UdpHeader(tcp.src_port, tcp.dst_port), payload)


def built_layers(packet: bytes, count: int) -> list[Any]:
    """The first ``count`` extension-header layers of scapy's own dissection of ``packet``."""
    layer = IPv6(packet).payload
    found = []
    for _ in range(count):
        found.append(layer)
        layer = layer.payload
    return found


@ORACLE
@given(addr6, addr6, u32, u32, st.integers(1, 4), st.integers(0, 0x1FFF), st.booleans(), payloads)
def test_scapy_ipv6_ah_and_real_fragments_walk(
    src: bytes, dst: bytes, spi: int, seq: int, icv_words: int, offset: int, more: bool, payload: bytes
) -> None:
    icv = bytes(range(icv_words * 8 - 4))  # AH length stays a multiple of 8 in IPv6
    ah = AH(nh=PROTO_IPV6_FRAGMENT, spi=spi, seq=seq, icv=icv, payloadlen=(12 + len(icv)) // 4 - 2)
    fragment = IPv6ExtHdrFragment(nh=PROTO_IPV6_NONXT, id=spi, offset=offset, m=int(more))
    built = bytes(IPv6(src=ntoa(src), dst=ntoa(dst)) / IPv6ExtHdrHopByHop() / ah / fragment / Raw(payload))
    packet = parse_ip(built)
    assert isinstance(packet.header, Ipv6Header)
    assert packet.protocol == PROTO_IPV6_NONXT
    assert [kind for kind, _ in packet.header.extension_headers] == [
        PROTO_HOPOPTS,
        PROTO_AH,
        PROTO_IPV6_FRAGMENT,
    ]
    assert len(packet.header.extension_headers[1][1]) == 12 + len(icv)
    assert packet.header.fragment == (offset, more, spi)
    assert packet.is_fragment == (offset != 0 or more)
    assert packet.payload == payload


@ORACLE
@given(addresses, u16, u16, payloads)
def test_scapy_udp_parses(pair: tuple[bytes, bytes], src_port: int, dst_port: int, payload: bytes) -> None:
    built = bytes(ip_layer(*pair) / UDP(sport=src_port, dport=dst_port) / Raw(payload))
    packet = parse_ip(built)
    assert parse_udp(packet.payload, packet.src, packet.dst) == (UdpHeader(src_port, dst_port), payload)


def quote_of(src: bytes, dst: bytes, src_port: int, dst_port: int, use_tcp: bool) -> Any:
    error_ip = (
        IPerror(src=ntoa(src), dst=ntoa(dst)) if len(src) == 4 else IPerror6(src=ntoa(src), dst=ntoa(dst))
    )
    transport = (
        TCPerror(sport=src_port, dport=dst_port) if use_tcp else UDPerror(sport=src_port, dport=dst_port)
    )
    return error_ip / transport


@ORACLE
@given(addr4, addr4, u16, u16, payloads, u16, st.booleans())
def test_scapy_icmpv4_parses(
    src: bytes, dst: bytes, ident: int, seq: int, data: bytes, mtu: int, use_tcp: bool
) -> None:
    outer = IP(src=ntoa(dst), dst=ntoa(src))
    echo = parse_ip(bytes(outer / ICMP(type=8, id=ident, seq=seq) / Raw(data)))
    assert echo.protocol == PROTO_ICMP
    assert parse_icmpv4(echo.payload) == Icmpv4Message(8, 0, ident=ident, seq=seq, data=data)
    quote = quote_of(src, dst, ident, seq, use_tcp)
    for kind, code in ((3, 3), (3, 4), (11, 0), (3, 13)):
        error = ICMP(type=kind, code=code, nexthopmtu=mtu if code == ICMPV4_FRAGMENTATION_NEEDED else 0)
        message = parse_icmpv4(parse_ip(bytes(outer / error / quote)).payload)
        assert (message.type, message.code, message.is_error) == (kind, code, True)
        assert message.mtu == (mtu if code == ICMPV4_FRAGMENTATION_NEEDED else 0)
        assert message.original == bytes(quote)
        assert quoted_flow(message.original) == (
            src,
            dst,
            PROTO_TCP if use_tcp else PROTO_UDP,
            ident,
            seq,
            0 if use_tcp else None,
        )


@ORACLE
@given(addr6, addr6, u16, u16, payloads, u32, st.booleans())
def test_scapy_icmpv6_parses(
    src: bytes, dst: bytes, ident: int, seq: int, data: bytes, mtu: int, use_tcp: bool
) -> None:
    outer = IPv6(src=ntoa(dst), dst=ntoa(src))
    for layer, kind in ((ICMPv6EchoRequest, 128), (ICMPv6EchoReply, 129)):
        packet = parse_ip(bytes(outer / layer(id=ident, seq=seq, data=data)))
        assert packet.protocol == PROTO_ICMPV6
        assert parse_icmpv6(packet.payload, dst, src) == Icmpv6Message(
            kind, 0, ident=ident, seq=seq, data=data
        )
    quote = quote_of(src, dst, ident, seq, use_tcp)
    for error, kind in (
        (ICMPv6DestUnreach(code=4), ICMPV6_DEST_UNREACHABLE),
        (ICMPv6PacketTooBig(mtu=mtu), ICMPV6_PACKET_TOO_BIG),
        (ICMPv6TimeExceeded(code=1), 3),
    ):
        message = parse_icmpv6(parse_ip(bytes(outer / error / quote)).payload, dst, src)
        assert (message.type, message.code, message.is_error) == (kind, error.code, True)
        assert message.mtu == (mtu if kind == ICMPV6_PACKET_TOO_BIG else 0)
        assert message.original == bytes(quote)
        assert quoted_flow(message.original) == (
            src,
            dst,
            PROTO_TCP if use_tcp else PROTO_UDP,
            ident,
            seq,
            0 if use_tcp else None,
        )


# --- we build, scapy dissects and recomputes ---------------------------------------------


@ORACLE
@given(
    ipv4_headers(),
    scapy_tcp_headers,
    payloads,
    st.sampled_from([b"", b"\x94\x04\x00\x00", b"\x01\x01\x01\x01"]),
)
def test_our_ipv4_tcp_dissects_in_scapy(
    ip: Ipv4Header, tcp: TcpHeader, payload: bytes, options: bytes
) -> None:
    ip.protocol = PROTO_TCP
    ip.options = options
    ip.fragment_offset = 0  # scapy leaves later fragments undissected; see the next test
    packet = emit_ipv4(ip, emit_tcp(tcp, payload, ip.src, ip.dst))
    seen = IP(packet)
    assert (seen.src, seen.dst, seen.proto, seen.ttl, seen.id, seen.tos, seen.frag) == (
        ntoa(ip.src),
        ntoa(ip.dst),
        PROTO_TCP,
        ip.ttl,
        ip.identification,
        ip.dscp_ecn,
        ip.fragment_offset,
    )
    assert (ip.dont_fragment, ip.more_fragments) == (seen.flags.DF, seen.flags.MF)
    segment = seen[TCP]
    assert (segment.sport, segment.dport, segment.seq, segment.ack) == (
        tcp.src_port,
        tcp.dst_port,
        tcp.seq,
        tcp.ack,
    )
    assert (int(segment.flags), segment.window, segment.urgptr) == (tcp.flags, tcp.window, tcp.urgent)
    assert options_seen_by_scapy(segment) == tcp.options
    assert bytes(segment.payload) == payload
    assert rebuilt(packet, TCP) == packet


@ORACLE
@given(ipv4_headers(), payloads)
def test_our_ipv4_header_checksum_matches_scapy(ip: Ipv4Header, payload: bytes) -> None:
    ip.options = ip.options if ip.options in (b"", b"\x94\x04\x00\x00") else b""
    if ip.protocol == 2:
        ip.protocol = 253  # scapy's IGMP layer adds a Router Alert option when it rebuilds
    packet = emit_ipv4(ip, payload)
    seen = IP(packet)
    assert (seen.proto, seen.frag, seen.flags.MF, seen.flags.DF) == (
        ip.protocol,
        ip.fragment_offset,
        ip.more_fragments,
        ip.dont_fragment,
    )
    assert seen.ihl * 4 == 20 + len(ip.options)
    del seen.chksum
    assert bytes(seen) == packet


def our_extension(kind: int, units: int, draw_bytes: bytes) -> tuple[int, bytes]:
    """A well-formed extension header scapy will dissect and rebuild unchanged."""
    if kind == PROTO_IPV6_FRAGMENT:
        return kind, bytes(2) + b"\x00\x00" + draw_bytes[:4].ljust(4, b"\x00")  # atomic
    if kind == PROTO_IPV6_ROUTING:
        return kind, bytes((0, 2 * units, 0, 0)) + bytes(4) + bytes(16 * units)
    padding = 8 * units + 4
    return kind, bytes((0, units, 1, padding)) + bytes(padding)  # one PadN option


@ORACLE
@given(
    addr6,
    addr6,
    u8,
    st.integers(0, 0xFFFFF),
    st.lists(
        st.tuples(
            st.sampled_from([PROTO_IPV6_ROUTING, PROTO_IPV6_DSTOPTS, PROTO_IPV6_FRAGMENT]), st.integers(0, 2)
        ),
        max_size=3,
    ),
    st.booleans(),
    st.booleans(),
    scapy_tcp_headers,
    payloads,
)
def test_our_ipv6_with_extensions_dissects_in_scapy(
    src: bytes,
    dst: bytes,
    hop_limit: int,
    flow_label: int,
    plan: list[tuple[int, int]],
    hop_by_hop: bool,
    use_tcp: bool,
    tcp: TcpHeader,
    payload: bytes,
) -> None:
    extensions = [our_extension(kind, units, tcp.seq.to_bytes(4, "big")) for kind, units in plan]
    if hop_by_hop:
        extensions.insert(0, our_extension(PROTO_HOPOPTS, 0, b""))
    protocol = PROTO_TCP if use_tcp else PROTO_UDP
    header = Ipv6Header(src, dst, protocol, hop_limit, tcp.window & 0xFF, flow_label, tuple(extensions))
    if use_tcp:
        transport = emit_tcp(tcp, payload, src, dst)
    else:
        transport = emit_udp(UdpHeader(tcp.src_port, tcp.dst_port), payload, src, dst)
    packet = emit_ipv6(header, transport)
    seen = IPv6(packet)
    assert (seen.src, seen.dst, seen.hlim, seen.tc, seen.fl) == (
        ntoa(src),
        ntoa(dst),
        hop_limit,
        tcp.window & 0xFF,
        flow_label,
    )
    layer = seen.payload
    for kind, raw in extensions:
        expected_class = {
            PROTO_HOPOPTS: IPv6ExtHdrHopByHop,
            PROTO_IPV6_ROUTING: IPv6ExtHdrRouting,
            PROTO_IPV6_DSTOPTS: IPv6ExtHdrDestOpt,
            PROTO_IPV6_FRAGMENT: IPv6ExtHdrFragment,
        }[kind]
        assert isinstance(layer, expected_class)
        assert len(raw) == len(bytes(layer)) - len(bytes(layer.payload))
        layer = layer.payload
    if use_tcp:
        assert isinstance(layer, TCP)
        assert options_seen_by_scapy(layer) == tcp.options
        assert rebuilt(packet, TCP) == packet
    else:
        assert isinstance(layer, UDP)
        assert (layer.sport, layer.dport, layer.len) == (tcp.src_port, tcp.dst_port, 8 + len(payload))
        assert rebuilt(packet, UDP) == packet
    assert bytes(layer.payload) == payload


@ORACLE
@given(addresses, u16, u16, payloads)
def test_our_udp_dissects_in_scapy(
    pair: tuple[bytes, bytes], src_port: int, dst_port: int, payload: bytes
) -> None:
    src, dst = pair
    packet = emit_ip(src, dst, PROTO_UDP, emit_udp(UdpHeader(src_port, dst_port), payload, src, dst))
    seen = dissect(packet)[UDP]
    assert (seen.sport, seen.dport, seen.len, bytes(seen.payload)) == (
        src_port,
        dst_port,
        8 + len(payload),
        payload,
    )
    assert rebuilt(packet, UDP) == packet


@ORACLE
@given(icmpv4_messages(), addr4, addr4)
def test_our_icmpv4_checksum_matches_scapy(message: Icmpv4Message, src: bytes, dst: bytes) -> None:
    encoded = emit_icmpv4(message)
    assert scapy_checksum(encoded[:2] + b"\x00\x00" + encoded[4:]) == int.from_bytes(encoded[2:4], "big")
    packet = emit_ip(src, dst, PROTO_ICMP, encoded)
    if message.type in (0, 8):
        seen = ICMP(encoded)
        assert (seen.type, seen.code) == (message.type, message.code)
        assert (seen.id, seen.seq, bytes(seen.payload)) == (message.ident, message.seq, message.data)
        assert rebuilt(packet, ICMP) == packet
    if (message.type, message.code) == (ICMPV4_DEST_UNREACHABLE, ICMPV4_FRAGMENTATION_NEEDED):
        assert ICMP(encoded).nexthopmtu == message.mtu


@ORACLE
@given(icmpv6_messages(), addr6, addr6)
def test_our_icmpv6_checksum_matches_scapy(message: Icmpv6Message, src: bytes, dst: bytes) -> None:
    encoded = emit_icmpv6(message, src, dst)
    packet = emit_ip(src, dst, PROTO_ICMPV6, encoded)
    unchecked = encoded[:2] + b"\x00\x00" + encoded[4:]
    scapy_view = IPv6(packet)
    assert scapy_icmpv6_checksum(scapy_view.payload, unchecked) == int.from_bytes(encoded[2:4], "big")
    if message.type in (128, 129):
        assert (scapy_view.payload.id, scapy_view.payload.seq, scapy_view.payload.data) == (
            message.ident,
            message.seq,
            message.data,
        )
        assert rebuilt(packet, type(scapy_view.payload)) == packet
    if message.type == ICMPV6_PACKET_TOO_BIG:
        assert scapy_view.payload.mtu == message.mtu


@ORACLE
@given(addresses, u16, u16, st.booleans(), st.integers(0, 64))
def test_our_icmp_errors_with_quotes_dissect_in_scapy(
    pair: tuple[bytes, bytes], src_port: int, dst_port: int, use_tcp: bool, keep: int
) -> None:
    src, dst = pair
    if use_tcp:
        transport = emit_tcp(TcpHeader(src_port, dst_port, 1, 2, 0x18, 3), b"payload", src, dst)
    else:
        transport = emit_udp(UdpHeader(src_port, dst_port), b"payload", src, dst)
    original = emit_ip(src, dst, PROTO_TCP if use_tcp else PROTO_UDP, transport)
    if use_tcp:
        keep = max(keep, 12)  # scapy dissects a quoted TCP header only when all 20 bytes are there
    quote = original[: (20 if len(src) == 4 else 40) + 8 + keep]
    seen: Any
    error_class: Any
    if len(src) == 4:
        packet = emit_ip(dst, src, PROTO_ICMP, emit_icmpv4(Icmpv4Message(3, 3, data=quote)))
        seen = IP(packet)
        error_class = IPerror
        assert (seen[ICMP].type, seen[ICMP].code) == (3, 3)
        message = packet[20:]
        assert scapy_checksum(message[:2] + bytes(2) + message[4:]) == int.from_bytes(message[2:4], "big")
    else:
        packet = emit_ip(dst, src, PROTO_ICMPV6, emit_icmpv6(Icmpv6Message(1, 4, data=quote), dst, src))
        seen = IPv6(packet)
        error_class = IPerror6
        assert (seen[ICMPv6DestUnreach].type, seen[ICMPv6DestUnreach].code) == (1, 4)
        # scapy rewrites the quoted transport checksum on rebuild, so compare its ICMPv6 checksum.
        message = packet[40:]
        unchecked = message[:2] + bytes(2) + message[4:]
        assert scapy_icmpv6_checksum(seen.payload, unchecked) == int.from_bytes(message[2:4], "big")
    assert seen[error_class].src == ntoa(src)
    assert (seen[error_class].payload.sport, seen[error_class].payload.dport) == (src_port, dst_port)
    assert quoted_flow(quote) == (
        src,
        dst,
        PROTO_TCP if use_tcp else PROTO_UDP,
        src_port,
        dst_port,
        1 if use_tcp else None,
    )
