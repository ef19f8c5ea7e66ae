"""ICMPv4 (RFC 792/1191) and ICMPv6 (RFC 4443) codecs, and the flow quoted in error messages. Sans-I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire._types import BytesLike
from smolmix_core.wire.checksum import (
    checksum_ok,
    finish_checksum,
    pseudo_header_sum,
    transport_checksum_ok,
    word_sum,
)
from smolmix_core.wire.ipv6 import EXTENSION_HEADERS, IPV6_HEADER_LEN, walk_extension_headers
from smolmix_core.wire.protocols import (
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_IPV6_FRAGMENT,
    PROTO_TCP,
    PROTO_UDP,
)

ICMPV4_ECHO_REPLY = 0
ICMPV4_DEST_UNREACHABLE = 3
ICMPV4_ECHO_REQUEST = 8
ICMPV4_TIME_EXCEEDED = 11
ICMPV4_PARAMETER_PROBLEM = 12

ICMPV4_NET_UNREACHABLE = 0
ICMPV4_HOST_UNREACHABLE = 1
ICMPV4_PROTOCOL_UNREACHABLE = 2
ICMPV4_PORT_UNREACHABLE = 3
ICMPV4_FRAGMENTATION_NEEDED = 4
ICMPV4_ADMIN_PROHIBITED = 13

ICMPV4_TTL_EXCEEDED = 0
ICMPV4_REASSEMBLY_EXCEEDED = 1

ICMPV6_DEST_UNREACHABLE = 1
ICMPV6_PACKET_TOO_BIG = 2
ICMPV6_TIME_EXCEEDED = 3
ICMPV6_PARAMETER_PROBLEM = 4
ICMPV6_ECHO_REQUEST = 128
ICMPV6_ECHO_REPLY = 129

ICMPV6_NO_ROUTE = 0
ICMPV6_ADMIN_PROHIBITED = 1
ICMPV6_ADDRESS_UNREACHABLE = 3
ICMPV6_PORT_UNREACHABLE = 4

ICMPV6_HOP_LIMIT_EXCEEDED = 0
ICMPV6_REASSEMBLY_EXCEEDED = 1

ICMP_HEADER_LEN = 8
ICMPV4_QUOTE_LIMIT = 576 - 20 - ICMP_HEADER_LEN
"""Bytes of the offending datagram an ICMPv4 error quotes at most (RFC 1812 §4.3.2.3)."""
ICMPV6_QUOTE_LIMIT = 1280 - IPV6_HEADER_LEN - ICMP_HEADER_LEN
"""Bytes an ICMPv6 error quotes at most, so it fits the minimum MTU (RFC 4443 §2.4 (c))."""

_ICMPV4_ERRORS = frozenset({ICMPV4_DEST_UNREACHABLE, 4, 5, ICMPV4_TIME_EXCEEDED, ICMPV4_PARAMETER_PROBLEM})
_HEADER = struct.Struct("!BBHI")
_IPV4_QUOTE = struct.Struct("!B5xHxB2x4s4s")
_IPV6_QUOTE = struct.Struct("!I2xB1x16s16s")
_PORTS = struct.Struct("!HH")
_U32 = struct.Struct("!I")
_ECHO_IDENT = struct.Struct("!BB2xH")


@dataclass(slots=True)
class _IcmpMessage:
    """An ICMP message, its 32-bit "rest of header" word decoded where the type gives it meaning.

    Echo request/reply use ``ident`` and ``seq``; the "too big" errors use ``mtu``; every other
    type keeps the word in ``rest``. ``data`` is what follows the 8-byte header: the echo data,
    or for errors the quoted original packet.
    """

    type: int
    code: int = 0
    ident: int = 0
    seq: int = 0
    mtu: int = 0
    rest: int = 0
    data: bytes = b""

    @property
    def is_error(self) -> bool:
        raise NotImplementedError

    @property
    def original(self) -> bytes:
        """The quoted packet of an error message (often truncated); empty for other types."""
        return self.data if self.is_error else b""


@dataclass(slots=True)
class Icmpv4Message(_IcmpMessage):
    """ICMPv4: ``mtu`` is the 16-bit next-hop MTU of destination unreachable code 4 (RFC 1191)."""

    @property
    def is_error(self) -> bool:
        return self.type in _ICMPV4_ERRORS


@dataclass(slots=True)
class Icmpv6Message(_IcmpMessage):
    """ICMPv6: ``mtu`` is the 32-bit MTU of Packet Too Big; types below 128 are errors."""

    @property
    def is_error(self) -> bool:
        return self.type < 128


_Message = TypeVar("_Message", Icmpv4Message, Icmpv6Message)
_ECHO_WORD, _MTU_WORD, _REST_WORD = range(3)


def _v4_word_layout(kind: int, code: int) -> int:
    if kind in (ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY):
        return _ECHO_WORD
    if kind == ICMPV4_DEST_UNREACHABLE and code == ICMPV4_FRAGMENTATION_NEEDED:
        return _MTU_WORD
    return _REST_WORD


def _v6_word_layout(kind: int) -> int:
    if kind in (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY):
        return _ECHO_WORD
    return _MTU_WORD if kind == ICMPV6_PACKET_TOO_BIG else _REST_WORD


def parse_icmpv4(data: BytesLike, *, verify_checksum: bool = True) -> Icmpv4Message:
    """Parse an ICMPv4 message (the IPv4 payload)."""
    if len(data) < ICMP_HEADER_LEN:
        raise MalformedPacket(f"ICMPv4 message of {len(data)} bytes is shorter than a header")
    if verify_checksum and not checksum_ok(word_sum(data)):
        raise ChecksumError("ICMPv4 checksum does not verify")
    return _decode(Icmpv4Message, data, 0xFFFF, _v4_word_layout(data[0], data[1]))


def parse_icmpv6(data: BytesLike, src: bytes, dst: bytes, *, verify_checksum: bool = True) -> Icmpv6Message:
    """Parse an ICMPv6 message; its checksum covers the IPv6 pseudo-header."""
    if len(data) < ICMP_HEADER_LEN:
        raise MalformedPacket(f"ICMPv6 message of {len(data)} bytes is shorter than a header")
    if verify_checksum and not transport_checksum_ok(data, src, dst, PROTO_ICMPV6):
        raise ChecksumError("ICMPv6 checksum does not verify")
    return _decode(Icmpv6Message, data, 0xFFFFFFFF, _v6_word_layout(data[0]))


def emit_icmpv4(message: Icmpv4Message) -> bytes:
    """Serialise with the checksum computed."""
    word = _rest_word(message, 0xFFFF, _v4_word_layout(message.type, message.code))
    return _encode(message, word, 0)


def emit_icmpv6(message: Icmpv6Message, src: bytes, dst: bytes) -> bytes:
    """Serialise with the checksum (over the pseudo-header too) computed."""
    word = _rest_word(message, 0xFFFFFFFF, _v6_word_layout(message.type))
    size = ICMP_HEADER_LEN + len(message.data)
    return _encode(message, word, pseudo_header_sum(src, dst, PROTO_ICMPV6, size))


def _decode(cls: type[_Message], data: BytesLike, mtu_mask: int, layout: int) -> _Message:
    kind, code, _checksum, word = _HEADER.unpack_from(data)
    body = bytes(data[ICMP_HEADER_LEN:])
    if layout == _ECHO_WORD:
        return cls(kind, code, ident=word >> 16, seq=word & 0xFFFF, data=body)
    if layout == _MTU_WORD:
        return cls(kind, code, mtu=word & mtu_mask, data=body)
    return cls(kind, code, rest=word, data=body)


def _rest_word(message: _IcmpMessage, mtu_limit: int, layout: int) -> int:
    if layout == _ECHO_WORD:
        if not (0 <= message.ident <= 0xFFFF and 0 <= message.seq <= 0xFFFF):
            raise ValueError("ICMP echo identifier and sequence are 16-bit")
        return (message.ident << 16) | message.seq
    if layout == _MTU_WORD:
        if not 0 <= message.mtu <= mtu_limit:
            raise ValueError(f"ICMP MTU {message.mtu} out of range")
        return message.mtu
    return message.rest


def _encode(message: _IcmpMessage, word: int, pseudo_header: int) -> bytes:
    """Pack once, with the checksum summed from the field values and the data."""
    total = pseudo_header + (message.type << 8) + message.code + word + word_sum(message.data)
    try:
        header = _HEADER.pack(message.type, message.code, finish_checksum(total), word)
    except struct.error as exc:
        raise ValueError(f"ICMP field out of range: {exc}") from None
    return header + message.data


def error_quote(packet: BytesLike) -> bytes:
    """The prefix of ``packet`` an ICMP error about it should quote (by its IP version)."""
    limit = ICMPV6_QUOTE_LIMIT if packet and packet[0] >> 4 == 6 else ICMPV4_QUOTE_LIMIT
    return bytes(packet[:limit])


class QuotedFlow(NamedTuple):
    """The flow of the datagram quoted in an ICMP error: enough for the stack to find the socket.

    Ports are 0 when the quote is of another protocol or of a non-first fragment; for a quoted
    ICMP echo the identifier stands in for both ports. ``tcp_seq`` is the quoted TCP segment's
    sequence number (what RFC 5927 checks an error against), None when the quote is not TCP or
    too short to hold it.
    """

    src: bytes
    dst: bytes
    protocol: int
    src_port: int
    dst_port: int
    tcp_seq: int | None = None


def quoted_flow(original: BytesLike) -> QuotedFlow:
    """Extract the flow from the (possibly truncated) IP packet quoted in an ICMP error.

    Only the IP header(s) and the first 4 bytes of a TCP/UDP header are needed (8 bytes is all
    RFC 792 promises). Lengths and checksums of the quote are not checked: it is truncated.
    """
    size = len(original)
    if size < 1:
        raise MalformedPacket("empty ICMP quote")
    version = original[0] >> 4
    if version == 4:
        if size < 20:
            raise MalformedPacket("ICMP quote shorter than an IPv4 header")
        version_ihl, flags_offset, protocol, src, dst = _IPV4_QUOTE.unpack_from(original)
        start = (version_ihl & 0x0F) << 2
        if start < 20:
            raise MalformedPacket("ICMP quote has a bad IPv4 IHL")
        first_fragment = flags_offset & 0x1FFF == 0
        echo_types: tuple[int, ...] = (ICMPV4_ECHO_REQUEST, ICMPV4_ECHO_REPLY)
        icmp_protocol = PROTO_ICMP
    elif version == 6:
        if size < IPV6_HEADER_LEN:
            raise MalformedPacket("ICMP quote shorter than an IPv6 header")
        _word, next_header, src, dst = _IPV6_QUOTE.unpack_from(original)
        protocol, start, headers = (
            walk_extension_headers(original, IPV6_HEADER_LEN, size, next_header)
            if next_header in EXTENSION_HEADERS
            else (next_header, IPV6_HEADER_LEN, [])
        )
        first_fragment = all(
            kind != PROTO_IPV6_FRAGMENT or int.from_bytes(raw[2:4], "big") >> 3 == 0 for kind, raw in headers
        )
        echo_types = (ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY)
        icmp_protocol = PROTO_ICMPV6
    else:
        raise MalformedPacket(f"ICMP quote of unknown IP version {version}")
    if not first_fragment:
        return QuotedFlow(src, dst, protocol, 0, 0)
    if protocol in (PROTO_TCP, PROTO_UDP):
        if start + 4 > size:
            raise MalformedPacket("ICMP quote too short for the transport ports")
        src_port, dst_port = _PORTS.unpack_from(original, start)
        tcp_seq = None
        if protocol == PROTO_TCP and start + 8 <= size:
            (tcp_seq,) = _U32.unpack_from(original, start + 4)
        return QuotedFlow(src, dst, protocol, src_port, dst_port, tcp_seq)
    if protocol == icmp_protocol and start + 6 <= size:
        kind, _code, ident = _ECHO_IDENT.unpack_from(original, start)
        if kind in echo_types:
            return QuotedFlow(src, dst, protocol, ident, ident)
    return QuotedFlow(src, dst, protocol, 0, 0)
