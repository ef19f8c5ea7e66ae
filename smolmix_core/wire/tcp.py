"""TCP segment codec (RFC 9293 header, RFC 7323/2018/6691 options). Sans-I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntFlag

from smolmix_core.errors import ChecksumError, MalformedPacket
from smolmix_core.wire._types import BytesLike
from smolmix_core.wire.checksum import buffer_remainder, pseudo_header_sum, transport_checksum_ok
from smolmix_core.wire.protocols import PROTO_TCP

TCP_HEADER_LEN = 20
TCP_MAX_OPTIONS = 40

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WINDOW_SCALE = 3
OPT_SACK_PERMITTED = 4
OPT_SACK = 5
OPT_TIMESTAMP = 8


class TcpFlags(IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80
    AE = 0x100  # the former NS bit (RFC 3540), now Accurate ECN's AE


@dataclass(slots=True)
class TcpOptions:
    """Options we understand; anything else is skipped on parse and listed in ``unknown``.

    A known kind with a length it should not have (say MSS of 3 bytes) is treated as unknown too,
    as Linux ignores it, rather than rejecting the segment.
    """

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamp: tuple[int, int] | None = None  # (TSval, TSecr)
    unknown: tuple[tuple[int, bytes], ...] = ()  # (kind, data) of options we skipped


@dataclass(slots=True)
class TcpHeader:
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int  # TcpFlags bits; a plain int on the hot path
    window: int  # the raw 16-bit field; scaling is the connection's business
    urgent: int = 0
    options: TcpOptions = field(default_factory=TcpOptions)


_HEADER = struct.Struct("!HHIIHHHH")
_FLAG_BITS = 0x1FF
_NOP_NOP_TIMESTAMP = struct.Struct("!III")
_NOP_NOP_TIMESTAMP_WORD = 0x0101080A
_SACK_PERMITTED_TIMESTAMP_WORD = 0x0402080A
_MSS = struct.Struct("!BBH")
_U16 = struct.Struct("!H")
_U32_PAIR = struct.Struct("!II")
_NOP_WINDOW_SCALE = struct.Struct("!BBBB")
_NOP_NOP_SACK_PERMITTED = b"\x01\x01\x04\x02"


def parse_tcp(
    data: BytesLike, src: bytes, dst: bytes, *, verify_checksum: bool = True
) -> tuple[TcpHeader, bytes]:
    """Parse a TCP segment carried between IP addresses ``src`` and ``dst`` (4 or 16 bytes)."""
    size = len(data)
    if size < TCP_HEADER_LEN:
        raise MalformedPacket(f"TCP segment of {size} bytes is shorter than a header")
    src_port, dst_port, seq, ack, offset_flags, window, _checksum, urgent = _HEADER.unpack_from(data)
    header_length = (offset_flags >> 12) << 2
    if header_length < TCP_HEADER_LEN or header_length > size:
        raise MalformedPacket(f"TCP data offset {header_length} outside [20, {size}]")
    if verify_checksum and not transport_checksum_ok(data, src, dst, PROTO_TCP):
        raise ChecksumError("TCP checksum does not verify")
    if header_length == TCP_HEADER_LEN:
        options = TcpOptions()
    elif header_length == 32:
        word, tsval, tsecr = _NOP_NOP_TIMESTAMP.unpack_from(data, TCP_HEADER_LEN)
        if word == _NOP_NOP_TIMESTAMP_WORD:
            options = TcpOptions(timestamp=(tsval, tsecr))
        else:
            options = _parse_options(data, TCP_HEADER_LEN, header_length)
    else:
        options = _parse_options(data, TCP_HEADER_LEN, header_length)
    header = TcpHeader(src_port, dst_port, seq, ack, offset_flags & _FLAG_BITS, window, urgent, options)
    return header, bytes(data[header_length:])


def _parse_options(data: BytesLike, position: int, end: int) -> TcpOptions:
    options = TcpOptions()
    unknown: list[tuple[int, bytes]] = []
    while position < end:
        kind = data[position]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            position += 1
            continue
        if position + 1 >= end:
            raise MalformedPacket(f"TCP option {kind} has no length byte")
        length = data[position + 1]
        if length < 2 or position + length > end:
            raise MalformedPacket(f"TCP option {kind} has bad length {length}")
        body = position + 2
        if kind == OPT_MSS and length == 4:
            (options.mss,) = _U16.unpack_from(data, body)
        elif kind == OPT_WINDOW_SCALE and length == 3:
            options.window_scale = data[body]
        elif kind == OPT_SACK_PERMITTED and length == 2:
            options.sack_permitted = True
        elif kind == OPT_TIMESTAMP and length == 10:
            options.timestamp = _U32_PAIR.unpack_from(data, body)
        elif kind == OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            options.sack_blocks = tuple(
                _U32_PAIR.unpack_from(data, offset) for offset in range(body, position + length, 8)
            )
        else:
            unknown.append((kind, bytes(data[body : position + length])))
        position += length
    if unknown:
        options.unknown = tuple(unknown)
    return options


def emit_options(options: TcpOptions) -> bytes:
    """Encode options in the order Linux uses, padded with EOL to a 32-bit boundary."""
    timestamp = options.timestamp
    if (
        options.mss is None
        and options.window_scale is None
        and not options.sack_permitted
        and not options.sack_blocks
        and not options.unknown
    ):
        if timestamp is None:
            return b""
        return _NOP_NOP_TIMESTAMP.pack(_NOP_NOP_TIMESTAMP_WORD, *timestamp)
    parts: list[bytes] = []
    try:
        if options.mss is not None:
            parts.append(_MSS.pack(OPT_MSS, 4, options.mss))
        if timestamp is not None:
            word = _SACK_PERMITTED_TIMESTAMP_WORD if options.sack_permitted else _NOP_NOP_TIMESTAMP_WORD
            parts.append(_NOP_NOP_TIMESTAMP.pack(word, *timestamp))
        elif options.sack_permitted:
            parts.append(_NOP_NOP_SACK_PERMITTED)
        if options.window_scale is not None:
            parts.append(_NOP_WINDOW_SCALE.pack(OPT_NOP, OPT_WINDOW_SCALE, 3, options.window_scale))
        if options.sack_blocks:
            parts.append(bytes((OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(options.sack_blocks))))
            parts.extend(_U32_PAIR.pack(left, right) for left, right in options.sack_blocks)
        for kind, body in options.unknown:
            if kind in (OPT_EOL, OPT_NOP) or len(body) > TCP_MAX_OPTIONS - 2:
                raise ValueError(f"cannot emit TCP option kind {kind} with {len(body)} bytes")
            parts.append(bytes((kind, len(body) + 2)))
            parts.append(body)
    except struct.error as exc:
        raise ValueError(f"TCP option value out of range: {exc}") from None
    encoded = b"".join(parts)
    if len(encoded) % 4:
        encoded += b"\x00" * (4 - len(encoded) % 4)
    if len(encoded) > TCP_MAX_OPTIONS:
        raise ValueError(f"TCP options need {len(encoded)} bytes, more than {TCP_MAX_OPTIONS}")
    return encoded


def emit_tcp(header: TcpHeader, payload: BytesLike, src: bytes, dst: bytes) -> bytes:
    """Serialise with options padded to 32 bits and a correct checksum."""
    options = emit_options(header.options)
    header_length = TCP_HEADER_LEN + len(options)
    flags = header.flags
    if flags & ~_FLAG_BITS:
        raise ValueError(f"TCP flags {flags:#x} use reserved bits")
    offset_flags = (header_length << 10) | flags
    size = header_length + len(payload)
    src_port = header.src_port
    dst_port = header.dst_port
    seq = header.seq
    ack = header.ack
    window = header.window
    urgent = header.urgent
    # Summed from field values and the two buffers, so nothing is packed twice; the pseudo-header
    # makes the sum nonzero, so "-0" needs no special case (see ``finish_checksum``).
    total = (
        pseudo_header_sum(src, dst, PROTO_TCP, size)
        + src_port
        + dst_port
        + seq
        + ack
        + offset_flags
        + window
        + urgent
    )
    if options:
        total += int.from_bytes(options, "big")
    total += buffer_remainder(payload)
    remainder = total % 0xFFFF
    try:
        fixed = _HEADER.pack(
            src_port, dst_port, seq, ack, offset_flags, window, 0xFFFF - remainder if remainder else 0, urgent
        )
    except struct.error as exc:
        raise ValueError(f"TCP header field out of range: {exc}") from None
    if not options:
        return fixed + payload
    return b"".join((fixed, options, payload))
