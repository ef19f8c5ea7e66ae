"""Version dispatch: one parse and one emit for IPv4 and IPv6 packets. Sans-I/O."""

from __future__ import annotations

from dataclasses import dataclass

from smolmix_core.errors import MalformedPacket
from smolmix_core.wire._types import BytesLike
from smolmix_core.wire.ipv4 import Ipv4Header, build_ipv4, parse_ipv4
from smolmix_core.wire.ipv6 import Ipv6Header, emit_ipv6, parse_ipv6
from smolmix_core.wire.protocols import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP

__all__ = [
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "IpPacket",
    "emit_ip",
    "parse_ip",
]


@dataclass(slots=True)
class IpPacket:
    """What the stack needs from any IP packet: addresses (raw bytes), protocol and payload."""

    version: int
    src: bytes
    dst: bytes
    protocol: int
    payload: bytes
    header: Ipv4Header | Ipv6Header
    is_fragment: bool


def parse_ip(data: BytesLike, *, verify_checksum: bool = True) -> IpPacket:
    """Parse an IPv4 or IPv6 packet, chosen by the version nibble.

    ``verify_checksum`` concerns the IPv4 header checksum (IPv6 has none); transport checksums
    are checked by the transport parsers.
    """
    if not data:
        raise MalformedPacket("empty IP packet")
    version = data[0] >> 4
    if version == 4:
        header4, payload = parse_ipv4(data, verify_checksum=verify_checksum)
        return IpPacket(4, header4.src, header4.dst, header4.protocol, payload, header4, header4.is_fragment)
    if version == 6:
        header6, payload = parse_ipv6(data)
        return IpPacket(
            6, header6.src, header6.dst, header6.next_header, payload, header6, header6.is_fragment
        )
    raise MalformedPacket(f"unknown IP version {version}")


def emit_ip(
    src: bytes,
    dst: bytes,
    protocol: int,
    payload: BytesLike,
    *,
    ttl: int = 64,
    ident: int = 0,
    dont_fragment: bool = True,
    tos: int = 0,
) -> bytes:
    """Build an IP packet, IPv4 or IPv6 by ``len(src)``; ``ident``/``dont_fragment`` are IPv4-only."""
    if len(src) == 4:
        return build_ipv4(src, dst, protocol, payload, ttl, ident, tos, 0x4000 if dont_fragment else 0)
    if len(src) == 16:
        return emit_ipv6(Ipv6Header(src, dst, protocol, ttl, tos), payload)
    raise ValueError(f"an IP address is 4 or 16 bytes, not {len(src)}")
