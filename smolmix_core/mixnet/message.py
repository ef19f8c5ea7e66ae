"""NymMessage: what is fragmented and sent — Plain, Repliable and Reply bodies (spec §6, §12).

``type u8 ‖ body``. Repliable bodies carry the sender tag and, under a content tag, reply SURBs
in the v1 (legacy, fixed 1164-byte SURBs for 4 hops) or v2 (count u16 ‖ hops u8, seeded keys)
encoding. SURBs are kept here as opaque bytes; ``reply.ReplySurb`` gives them meaning. Before
fragmenting, a message is padded with ``01 ‖ 00…`` so that every fragment is full.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from smolmix_core.errors import MessageError, RecipientError
from smolmix_core.mixnet.encryption import REPLY_KEY_SIZE
from smolmix_core.mixnet.fragment import number_of_fragments
from smolmix_core.mixnet.recipient import RECIPIENT_SIZE, Recipient
from smolmix_core.mixnet.sphinx.constants import (
    HEADER_SIZE,
    MAX_PATH_LENGTH,
    NODE_ADDRESS_LENGTH,
    PAYLOAD_KEY_SEED_SIZE,
    PAYLOAD_KEY_SIZE,
)

SENDER_TAG_SIZE = 16
LEGACY_SURB_HOPS = 4
REPLY_SURB_BASE_SIZE = REPLY_KEY_SIZE + HEADER_SIZE + NODE_ADDRESS_LENGTH
V1_REPLY_SURB_SIZE = REPLY_SURB_BASE_SIZE + LEGACY_SURB_HOPS * PAYLOAD_KEY_SIZE


def v2_reply_surb_size(hops: int) -> int:
    return REPLY_SURB_BASE_SIZE + hops * PAYLOAD_KEY_SEED_SIZE


class MessageType(IntEnum):
    PLAIN = 0
    REPLIABLE = 1
    REPLY = 2


class RepliableKind(IntEnum):
    """What a Repliable message carries; the wire tag also encodes the SURB format."""

    DATA = 0
    ADDITIONAL_SURBS = 1
    HEARTBEAT = 2


_V2_TAG_OFFSET = 3
_REPLY_DATA = 0
_REPLY_SURB_REQUEST = 1


@dataclass(frozen=True, slots=True)
class PlainMessage:
    """Raw bytes; the recipient learns nothing about the sender."""

    data: bytes


@dataclass(frozen=True, slots=True)
class RepliableMessage:
    """Data and/or reply SURBs filed by the recipient under ``sender_tag``.

    ``legacy`` selects the v1 SURB encoding (content tags 0–2) over v2 (tags 3–5).
    """

    sender_tag: bytes
    kind: RepliableKind
    reply_surbs: tuple[bytes, ...] = ()
    data: bytes = b""
    legacy: bool = True

    def __post_init__(self) -> None:
        if len(self.sender_tag) != SENDER_TAG_SIZE:
            raise MessageError(f"a sender tag is {SENDER_TAG_SIZE} bytes, got {len(self.sender_tag)}")
        if self.kind != RepliableKind.DATA and self.data:
            raise MessageError(f"a {self.kind.name} message carries no data")


@dataclass(frozen=True, slots=True)
class ReplyData:
    """A reply sent back through a SURB."""

    data: bytes


@dataclass(frozen=True, slots=True)
class SurbRequest:
    """Sent through a SURB by a replier running short: 'send ``amount`` more SURBs to ``recipient``'."""

    recipient: Recipient
    amount: int

    def __post_init__(self) -> None:
        if not 0 <= self.amount <= 0xFFFF_FFFF:
            raise MessageError(f"SURB request amount {self.amount} does not fit in u32")


NymMessage = PlainMessage | RepliableMessage | ReplyData | SurbRequest


def encode_message(message: NymMessage) -> bytes:
    if isinstance(message, PlainMessage):
        return bytes([MessageType.PLAIN]) + message.data
    if isinstance(message, RepliableMessage):
        tag = message.kind + (0 if message.legacy else _V2_TAG_OFFSET)
        surbs = _encode_surbs(message.reply_surbs, message.legacy)
        return bytes([MessageType.REPLIABLE]) + message.sender_tag + bytes([tag]) + surbs + message.data
    if isinstance(message, ReplyData):
        return bytes([MessageType.REPLY, _REPLY_DATA]) + message.data
    return (
        bytes([MessageType.REPLY, _REPLY_SURB_REQUEST])
        + message.recipient.to_bytes()
        + struct.pack(">I", message.amount)
    )


def decode_message(data: bytes) -> NymMessage:
    """Parse an unpadded message; raises ``MessageError`` on anything malformed."""
    if not data:
        raise MessageError("empty message: no type byte")
    kind, body = data[0], data[1:]
    if kind == MessageType.PLAIN:
        return PlainMessage(bytes(body))
    if kind == MessageType.REPLIABLE:
        return _decode_repliable(body)
    if kind == MessageType.REPLY:
        return _decode_reply(body)
    raise MessageError(f"unknown message type {kind}")


def _encode_surbs(surbs: tuple[bytes, ...], legacy: bool) -> bytes:
    if legacy:
        for surb in surbs:
            if len(surb) != V1_REPLY_SURB_SIZE:
                raise MessageError(f"v1 reply SURBs are {V1_REPLY_SURB_SIZE} bytes, got {len(surb)}")
        return struct.pack(">I", len(surbs)) + b"".join(surbs)
    if len(surbs) > 0xFFFF:
        raise MessageError(f"at most 65535 reply SURBs per message, got {len(surbs)}")
    hops = 0
    if surbs:
        hops, remainder = divmod(len(surbs[0]) - REPLY_SURB_BASE_SIZE, PAYLOAD_KEY_SEED_SIZE)
        if remainder or not 1 <= hops <= MAX_PATH_LENGTH:
            raise MessageError(f"a {len(surbs[0])}-byte SURB is not a v2 reply SURB")
        if any(len(surb) != len(surbs[0]) for surb in surbs):
            raise MessageError("all v2 reply SURBs in a message must have the same number of hops")
    return struct.pack(">HB", len(surbs), hops) + b"".join(surbs)


def _decode_surbs(body: bytes, legacy: bool) -> tuple[tuple[bytes, ...], bytes]:
    if legacy:
        if len(body) < 4:
            raise MessageError("repliable message too short for its SURB count")
        (count,) = struct.unpack_from(">I", body)
        size, offset = V1_REPLY_SURB_SIZE, 4
    else:
        if len(body) < 3:
            raise MessageError("repliable message too short for its SURB count and hops")
        count, hops = struct.unpack_from(">HB", body)
        if count and not 1 <= hops <= MAX_PATH_LENGTH:
            raise MessageError(f"reply SURBs cannot have {hops} hops")
        size, offset = v2_reply_surb_size(hops), 3
    if len(body) - offset < count * size:
        raise MessageError(f"message announces {count} reply SURBs but holds {len(body) - offset} bytes")
    surbs = tuple(bytes(body[offset + i * size : offset + (i + 1) * size]) for i in range(count))
    return surbs, bytes(body[offset + count * size :])


def _decode_repliable(body: bytes) -> RepliableMessage:
    if len(body) < SENDER_TAG_SIZE + 2:
        raise MessageError("repliable message too short")
    sender_tag, tag = bytes(body[:SENDER_TAG_SIZE]), body[SENDER_TAG_SIZE]
    if tag > RepliableKind.HEARTBEAT + _V2_TAG_OFFSET:
        raise MessageError(f"unknown repliable content tag {tag}")
    legacy = tag < _V2_TAG_OFFSET
    kind = RepliableKind(tag if legacy else tag - _V2_TAG_OFFSET)
    surbs, rest = _decode_surbs(body[SENDER_TAG_SIZE + 1 :], legacy)
    if kind == RepliableKind.DATA:
        return RepliableMessage(sender_tag, kind, surbs, rest, legacy)
    return RepliableMessage(sender_tag, kind, surbs, b"", legacy)


def _decode_reply(body: bytes) -> ReplyData | SurbRequest:
    if len(body) < 2:
        raise MessageError("reply message too short")
    tag, content = body[0], body[1:]
    if tag == _REPLY_DATA:
        return ReplyData(bytes(content))
    if tag == _REPLY_SURB_REQUEST:
        if len(content) != RECIPIENT_SIZE + 4:
            raise MessageError(f"a SURB request is {RECIPIENT_SIZE + 4} bytes, got {len(content)}")
        try:
            recipient = Recipient.from_bytes(bytes(content[:RECIPIENT_SIZE]))
        except RecipientError as exc:
            raise MessageError(f"SURB request names a bad recipient: {exc}") from None
        if not recipient.has_valid_identities:
            raise MessageError("SURB request names a recipient whose identity is not an ed25519 key")
        (amount,) = struct.unpack_from(">I", content, RECIPIENT_SIZE)
        return SurbRequest(recipient, amount)
    raise MessageError(f"unknown reply content tag {tag}")


def pad_message(data: bytes, fragment_size: int) -> bytes:
    """``data ‖ 01 ‖ 00…`` filling a whole number of ``fragment_size``-byte fragments exactly."""
    _, space_left = number_of_fragments(len(data) + 1, fragment_size)
    return data + b"\x01" + bytes(space_left)


def unpad_message(padded: bytes) -> bytes:
    """Cut at the last ``01``, as upstream ``PaddedMessage::remove_padding`` does.

    What follows the marker is not inspected (upstream accepts any non-``01`` bytes there), so a
    message a real client accepts is never refused here.
    """
    end = padded.rfind(b"\x01")
    if end < 0:
        raise MessageError("message has no padding marker")
    return bytes(padded[:end])
