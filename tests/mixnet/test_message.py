"""NymMessage bodies: Plain, Repliable (every content tag, v1 and v2 SURBs), Reply, padding."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import MessageError
from smolmix_core.mixnet.message import (
    V1_REPLY_SURB_SIZE,
    PlainMessage,
    RepliableKind,
    RepliableMessage,
    ReplyData,
    SurbRequest,
    decode_message,
    encode_message,
    pad_message,
    unpad_message,
    v2_reply_surb_size,
)
from smolmix_core.mixnet.recipient import Recipient

TAG = bytes(range(16))
RECIPIENT = Recipient(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)


def _surbs(count: int, size: int) -> tuple[bytes, ...]:
    rng = random.Random(count * 7919 + size)
    return tuple(rng.randbytes(size) for _ in range(count))


def test_sizes_match_the_spec() -> None:
    assert V1_REPLY_SURB_SIZE == 1164
    assert v2_reply_surb_size(4) == 460


def test_plain_layout() -> None:
    assert encode_message(PlainMessage(b"hi")) == b"\x00hi"
    assert decode_message(b"\x00hi") == PlainMessage(b"hi")
    assert decode_message(b"\x00") == PlainMessage(b"")


@pytest.mark.parametrize("legacy", [True, False])
@pytest.mark.parametrize("kind", list(RepliableKind))
@pytest.mark.parametrize("count", [0, 1, 3])
def test_repliable_round_trip_every_content_tag(legacy: bool, kind: RepliableKind, count: int) -> None:
    surbs = _surbs(count, V1_REPLY_SURB_SIZE if legacy else v2_reply_surb_size(4))
    data = b"payload" if kind == RepliableKind.DATA else b""
    message = RepliableMessage(TAG, kind, surbs, data, legacy)
    raw = encode_message(message)
    tag = kind + (0 if legacy else 3)
    assert raw[:18] == b"\x01" + TAG + bytes([tag])
    if legacy:
        assert raw[18:22] == struct.pack(">I", count)
    else:
        assert raw[18:21] == struct.pack(">HB", count, 4 if count else 0)
    assert decode_message(raw) == message


def test_v2_with_other_hop_counts() -> None:
    message = RepliableMessage(TAG, RepliableKind.DATA, _surbs(2, v2_reply_surb_size(3)), b"x", legacy=False)
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize("hops", [0, 4, 9, 255])
def test_v2_without_surbs_ignores_the_hops_byte_like_upstream(hops: int) -> None:
    # anonymous-replies requests/v2.rs: with a count of 0 the hops byte is read but never used.
    raw = b"\x01" + TAG + b"\x03\x00\x00" + bytes([hops]) + b"data"
    assert decode_message(raw) == RepliableMessage(TAG, RepliableKind.DATA, (), b"data", legacy=False)
    encoded = encode_message(RepliableMessage(TAG, RepliableKind.DATA, (), b"d", legacy=False))
    assert encoded[18:21] == bytes(3)


def test_reply_layouts() -> None:
    assert encode_message(ReplyData(b"answer")) == b"\x02\x00answer"
    assert decode_message(b"\x02\x00answer") == ReplyData(b"answer")
    request = SurbRequest(RECIPIENT, 42)
    raw = encode_message(request)
    assert raw == b"\x02\x01" + RECIPIENT.to_bytes() + b"\x00\x00\x00\x2a"
    assert decode_message(raw) == request


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty"),
        (b"\x07abc", "unknown message type"),
        (b"\x01" + TAG, "too short"),
        (b"\x01" + TAG + b"\x06\x00\x00", "unknown repliable content tag"),
        (b"\x01" + TAG + b"\x00\x00\x00", "too short for its SURB count"),
        (b"\x01" + TAG + b"\x00\x00\x00\x00\x02" + bytes(100), "announces 2 reply SURBs"),
        (b"\x01" + TAG + b"\x03\x00\x01\x09" + bytes(2000), "cannot have 9 hops"),
        (b"\x01" + TAG + b"\x03\x00\x01\x00", "cannot have 0 hops"),
        (b"\x01" + TAG + b"\x05\x00\x01\x06" + bytes(500), "cannot have 6 hops"),
        (b"\x01" + TAG + b"\x04\x00\x01\x04" + bytes(459), "announces 1 reply SURBs"),
        (b"\x02", "too short"),
        (b"\x02\x05x", "unknown reply content tag"),
        (b"\x02\x01" + bytes(99), "SURB request is 100 bytes"),
        # upstream Recipient::try_from_bytes: the identities must decompress as ed25519 points
        (b"\x02\x01" + (2).to_bytes(32, "little") + bytes(64) + b"\x00\x00\x00\x0a", "not an ed25519 key"),
        (b"\x02\x01" + b"\x01" * 64 + (2).to_bytes(32, "little") + b"\x00\x00\x00\x0a", "not an ed25519 key"),
    ],
)
def test_malformed_messages(raw: bytes, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        decode_message(raw)


def test_encoding_rejects_inconsistent_surbs() -> None:
    with pytest.raises(MessageError, match="v1 reply SURBs are 1164"):
        encode_message(RepliableMessage(TAG, RepliableKind.DATA, (bytes(460),), legacy=True))
    mixed = (bytes(v2_reply_surb_size(4)), bytes(v2_reply_surb_size(3)))
    with pytest.raises(MessageError, match="same number of hops"):
        encode_message(RepliableMessage(TAG, RepliableKind.DATA, mixed, legacy=False))
    with pytest.raises(MessageError, match="carries no data"):
        RepliableMessage(TAG, RepliableKind.HEARTBEAT, (), b"data")
    with pytest.raises(MessageError, match="sender tag"):
        RepliableMessage(b"short", RepliableKind.DATA)
    with pytest.raises(MessageError, match="u32"):
        SurbRequest(RECIPIENT, 2**32)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=5000))
def test_padding_fills_whole_fragments_and_unpads(data: bytes) -> None:
    padded = pad_message(data, 1611)
    assert len(padded) % 1604 == 0
    assert len(padded) > len(data)
    assert unpad_message(padded) == data


def test_unpad_rejects_a_missing_marker_and_ignores_the_tail_like_upstream() -> None:
    with pytest.raises(MessageError, match="no padding marker"):
        unpad_message(bytes(10))
    # nymsphinx message.rs remove_padding: rposition(1) and cut, the tail is not checked.
    assert unpad_message(b"abc\x01\x00\x02") == b"abc"
    assert unpad_message(b"a\x01b\x01\x00") == b"a\x01b"
