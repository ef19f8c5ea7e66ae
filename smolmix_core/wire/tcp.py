"""TCP segment codec (RFC 9293 header, RFC 7323/2018/6691 options). Sans-I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntFlag


class TcpFlags(IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(slots=True)
class TcpOptions:
    """Options we understand; anything else is skipped on parse and listed in ``unknown``."""

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


def parse_tcp(
    data: bytes, src: bytes, dst: bytes, *, verify_checksum: bool = True
) -> tuple[TcpHeader, bytes]:
    """Parse a TCP segment carried between IP addresses ``src`` and ``dst`` (4 or 16 bytes)."""
    raise NotImplementedError


def emit_tcp(header: TcpHeader, payload: bytes, src: bytes, dst: bytes) -> bytes:
    """Serialise with options padded to 32 bits and a correct checksum."""
    raise NotImplementedError
