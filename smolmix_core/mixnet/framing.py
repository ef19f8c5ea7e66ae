"""Node-to-node framing of Sphinx packets on a TCP stream (nymtech/nym ``nymsphinx/framing``).

Each packet is preceded by a small header and has no length field: the size tag names the packet
size, which fixes how many bytes follow.

    packet_version u8 (7 | 8) ‖ size tag u8 ‖ packet_type u8 ‖ key_rotation u8 (version ≥ 8 only)

A first byte below 7 is a legacy header without the version byte (``size tag ‖ packet_type``):
legal size tags are 1..7, so the two forms never collide. We send version 8 with key rotation 0
("unknown"). Outfox size tags (6, 7) are not supported.

A header that does not parse leaves the rest of the stream unframeable, so ``FrameDecoder``
raises ``FramingError`` and the connection must be dropped; a well-framed packet that later fails
Sphinx processing costs only itself.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from smolmix_core.errors import FramingError, SphinxError
from smolmix_core.mixnet.sphinx import PacketSize

INITIAL_PACKET_VERSION = 7
KEY_ROTATION_PACKET_VERSION = 8
CURRENT_PACKET_VERSION = KEY_ROTATION_PACKET_VERSION


class PacketType(enum.IntEnum):
    MIX = 0
    VPN = 1
    """Deprecated upstream; carried like ``MIX``."""
    OUTFOX = 2


class KeyRotation(enum.IntEnum):
    UNKNOWN = 0
    ODD = 1
    EVEN = 2


_PACKET_TYPES = {member.value: member for member in PacketType}
_KEY_ROTATIONS = {member.value: member for member in KeyRotation}


@dataclass(frozen=True, slots=True)
class Frame:
    """One framed packet as received: ``packet_version`` is ``None`` for a legacy header."""

    packet: bytes
    packet_size: PacketSize
    packet_type: PacketType = PacketType.MIX
    packet_version: int | None = CURRENT_PACKET_VERSION
    key_rotation: KeyRotation = KeyRotation.UNKNOWN


def encode_frame(
    packet: bytes,
    *,
    packet_type: PacketType = PacketType.MIX,
    key_rotation: KeyRotation = KeyRotation.UNKNOWN,
    packet_version: int = CURRENT_PACKET_VERSION,
) -> bytes:
    """Header ‖ packet; ``FramingError`` if ``packet`` is not exactly one of the packet sizes."""
    try:
        size = PacketSize.for_total_size(len(packet))
    except SphinxError as exc:
        raise FramingError(f"cannot frame a {len(packet)}-byte packet: {exc}") from None
    if packet_version < INITIAL_PACKET_VERSION:
        raise FramingError(f"packet version must be >= {INITIAL_PACKET_VERSION}, got {packet_version}")
    if packet_version >= KEY_ROTATION_PACKET_VERSION:
        header = bytes((packet_version, size.tag, packet_type, key_rotation))
    else:
        header = bytes((packet_version, size.tag, packet_type))
    return header + packet


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes, then take complete frames from ``next_frame``.

    Memory is bounded by one frame plus one read: at most the largest packet size plus the header
    plus whatever a single ``feed`` delivered.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._offset = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer) - self._offset

    def feed(self, data: bytes) -> None:
        if self._offset:
            del self._buffer[: self._offset]
            self._offset = 0
        self._buffer += data

    def next_frame(self) -> Frame | None:
        """The next complete frame, ``None`` if more bytes are needed; ``FramingError`` if corrupt."""
        buffer, start = self._buffer, self._offset
        available = len(buffer) - start
        if available < 2:
            return None
        first = buffer[start]
        version: int | None
        if first < INITIAL_PACKET_VERSION:
            version, header_size = None, 2
            size_tag, type_byte, rotation_byte = first, buffer[start + 1], 0
        else:
            version = first
            header_size = 4 if first >= KEY_ROTATION_PACKET_VERSION else 3
            if available < header_size:
                return None
            size_tag, type_byte = buffer[start + 1], buffer[start + 2]
            rotation_byte = buffer[start + 3] if header_size == 4 else 0
        try:
            size = PacketSize.from_tag(size_tag)
        except SphinxError:
            raise FramingError(f"unknown packet size tag {size_tag}") from None
        try:
            packet_type = _PACKET_TYPES[type_byte]
            rotation = _KEY_ROTATIONS[rotation_byte]
        except KeyError:
            raise FramingError(f"bad packet type {type_byte} or key rotation {rotation_byte}") from None
        end = start + header_size + size.total_size
        if len(buffer) < end:
            return None
        packet = bytes(buffer[start + header_size : end])
        self._offset = end
        return Frame(packet, size, packet_type, version, rotation)


__all__ = [
    "CURRENT_PACKET_VERSION",
    "Frame",
    "FrameDecoder",
    "KeyRotation",
    "PacketType",
    "encode_frame",
]
