"""IPv6 header codec (RFC 8200) with a bounded walk over extension headers. Sans-I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smolmix_core.errors import MalformedPacket
from smolmix_core.wire._types import BytesLike
from smolmix_core.wire.protocols import (
    PROTO_AH,
    PROTO_HOPOPTS,
    PROTO_IPV6_DSTOPTS,
    PROTO_IPV6_FRAGMENT,
    PROTO_IPV6_ROUTING,
)

IPV6_HEADER_LEN = 40
MAX_EXTENSION_HEADERS = 8
"""More than this many extension headers in one packet is treated as malformed (an attack)."""

EXTENSION_HEADERS = frozenset(
    {PROTO_HOPOPTS, PROTO_IPV6_ROUTING, PROTO_IPV6_FRAGMENT, PROTO_IPV6_DSTOPTS, PROTO_AH}
)

_HEADER = struct.Struct("!IHBB16s16s")
_FRAGMENT_WORD = struct.Struct("!H")


@dataclass(slots=True)
class Ipv6Header:
    """An IPv6 header and the extension headers in front of the upper-layer protocol.

    ``extension_headers`` holds ``(type, raw)`` pairs in wire order, ``raw`` being the whole
    extension header as on the wire. On emit the first byte of each ``raw`` (its Next Header) is
    rewritten to chain correctly, so callers need not get it right.
    """

    src: bytes
    dst: bytes
    next_header: int  # the upper-layer protocol, after any extension headers
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0
    extension_headers: tuple[tuple[int, bytes], ...] = ()

    @property
    def fragment(self) -> tuple[int, bool, int] | None:
        """``(offset in 8-octet units, more fragments, identification)`` if a Fragment header is present."""
        for kind, raw in self.extension_headers:
            if kind == PROTO_IPV6_FRAGMENT:
                (offset_flags,) = _FRAGMENT_WORD.unpack_from(raw, 2)
                return offset_flags >> 3, bool(offset_flags & 1), int.from_bytes(raw[4:8], "big")
        return None

    @property
    def is_fragment(self) -> bool:
        """True for a real fragment; an atomic fragment (offset 0, M=0) is whole (RFC 6946)."""
        info = self.fragment
        return info is not None and (info[0] != 0 or info[1])


def walk_extension_headers(
    data: BytesLike, position: int, end: int, next_header: int
) -> tuple[int, int, list[tuple[int, bytes]]]:
    """Walk extension headers in ``data[position:end]`` starting with type ``next_header``.

    Returns ``(upper-layer protocol, offset of the upper-layer data, [(type, raw), …])``. Every
    length is checked against ``end``; an unknown type ends the walk (it is the upper layer).
    """
    headers: list[tuple[int, bytes]] = []
    while next_header in EXTENSION_HEADERS:
        if len(headers) == MAX_EXTENSION_HEADERS:
            raise MalformedPacket(f"more than {MAX_EXTENSION_HEADERS} IPv6 extension headers")
        if next_header == PROTO_HOPOPTS and headers:
            raise MalformedPacket("IPv6 Hop-by-Hop Options header not first")
        if position + 8 > end:
            raise MalformedPacket("IPv6 extension header truncated")
        if next_header == PROTO_IPV6_FRAGMENT:
            length = 8
        elif next_header == PROTO_AH:
            length = (data[position + 1] + 2) << 2
        else:
            length = (data[position + 1] + 1) << 3
        if position + length > end:
            raise MalformedPacket("IPv6 extension header runs past the packet")
        headers.append((next_header, bytes(data[position : position + length])))
        next_header = data[position]
        position += length
    return next_header, position, headers


def parse_ipv6(data: BytesLike) -> tuple[Ipv6Header, bytes]:
    """Parse an IPv6 packet; the payload (after extension headers) is cut to Payload Length."""
    size = len(data)
    if size < IPV6_HEADER_LEN:
        raise MalformedPacket(f"IPv6 packet of {size} bytes is shorter than a header")
    word, payload_length, next_header, hop_limit, src, dst = _HEADER.unpack_from(data)
    if word >> 28 != 6:
        raise MalformedPacket(f"IP version {word >> 28} in an IPv6 parser")
    end = IPV6_HEADER_LEN + payload_length
    if end > size:
        raise MalformedPacket(f"IPv6 payload length {payload_length} exceeds the {size - 40} bytes received")
    if next_header in EXTENSION_HEADERS:
        next_header, start, headers = walk_extension_headers(data, IPV6_HEADER_LEN, end, next_header)
        extensions = tuple(headers)
    else:
        start = IPV6_HEADER_LEN
        extensions = ()
    header = Ipv6Header(src, dst, next_header, hop_limit, (word >> 20) & 0xFF, word & 0xFFFFF, extensions)
    return header, bytes(data[start:end])


def emit_ipv6(header: Ipv6Header, payload: BytesLike) -> bytes:
    """Serialise with Payload Length computed and the extension-header chain linked."""
    src = header.src
    dst = header.dst
    if len(src) != 16 or len(dst) != 16:
        raise ValueError("IPv6 addresses must be 16 bytes")
    first = header.next_header
    chained: list[bytes] = []
    extensions = header.extension_headers
    if extensions:
        first = extensions[0][0]
        for index, (kind, raw) in enumerate(extensions):
            _check_extension(kind, raw)
            following = extensions[index + 1][0] if index + 1 < len(extensions) else header.next_header
            chained.append(bytes((following,)) + bytes(raw[1:]))
    payload_length = sum(len(raw) for raw in chained) + len(payload)
    if payload_length > 0xFFFF:
        raise ValueError(f"IPv6 payload of {payload_length} bytes needs a jumbogram (unsupported)")
    if not (0 <= header.traffic_class <= 0xFF and 0 <= header.flow_label <= 0xFFFFF):
        raise ValueError("IPv6 traffic class or flow label out of range")
    word = 0x60000000 | (header.traffic_class << 20) | header.flow_label
    try:
        fixed = _HEADER.pack(word, payload_length, first, header.hop_limit, src, dst)
    except struct.error as exc:
        raise ValueError(f"IPv6 header field out of range: {exc}") from None
    if chained:
        return b"".join((fixed, *chained, payload))
    return fixed + payload


def _check_extension(kind: int, raw: bytes) -> None:
    if kind not in EXTENSION_HEADERS:
        raise ValueError(f"{kind} is not an IPv6 extension header this codec walks")
    if kind == PROTO_IPV6_FRAGMENT or len(raw) < 8:
        expected = 8
    elif kind == PROTO_AH:
        expected = (raw[1] + 2) << 2
    else:
        expected = (raw[1] + 1) << 3
    if len(raw) != expected:
        raise ValueError(f"IPv6 extension header type {kind} of {len(raw)} bytes, its length says {expected}")
