"""Sizes, versions and packet sizes of the Sphinx format (spec mixnet.md §2, §5)."""

from __future__ import annotations

from enum import Enum

from smolmix_core.errors import SphinxError

SECURITY_PARAMETER = 16
MAX_PATH_LENGTH = 5
NODE_ADDRESS_LENGTH = 32
DESTINATION_ADDRESS_LENGTH = 32
IDENTIFIER_LENGTH = 16
VERSION_LENGTH = 3
DELAY_LENGTH = 8
HEADER_MAC_SIZE = 16
NODE_META_INFO_SIZE = 1 + VERSION_LENGTH + NODE_ADDRESS_LENGTH + DELAY_LENGTH
HOP_BLOCK_SIZE = NODE_META_INFO_SIZE + HEADER_MAC_SIZE
ROUTING_INFO_SIZE = HOP_BLOCK_SIZE * MAX_PATH_LENGTH
STREAM_CIPHER_OUTPUT_LENGTH = HOP_BLOCK_SIZE * (MAX_PATH_LENGTH + 1)
GROUP_ELEMENT_SIZE = 32
HEADER_SIZE = GROUP_ELEMENT_SIZE + HEADER_MAC_SIZE + ROUTING_INFO_SIZE
PAYLOAD_KEY_SIZE = 192
PAYLOAD_KEY_SEED_SIZE = 16
EXPANDED_SHARED_SECRET_LENGTH = 288
REPLAY_TAG_SIZE = 32
PAYLOAD_OVERHEAD = SECURITY_PARAMETER + 1
MIN_PAYLOAD_SIZE = 33
"""Lioness needs more than 32 bytes (its left half) to have a right half to encrypt."""

FORWARD_HOP_FLAG = 0x01
FINAL_HOP_FLAG = 0x02

VERSION_258 = 258
"""X25519_WITH_EXPLICIT_PAYLOAD_KEYS: the payload key is 192 bytes of the HKDF output."""
VERSION_259 = 259
"""PAYLOAD_KEYS_SEEDS: a 16-byte seed from the HKDF output is expanded to the payload key."""
VERSION_260 = 260
"""SINGLE_SEED_SURB: hops process it exactly like 259 (nymtech/sphinx ``version.rs``); only its
SURBs differ, and those we neither build nor parse."""
SUPPORTED_VERSIONS = (VERSION_258, VERSION_259)
"""Versions we build packets and SURBs in."""
PROCESSED_VERSIONS = (VERSION_258, VERSION_259, VERSION_260)
"""Versions a hop accepts. Legacy 1 and 257 blind without clamping and are refused."""


def version_bytes(version: int) -> bytes:
    """The 3-byte wire form ``00 ‖ u16 BE``; raises ``SphinxError`` for versions we cannot build."""
    if version not in SUPPORTED_VERSIONS:
        raise SphinxError(f"unsupported Sphinx version {version}; supported: {SUPPORTED_VERSIONS}")
    return b"\x00" + version.to_bytes(2, "big")


class PacketSize(Enum):
    """The Nym packet sizes: tag byte, total bytes, Sphinx payload bytes, usable plaintext bytes."""

    REGULAR = (1, 2413, 2065, 2048)
    ACK = (2, 386, 38, 21)
    EXTENDED32 = (3, 33133, 32785, 32768)
    EXTENDED8 = (4, 8557, 8209, 8192)
    EXTENDED16 = (5, 16749, 16401, 16384)

    def __init__(self, tag: int, total_size: int, payload_size: int, plaintext_size: int) -> None:
        self.tag = tag
        self.total_size = total_size
        self.payload_size = payload_size
        self.plaintext_size = plaintext_size

    @classmethod
    def from_tag(cls, tag: int) -> PacketSize:
        """The size announced by a framing tag byte; ``SphinxError`` for unknown tags."""
        size = _BY_TAG.get(tag)
        if size is None:
            raise SphinxError(f"unknown packet size tag {tag}")
        return size

    @classmethod
    def for_total_size(cls, total_size: int) -> PacketSize:
        """The size whose whole packet is ``total_size`` bytes; ``SphinxError`` if none is."""
        size = _BY_TOTAL_SIZE.get(total_size)
        if size is None:
            raise SphinxError(f"no packet size has {total_size} bytes in total")
        return size


# Looked up for every framed packet: dictionaries, not a walk over the members.
_BY_TAG = {size.tag: size for size in PacketSize}
_BY_TOTAL_SIZE = {size.total_size: size for size in PacketSize}
