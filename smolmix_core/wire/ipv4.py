"""IPv4 header codec (RFC 791). Sans-I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire._types import BytesLike

IPV4_HEADER_LEN = 20
IPV4_MAX_OPTIONS = 40

_HEADER = struct.Struct("!BBHHHBBH4s4s")
_DONT_FRAGMENT = 0x4000
_MORE_FRAGMENTS = 0x2000
_OFFSET_MASK = 0x1FFF


@dataclass(slots=True)
class Ipv4Header:
    """The fields of an IPv4 header that carry meaning; length and checksum are derived on emit."""

    src: bytes
    dst: bytes
    protocol: int
    ttl: int = 64
    identification: int = 0
    dscp_ecn: int = 0
    dont_fragment: bool = True
    more_fragments: bool = False
    fragment_offset: int = 0  # in 8-octet units, as on the wire
    options: bytes = b""  # raw, a multiple of 4 bytes; kept but not interpreted

    @property
    def is_fragment(self) -> bool:
        """True for any piece of a fragmented datagram (the stack does not reassemble)."""
        return self.more_fragments or self.fragment_offset != 0


def parse_ipv4(data: BytesLike, *, verify_checksum: bool = True) -> tuple[Ipv4Header, bytes]:
    """Parse an IPv4 packet; the payload is cut to Total Length, so link padding is ignored."""
    size = len(data)
    if size < IPV4_HEADER_LEN:
        raise MalformedPacket(f"IPv4 packet of {size} bytes is shorter than a header")
    (version_ihl, tos, total_length, ident, flags_offset, ttl, protocol, _checksum, src, dst) = (
        _HEADER.unpack_from(data)
    )
    if version_ihl == 0x45:
        header_length = IPV4_HEADER_LEN
        options = b""
    else:
        if version_ihl >> 4 != 4:
            raise MalformedPacket(f"IP version {version_ihl >> 4} in an IPv4 parser")
        header_length = (version_ihl & 0x0F) << 2
        if header_length < IPV4_HEADER_LEN:
            raise MalformedPacket(f"IPv4 IHL of {header_length} bytes is below the minimum")
        options = None
    if not header_length <= total_length <= size:
        raise MalformedPacket(
            f"IPv4 total length {total_length} outside [{header_length}, {size}] (header, bytes received)"
        )
    if verify_checksum and int.from_bytes(data[:header_length], "big") % 0xFFFF:
        raise ChecksumError("IPv4 header checksum does not verify")
    header = Ipv4Header(
        src,
        dst,
        protocol,
        ttl,
        ident,
        tos,
        flags_offset & 0x4000 != 0,  # DF
        flags_offset & 0x2000 != 0,  # MF
        flags_offset & 0x1FFF,
        bytes(data[IPV4_HEADER_LEN:header_length]) if options is None else options,
    )
    payload = data[header_length:total_length]
    return header, payload if type(payload) is bytes else bytes(payload)


def emit_ipv4(header: Ipv4Header, payload: BytesLike) -> bytes:
    """Serialise with Total Length and header checksum computed; options are padded with EOL."""
    options = header.options
    if options and len(options) % 4:
        options = bytes(options) + b"\x00" * (4 - len(options) % 4)
    flags_offset = header.fragment_offset
    if not 0 <= flags_offset <= _OFFSET_MASK:
        raise ValueError(f"IPv4 fragment offset {flags_offset} out of range")
    if header.dont_fragment:
        flags_offset |= _DONT_FRAGMENT
    if header.more_fragments:
        flags_offset |= _MORE_FRAGMENTS
    return build_ipv4(
        header.src,
        header.dst,
        header.protocol,
        payload,
        header.ttl,
        header.identification,
        header.dscp_ecn,
        flags_offset,
        options,
    )


def build_ipv4(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload: BytesLike,
    ttl: int = 64,
    identification: int = 0,
    dscp_ecn: int = 0,
    flags_offset: int = _DONT_FRAGMENT,
    options: bytes = b"",
) -> bytes:
    """``emit_ipv4`` from raw field values, without a header object: the stack's send path.

    ``flags_offset`` is the 16-bit flags-and-fragment-offset word; ``options`` must already be a
    multiple of 4 bytes.
    """
    if len(src) != 4 or len(dst) != 4:
        raise ValueError("IPv4 addresses must be 4 bytes")
    header_length = IPV4_HEADER_LEN + len(options)
    total_length = header_length + len(payload)
    if total_length > 0xFFFF or header_length > IPV4_HEADER_LEN + IPV4_MAX_OPTIONS or len(options) % 4:
        raise ValueError(f"IPv4 packet of {total_length} bytes (options {len(options)}) cannot be encoded")
    version_ihl = 0x40 | (header_length >> 2)
    # The checksum is computed from the field values, so the header is packed only once; the
    # version nibble makes the sum nonzero, so "-0" needs no special case.
    total = (
        (version_ihl << 8)
        + dscp_ecn
        + total_length
        + identification
        + flags_offset
        + (ttl << 8)
        + protocol
        + int.from_bytes(src + dst, "big")
    )
    if options:
        total += int.from_bytes(options, "big")
    remainder = total % 0xFFFF
    try:
        fixed = _HEADER.pack(
            version_ihl,
            dscp_ecn,
            total_length,
            identification,
            flags_offset,
            ttl,
            protocol,
            0xFFFF - remainder if remainder else 0,
            src,
            dst,
        )
    except struct.error as exc:
        raise ValueError(f"IPv4 header field out of range: {exc}") from None
    if options:
        return b"".join((fixed, options, payload))
    return fixed + payload
