"""nym-client websocket API codec: byte-exact against the spec's worked examples (§6), JSON forms, errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import ApiError
from smolmix_core.mixnet.api_codec import (
    ClosedConnectionRequest,
    ErrorKind,
    ErrorResponse,
    GetLaneQueueLengthRequest,
    LaneQueueLengthResponse,
    ReceivedResponse,
    ReplyRequest,
    SelfAddressRequest,
    SelfAddressResponse,
    SendAnonymousRequest,
    SendRequest,
    decode_request,
    decode_request_text,
    decode_response,
    decode_response_text,
    encode_request,
    encode_request_text,
    encode_response,
    encode_response_text,
)
from smolmix_core.mixnet.base58 import b58encode
from smolmix_core.mixnet.recipient import Recipient, is_ed25519_public_key

ADDRESS = (
    "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe"
    "@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f"
)
RECIPIENT = Recipient.parse(ADDRESS)
TAG = bytes([0x2A]) * 16


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


# --- spec §6 worked examples ----------------------------------------------------------------


def test_worked_examples_requests() -> None:
    assert encode_request(SelfAddressRequest()) == h("03")
    assert decode_request(h("03")) == SelfAddressRequest()
    assert encode_request(ClosedConnectionRequest(7)) == h("04 00 00 00 00 00 00 00 07")
    assert decode_request(h("04 00 00 00 00 00 00 00 07")) == ClosedConnectionRequest(7)
    assert encode_request(GetLaneQueueLengthRequest(7)) == h("05 00 00 00 00 00 00 00 07")
    assert decode_request(h("05 00 00 00 00 00 00 00 07")) == GetLaneQueueLengthRequest(7)

    payload45 = bytes(range(45))
    frame = encode_request(SendAnonymousRequest(RECIPIENT, payload45, reply_surbs=10))
    expected = (
        h("01 00 00 00 0A") + RECIPIENT.to_bytes() + h("00" * 8) + h("00 00 00 00 00 00 00 2D") + payload45
    )
    assert frame == expected
    assert decode_request(expected) == SendAnonymousRequest(RECIPIENT, payload45, 10, None)

    payload25 = b"r" * 25
    frame = encode_request(ReplyRequest(TAG, payload25))
    expected = h("02") + TAG + h("00" * 8) + h("00 00 00 00 00 00 00 19") + payload25
    assert frame == expected
    assert decode_request(expected) == ReplyRequest(TAG, payload25, None)


def test_worked_examples_responses() -> None:
    lane = h("03 00 00 00 00 00 00 00 0D 00 00 00 00 00 00 00 2A")
    assert encode_response(LaneQueueLengthResponse(13, 42)) == lane
    assert decode_response(lane) == LaneQueueLengthResponse(13, 42)

    tagged = h("01 01") + TAG + h("00 00 00 00 00 00 00 05 66 6F 6F 6D 70")
    assert len(tagged) == 31
    assert encode_response(ReceivedResponse(b"foomp", TAG)) == tagged
    assert decode_response(tagged) == ReceivedResponse(b"foomp", TAG)

    untagged = h("01 00 00 00 00 00 00 00 00 05 66 6F 6F 6D 70")
    assert encode_response(ReceivedResponse(b"foomp")) == untagged
    assert decode_response(untagged) == ReceivedResponse(b"foomp", None)

    error = h("00 03 00 00 00 00 00 00 00 0D 66 6F 6F 6D 70 20 6D 65 73 73 61 67 65")
    assert encode_response(ErrorResponse(ErrorKind.UNKNOWN_REQUEST, "foomp message")) == error
    assert decode_response(error) == ErrorResponse(ErrorKind.UNKNOWN_REQUEST, "foomp message")

    self_address = encode_response(SelfAddressResponse(RECIPIENT))
    assert self_address == b"\x02" + RECIPIENT.to_bytes()
    assert len(self_address) == 97
    assert decode_response(self_address) == SelfAddressResponse(RECIPIENT)


def test_send_layout_and_lanes() -> None:
    frame = encode_request(SendRequest(RECIPIENT, b"hi", connection_id=5))
    assert frame == b"\x00" + RECIPIENT.to_bytes() + (5).to_bytes(8, "big") + (2).to_bytes(8, "big") + b"hi"
    assert len(encode_request(SendRequest(RECIPIENT, b""))) == 113
    assert decode_request(frame) == SendRequest(RECIPIENT, b"hi", 5)
    # binary conn_id 0 is the General lane
    assert decode_request(encode_request(SendRequest(RECIPIENT, b"", 0))) == SendRequest(RECIPIENT, b"", None)
    assert len(encode_request(SendAnonymousRequest(RECIPIENT, b"", 0))) == 117
    assert len(encode_request(ReplyRequest(TAG, b""))) == 33


# --- error codes ----------------------------------------------------------------------------


def kind_of(frame: bytes) -> int:
    with pytest.raises(ApiError) as info:
        decode_request(frame)
    return info.value.kind


def test_every_request_error_code() -> None:
    assert kind_of(b"") == ErrorKind.EMPTY_REQUEST
    assert kind_of(b"\x06") == ErrorKind.UNKNOWN_REQUEST
    assert kind_of(b"\xff" + bytes(200)) == ErrorKind.UNKNOWN_REQUEST
    good_send = encode_request(SendRequest(RECIPIENT, b"abc"))
    assert kind_of(good_send[:112]) == ErrorKind.TOO_SHORT_REQUEST
    assert kind_of(good_send + b"x") == ErrorKind.MALFORMED_REQUEST
    assert kind_of(good_send[:-1]) == ErrorKind.MALFORMED_REQUEST
    good_anon = encode_request(SendAnonymousRequest(RECIPIENT, b"abc", 3))
    assert kind_of(good_anon[:116]) == ErrorKind.TOO_SHORT_REQUEST
    assert kind_of(good_anon[:-2]) == ErrorKind.MALFORMED_REQUEST
    good_reply = encode_request(ReplyRequest(TAG, b"abc"))
    assert kind_of(good_reply[:32]) == ErrorKind.TOO_SHORT_REQUEST
    assert kind_of(good_reply + b"!") == ErrorKind.MALFORMED_REQUEST
    assert kind_of(h("04 00 00 00")) == ErrorKind.TOO_SHORT_REQUEST
    assert kind_of(h("05 00 00 00 00 00 00 00 07 00")) == ErrorKind.MALFORMED_REQUEST
    # SelfAddress ignores trailing bytes, as upstream does
    assert decode_request(h("03 00")) == SelfAddressRequest()
    assert decode_request(b"\x03" + bytes(500)) == SelfAddressRequest()
    # an oversized declared length is a mismatch, never an allocation
    oversized = good_send[: 1 + 96 + 8] + (2**64 - 1).to_bytes(8, "big") + b"abc"
    assert kind_of(oversized) == ErrorKind.MALFORMED_REQUEST
    # a recipient whose identity is not a curve point
    bad_identity = next(
        bytes([i]) + bytes(31) for i in range(2, 256) if not is_ed25519_public_key(bytes([i]) + bytes(31))
    )
    bad = b"\x00" + bad_identity + RECIPIENT.to_bytes()[32:] + bytes(8) + bytes(8)
    assert kind_of(bad) == ErrorKind.MALFORMED_REQUEST


def test_response_error_codes() -> None:
    def response_kind(frame: bytes) -> int:
        with pytest.raises(ApiError) as info:
            decode_response(frame)
        return info.value.kind

    assert response_kind(b"") == ErrorKind.EMPTY_RESPONSE
    assert response_kind(b"\x09") == ErrorKind.UNKNOWN_RESPONSE
    assert response_kind(b"\x01\x00\x00") == ErrorKind.TOO_SHORT_RESPONSE
    assert response_kind(b"\x01\x02" + bytes(8)) == ErrorKind.MALFORMED_RESPONSE
    assert response_kind(b"\x01\x00" + (9).to_bytes(8, "big") + b"short") == ErrorKind.MALFORMED_RESPONSE
    assert response_kind(b"\x02" + bytes(95)) == ErrorKind.TOO_SHORT_RESPONSE
    # SelfAddress: any length but 97 is "too short" (as upstream), a bad identity is malformed
    assert response_kind(b"\x02" + bytes(97)) == ErrorKind.TOO_SHORT_RESPONSE
    assert response_kind(b"\x02" + RECIPIENT.to_bytes() + b"\x00") == ErrorKind.TOO_SHORT_RESPONSE
    not_a_point = (2).to_bytes(32, "little")
    bad = Recipient(not_a_point, RECIPIENT.encryption_key, RECIPIENT.gateway)
    assert response_kind(b"\x02" + bad.to_bytes()) == ErrorKind.MALFORMED_RESPONSE
    with pytest.raises(ApiError) as info:
        decode_response_text(encode_response_text(SelfAddressResponse(bad)))
    assert info.value.kind == ErrorKind.MALFORMED_RESPONSE
    assert response_kind(b"\x03" + bytes(17)) == ErrorKind.MALFORMED_RESPONSE
    assert response_kind(b"\x00\x42" + bytes(8)) == ErrorKind.MALFORMED_RESPONSE
    assert response_kind(b"\x00\x04" + (2).to_bytes(8, "big") + b"\xff\xfe") == ErrorKind.MALFORMED_RESPONSE
    utf8 = "naïve ✓".encode()
    assert decode_response(b"\x00\x04" + len(utf8).to_bytes(8, "big") + utf8) == ErrorResponse(
        ErrorKind.MALFORMED_REQUEST, "naïve ✓"
    )


def test_error_texts_are_the_spec_prefixes() -> None:
    expected = {
        0x01: "received request contained no data",
        0x02: "received request did not contain enough data",
        0x03: "unknown request type",
        0x04: "malformed request",
        0x80: "received response contained no data",
        0x81: "received response did not contain enough data",
        0x82: "unknown response type",
        0x83: "malformed response",
        0xFF: "other",
    }
    assert {int(kind): kind.text for kind in ErrorKind} == expected
    for kind in ErrorKind:
        text = encode_response_text(ErrorResponse(kind, "detail"))
        assert json.loads(text) == {"type": "error", "message": f"{expected[kind]}:detail"}
        assert decode_response_text(text) == ErrorResponse(kind, "detail")


# --- JSON forms -----------------------------------------------------------------------------


def test_json_requests() -> None:
    send = json.loads(encode_request_text(SendRequest(RECIPIENT, b"hello")))
    assert send == {"type": "send", "message": "hello", "recipient": ADDRESS, "connectionId": None}
    anon = json.loads(encode_request_text(SendAnonymousRequest(RECIPIENT, b"hi", 10, 0)))
    assert anon == {
        "type": "sendAnonymous",
        "recipient": ADDRESS,
        "message": "hi",
        "replySurbs": 10,
        "connectionId": 0,
    }
    reply = json.loads(encode_request_text(ReplyRequest(TAG, b"yo", 9)))
    assert reply == {"type": "reply", "senderTag": b58encode(TAG), "message": "yo", "connectionId": 9}
    assert json.loads(encode_request_text(SelfAddressRequest())) == {"type": "selfAddress"}
    for request in (
        SendRequest(RECIPIENT, b"hello"),
        SendAnonymousRequest(RECIPIENT, b"hi", 10, 0),
        ReplyRequest(TAG, b"yo", 9),
        SelfAddressRequest(),
    ):
        assert decode_request_text(encode_request_text(request)) == request
    # connectionId may be omitted; JSON 0 is a ConnectionId lane, not General
    omitted = decode_request_text(json.dumps({"type": "send", "message": "m", "recipient": ADDRESS}))
    assert omitted == SendRequest(RECIPIENT, b"m", None)
    with pytest.raises(ValueError, match="no JSON form"):
        encode_request_text(ClosedConnectionRequest(1))


def test_json_request_errors_are_malformed() -> None:
    bad_texts = [
        "not json",
        "[]",
        "{}",
        '{"type":"nope"}',
        json.dumps({"type": "send", "message": "m"}),
        json.dumps({"type": "send", "message": "m", "recipient": "nonsense"}),
        json.dumps({"type": "send", "message": 5, "recipient": ADDRESS}),
        json.dumps({"type": "sendAnonymous", "message": "m", "recipient": ADDRESS, "replySurbs": -1}),
        json.dumps({"type": "sendAnonymous", "message": "m", "recipient": ADDRESS, "replySurbs": 2**32}),
        json.dumps({"type": "send", "message": "m", "recipient": ADDRESS, "connectionId": "1"}),
        json.dumps({"type": "reply", "message": "m", "senderTag": "0OIl"}),
        json.dumps({"type": "reply", "message": "m", "senderTag": b58encode(b"short")}),
    ]
    for text in bad_texts:
        with pytest.raises(ApiError) as info:
            decode_request_text(text)
        assert info.value.kind == ErrorKind.MALFORMED_REQUEST, text


def test_json_responses() -> None:
    received = json.loads(encode_response_text(ReceivedResponse(b"foomp", TAG)))
    assert received == {"type": "received", "message": "foomp", "senderTag": b58encode(TAG)}
    lossy = json.loads(encode_response_text(ReceivedResponse(b"\xff ok")))
    assert lossy == {"type": "received", "message": "\ufffd ok", "senderTag": None}
    assert json.loads(encode_response_text(SelfAddressResponse(RECIPIENT))) == {
        "type": "selfAddress",
        "address": ADDRESS,
    }
    lane = json.loads(encode_response_text(LaneQueueLengthResponse(13, 42)))
    assert lane == {"type": "laneQueueLength", "lane": 13, "queue_length": 42}
    assert decode_response_text(
        '{"type":"laneQueueLength","lane":1,"queueLength":2}'
    ) == LaneQueueLengthResponse(1, 2)
    for response in (
        ReceivedResponse(b"foomp", TAG),
        ReceivedResponse(b"x"),
        SelfAddressResponse(RECIPIENT),
        LaneQueueLengthResponse(13, 42),
    ):
        assert decode_response_text(encode_response_text(response)) == response
    with pytest.raises(ApiError) as info:
        decode_response_text('{"type":"mystery"}')
    assert info.value.kind == ErrorKind.UNKNOWN_RESPONSE


def test_spec_recipient_is_a_valid_point() -> None:
    assert RECIPIENT.has_valid_identities
    assert not is_ed25519_public_key((2).to_bytes(32, "little"))


def test_recipient_keys_are_checked_as_upstream_decompresses_them() -> None:
    """dalek accepts a non-canonical y (≥ p) and x = 0 with the sign bit set; so must we."""
    p = 2**255 - 19
    for lenient in ((1 | 1 << 255).to_bytes(32, "little"), (p + 1).to_bytes(32, "little")):
        recipient = Recipient(lenient, RECIPIENT.encryption_key, lenient)
        frame = encode_request(SendRequest(recipient, b"x"))
        assert decode_request(frame) == SendRequest(recipient, b"x")
        text = encode_request_text(SendAnonymousRequest(recipient, b"x", 1))
        assert decode_request_text(text) == SendAnonymousRequest(recipient, b"x", 1)
    not_a_point = next(
        k for k in (bytes([i]) + bytes(31) for i in range(2, 256)) if not is_ed25519_public_key(k)
    )
    for bad in (
        Recipient(not_a_point, RECIPIENT.encryption_key, RECIPIENT.gateway),
        Recipient(RECIPIENT.identity, RECIPIENT.encryption_key, not_a_point),
    ):
        assert kind_of(encode_request(SendRequest(bad, b""))) == ErrorKind.MALFORMED_REQUEST
        with pytest.raises(ApiError) as info:
            decode_request_text(encode_request_text(SendRequest(bad, b"")))
        assert info.value.kind == ErrorKind.MALFORMED_REQUEST


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=300),
    lane=st.one_of(st.none(), st.integers(1, 2**64 - 1)),
    surbs=st.integers(0, 2**32 - 1),
    tag=st.binary(min_size=16, max_size=16),
)
def test_binary_round_trips(data: bytes, lane: int | None, surbs: int, tag: bytes) -> None:
    for request in (
        SendRequest(RECIPIENT, data, lane),
        SendAnonymousRequest(RECIPIENT, data, surbs, lane),
        ReplyRequest(tag, data, lane),
    ):
        assert decode_request(encode_request(request)) == request
    for response in (ReceivedResponse(data, tag), ReceivedResponse(data)):
        assert decode_response(encode_response(response)) == response


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_never_crashes_the_decoders(frame: bytes) -> None:
    for decode in (decode_request, decode_response):
        kinds: list[int] = []
        try:
            decode(frame)
        except ApiError as exc:
            kinds.append(exc.kind)
        assert all(1 <= kind <= 0xFF for kind in kinds)


def test_json_sender_tag_length_is_bounded_before_decoding() -> None:
    huge = "2" * 200_000  # quadratic to decode; the bound refuses it by its length alone
    with pytest.raises(ApiError, match="cannot encode") as info:
        decode_request_text(json.dumps({"type": "reply", "message": "m", "senderTag": huge}))
    assert info.value.kind == ErrorKind.MALFORMED_REQUEST
    with pytest.raises(ApiError, match="cannot encode") as info:
        decode_response_text(json.dumps({"type": "received", "message": "m", "senderTag": huge}))
    assert info.value.kind == ErrorKind.MALFORMED_RESPONSE
    # the longest text that still encodes 16 bytes is accepted
    widest = b58encode(b"\xff" * 16)
    assert decode_request_text(
        json.dumps({"type": "reply", "message": "m", "senderTag": widest})
    ) == ReplyRequest(b"\xff" * 16, b"m")
