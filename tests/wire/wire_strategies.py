"""hypothesis strategies for the wire codecs, shared by the property and scapy-oracle tests."""

from __future__ import annotations

from hypothesis import strategies as st

from smolmix_core.wire import (
    PROTO_AH,
    PROTO_HOPOPTS,
    PROTO_IPV6_DSTOPTS,
    PROTO_IPV6_FRAGMENT,
    PROTO_IPV6_ROUTING,
    Icmpv4Message,
    Icmpv6Message,
    Ipv4Header,
    Ipv6Header,
    TcpHeader,
    TcpOptions,
    emit_options,
)
from smolmix_core.wire.ipv6 import EXTENSION_HEADERS

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addr4 = st.binary(min_size=4, max_size=4)
addr6 = st.binary(min_size=16, max_size=16)
payloads = st.binary(max_size=120)
upper_protocols = u8.filter(lambda n: n not in EXTENSION_HEADERS)
KNOWN_TCP_OPTIONS = frozenset({0, 1, 2, 3, 4, 5, 8})

ipv4_options = st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00", b"\x01" * 8]).map(bytes)


@st.composite
def ipv4_headers(draw: st.DrawFn) -> Ipv4Header:
    return Ipv4Header(
        src=draw(addr4),
        dst=draw(addr4),
        protocol=draw(u8),
        ttl=draw(u8),
        identification=draw(u16),
        dscp_ecn=draw(u8),
        dont_fragment=draw(st.booleans()),
        more_fragments=draw(st.booleans()),
        fragment_offset=draw(st.integers(0, 0x1FFF)),
        options=draw(st.one_of(ipv4_options, st.binary(max_size=10).map(lambda b: b + bytes(-len(b) % 4)))),
    )


def linked(extensions: list[tuple[int, bytes]], next_header: int) -> tuple[tuple[int, bytes], ...]:
    """Fix each raw header's Next Header byte so the chain is what ``emit_ipv6`` writes."""
    following = [kind for kind, _ in extensions[1:]] + [next_header]
    return tuple((kind, bytes((after,)) + raw[1:]) for (kind, raw), after in zip(extensions, following))


@st.composite
def extension_header(draw: st.DrawFn, kind: int) -> tuple[int, bytes]:
    if kind == PROTO_IPV6_FRAGMENT:
        return kind, bytes(2) + draw(st.binary(min_size=6, max_size=6))
    if kind == PROTO_AH:
        words = draw(st.integers(1, 4)) * 2  # AH in IPv6 is a multiple of 8 bytes
        return kind, bytes((0, words - 2)) + draw(st.binary(min_size=words * 4 - 2, max_size=words * 4 - 2))
    units = draw(st.integers(0, 3))
    body = draw(st.binary(min_size=6 + 8 * units, max_size=6 + 8 * units))
    return kind, bytes((0, units)) + body


@st.composite
def ipv6_headers(draw: st.DrawFn, max_extensions: int = 4) -> Ipv6Header:
    kinds = draw(
        st.lists(
            st.sampled_from([PROTO_IPV6_ROUTING, PROTO_IPV6_FRAGMENT, PROTO_IPV6_DSTOPTS, PROTO_AH]),
            max_size=max_extensions,
        )
    )
    if draw(st.booleans()):
        kinds = [PROTO_HOPOPTS, *kinds]
    next_header = draw(upper_protocols)
    extensions = [draw(extension_header(kind)) for kind in kinds]
    return Ipv6Header(
        src=draw(addr6),
        dst=draw(addr6),
        next_header=next_header,
        hop_limit=draw(u8),
        traffic_class=draw(u8),
        flow_label=draw(st.integers(0, 0xFFFFF)),
        extension_headers=linked(extensions, next_header),
    )


def fits(options: TcpOptions) -> bool:
    try:
        emit_options(options)
    except ValueError:
        return False
    return True


@st.composite
def tcp_options(draw: st.DrawFn) -> TcpOptions:
    """Any combination, trimmed (unknown options first, then SACK blocks) to fit 40 bytes."""
    options = TcpOptions(
        mss=draw(st.none() | u16),
        window_scale=draw(st.none() | u8),
        sack_permitted=draw(st.booleans()),
        sack_blocks=tuple(draw(st.lists(st.tuples(u32, u32), max_size=4))),
        timestamp=draw(st.none() | st.tuples(u32, u32)),
        unknown=tuple(
            draw(
                st.lists(
                    st.tuples(u8.filter(lambda k: k not in KNOWN_TCP_OPTIONS), st.binary(max_size=6)),
                    max_size=2,
                )
            )
        ),
    )
    while not fits(options):
        if options.unknown:
            options.unknown = options.unknown[:-1]
        else:
            options.sack_blocks = options.sack_blocks[:-1]
    return options


@st.composite
def tcp_headers(draw: st.DrawFn) -> TcpHeader:
    return TcpHeader(
        src_port=draw(u16),
        dst_port=draw(u16),
        seq=draw(u32),
        ack=draw(u32),
        flags=draw(st.integers(0, 0x1FF)),
        window=draw(u16),
        urgent=draw(u16),
        options=draw(tcp_options()),
    )


@st.composite
def icmpv4_messages(draw: st.DrawFn) -> Icmpv4Message:
    kind = draw(st.sampled_from([0, 8, 3, 11, 12, 5, 13]) | u8)
    code = draw(st.sampled_from([0, 1, 3, 4, 13]) | u8)
    data = draw(payloads)
    if kind in (0, 8):
        return Icmpv4Message(kind, code, ident=draw(u16), seq=draw(u16), data=data)
    if kind == 3 and code == 4:
        return Icmpv4Message(kind, code, mtu=draw(u16), data=data)
    return Icmpv4Message(kind, code, rest=draw(u32), data=data)


@st.composite
def icmpv6_messages(draw: st.DrawFn) -> Icmpv6Message:
    kind = draw(st.sampled_from([128, 129, 1, 2, 3, 4]) | u8)
    code = draw(st.sampled_from([0, 1, 3, 4]) | u8)
    data = draw(payloads)
    if kind in (128, 129):
        return Icmpv6Message(kind, code, ident=draw(u16), seq=draw(u16), data=data)
    if kind == 2:
        return Icmpv6Message(kind, code, mtu=draw(u32), data=data)
    return Icmpv6Message(kind, code, rest=draw(u32), data=data)
