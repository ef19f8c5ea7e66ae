"""UDP datagram codec (RFC 768; IPv6 rules from RFC 8200 §8.1). Sans-I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire._types import BytesLike
from smolmix_core.wire.checksum import buffer_remainder, pseudo_header_sum, transport_checksum_ok
from smolmix_core.wire.protocols import PROTO_UDP

UDP_HEADER_LEN = 8

_HEADER = struct.Struct("!HHHH")


@dataclass(slots=True)
class UdpHeader:
    src_port: int
    dst_port: int


def parse_udp(
    data: BytesLike, src: bytes, dst: bytes, *, verify_checksum: bool = True
) -> tuple[UdpHeader, bytes]:
    """Parse a UDP datagram; the payload is cut to the UDP Length field.

    Over IPv4 a zero checksum means "not computed"; over IPv6 it is invalid.
    """
    size = len(data)
    if size < UDP_HEADER_LEN:
        raise MalformedPacket(f"UDP datagram of {size} bytes is shorter than a header")
    src_port, dst_port, length, checksum = _HEADER.unpack_from(data)
    if length < UDP_HEADER_LEN or length > size:
        raise MalformedPacket(f"UDP length {length} outside [8, {size}]")
    if checksum == 0:
        if len(src) != 4:
            raise ChecksumError("UDP over IPv6 with a zero checksum")
    elif verify_checksum and not transport_checksum_ok(
        data[:length] if length != size else data, src, dst, PROTO_UDP
    ):
        raise ChecksumError("UDP checksum does not verify")
    return UdpHeader(src_port, dst_port), bytes(data[UDP_HEADER_LEN:length])


def emit_udp(header: UdpHeader, payload: BytesLike, src: bytes, dst: bytes) -> bytes:
    """Serialise with the checksum always computed (a computed 0 is sent as 0xFFFF)."""
    length = UDP_HEADER_LEN + len(payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    total = (
        pseudo_header_sum(src, dst, PROTO_UDP, length)
        + header.src_port
        + header.dst_port
        + length
        + buffer_remainder(payload)
    )
    checksum = 0xFFFF - total % 0xFFFF  # never 0: a computed 0 is sent as 0xFFFF (RFC 768)
    try:
        fixed = _HEADER.pack(header.src_port, header.dst_port, length, checksum)
    except struct.error as exc:
        raise ValueError(f"UDP header field out of range: {exc}") from None
    return fixed + payload
