"""The nym-client websocket API as bytes and JSON, without I/O (spec ``nym-client-api.md``).

Requests go application → client, responses client → application. Each has a binary form (one
tag byte, big-endian integers, ``u64`` length prefixes) and, for most, a JSON text form. Decoders
raise ``ApiError`` whose ``kind`` is the spec's error code, so a server can answer with
``ErrorResponse(error.kind, error.message)`` and a client can report a broken server precisely.

``connection_id``: ``None`` is the General lane. In binary it travels as 0 (and 0 decodes to
``None``); in JSON as ``null``/absent, while any number (0 included) names a ConnectionId lane.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from smolmix_core.errors import ApiError, RecipientError
from smolmix_core.mixnet.base58 import b58decode, b58encode
from smolmix_core.mixnet.message import SENDER_TAG_SIZE
from smolmix_core.mixnet.recipient import RECIPIENT_SIZE, Recipient

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_MAX_U64 = 2**64 - 1
_MAX_U32 = 2**32 - 1


class ErrorKind(enum.IntEnum):
    """Error codes: 0x01–0x7F are about requests, 0x80–0xFE about responses."""

    EMPTY_REQUEST = 0x01
    TOO_SHORT_REQUEST = 0x02
    UNKNOWN_REQUEST = 0x03
    MALFORMED_REQUEST = 0x04
    EMPTY_RESPONSE = 0x80
    TOO_SHORT_RESPONSE = 0x81
    UNKNOWN_RESPONSE = 0x82
    MALFORMED_RESPONSE = 0x83
    OTHER = 0xFF

    @property
    def text(self) -> str:
        """The fixed description that prefixes the JSON form of an error."""
        return _ERROR_TEXT[self]


_ERROR_TEXT = {
    ErrorKind.EMPTY_REQUEST: "received request contained no data",
    ErrorKind.TOO_SHORT_REQUEST: "received request did not contain enough data",
    ErrorKind.UNKNOWN_REQUEST: "unknown request type",
    ErrorKind.MALFORMED_REQUEST: "malformed request",
    ErrorKind.EMPTY_RESPONSE: "received response contained no data",
    ErrorKind.TOO_SHORT_RESPONSE: "received response did not contain enough data",
    ErrorKind.UNKNOWN_RESPONSE: "unknown response type",
    ErrorKind.MALFORMED_RESPONSE: "malformed response",
    ErrorKind.OTHER: "other",
}


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendRequest:
    recipient: Recipient
    data: bytes
    connection_id: int | None = None


@dataclass(frozen=True, slots=True)
class SendAnonymousRequest:
    recipient: Recipient
    data: bytes
    reply_surbs: int
    connection_id: int | None = None


@dataclass(frozen=True, slots=True)
class ReplyRequest:
    sender_tag: bytes
    data: bytes
    connection_id: int | None = None


@dataclass(frozen=True, slots=True)
class SelfAddressRequest:
    pass


@dataclass(frozen=True, slots=True)
class ClosedConnectionRequest:
    connection_id: int


@dataclass(frozen=True, slots=True)
class GetLaneQueueLengthRequest:
    connection_id: int


Request = (
    SendRequest
    | SendAnonymousRequest
    | ReplyRequest
    | SelfAddressRequest
    | ClosedConnectionRequest
    | GetLaneQueueLengthRequest
)


# --- responses ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorResponse:
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class ReceivedResponse:
    data: bytes
    sender_tag: bytes | None = None


@dataclass(frozen=True, slots=True)
class SelfAddressResponse:
    recipient: Recipient


@dataclass(frozen=True, slots=True)
class LaneQueueLengthResponse:
    lane: int
    queue_length: int


Response = ErrorResponse | ReceivedResponse | SelfAddressResponse | LaneQueueLengthResponse


# --- binary requests ------------------------------------------------------------------------

_SEND, _SEND_ANONYMOUS, _REPLY, _SELF_ADDRESS, _CLOSED_CONNECTION, _GET_LANE_QUEUE_LENGTH = range(6)
_SEND_MIN = 1 + RECIPIENT_SIZE + 16
_SEND_ANONYMOUS_MIN = 1 + 4 + RECIPIENT_SIZE + 16
_REPLY_MIN = 1 + SENDER_TAG_SIZE + 16
_CONNECTION_FRAME = 1 + 8


def _lane_to_wire(connection_id: int | None) -> bytes:
    value = 0 if connection_id is None else connection_id
    if not 0 <= value <= _MAX_U64:
        raise ValueError(f"connection id out of u64 range: {value}")
    return _U64.pack(value)


def _lane_from_wire(value: int) -> int | None:
    return None if value == 0 else value


def encode_request(request: Request) -> bytes:
    """The binary frame for ``request``."""
    if isinstance(request, SendRequest):
        return b"".join(
            (
                bytes([_SEND]),
                request.recipient.to_bytes(),
                _lane_to_wire(request.connection_id),
                _U64.pack(len(request.data)),
                request.data,
            )
        )
    if isinstance(request, SendAnonymousRequest):
        return b"".join(
            (
                bytes([_SEND_ANONYMOUS]),
                _U32.pack(request.reply_surbs),
                request.recipient.to_bytes(),
                _lane_to_wire(request.connection_id),
                _U64.pack(len(request.data)),
                request.data,
            )
        )
    if isinstance(request, ReplyRequest):
        _check_sender_tag(request.sender_tag)
        return b"".join(
            (
                bytes([_REPLY]),
                request.sender_tag,
                _lane_to_wire(request.connection_id),
                _U64.pack(len(request.data)),
                request.data,
            )
        )
    if isinstance(request, SelfAddressRequest):
        return bytes([_SELF_ADDRESS])
    if isinstance(request, ClosedConnectionRequest):
        return bytes([_CLOSED_CONNECTION]) + _U64.pack(request.connection_id)
    return bytes([_GET_LANE_QUEUE_LENGTH]) + _U64.pack(request.connection_id)


def decode_request(frame: bytes) -> Request:
    """Parse a binary request frame; ``ApiError`` carries the spec's error kind."""
    if not frame:
        raise ApiError(ErrorKind.EMPTY_REQUEST, "no data provided")
    tag = frame[0]
    if tag == _SEND:
        _need(frame, _SEND_MIN, "send", ErrorKind.TOO_SHORT_REQUEST)
        recipient = _recipient_from_wire(frame[1 : 1 + RECIPIENT_SIZE])
        lane, data = _lane_and_data(frame, 1 + RECIPIENT_SIZE, "data")
        return SendRequest(recipient, data, lane)
    if tag == _SEND_ANONYMOUS:
        _need(frame, _SEND_ANONYMOUS_MIN, "send_anonymous", ErrorKind.TOO_SHORT_REQUEST)
        (reply_surbs,) = _U32.unpack_from(frame, 1)
        recipient = _recipient_from_wire(frame[5 : 5 + RECIPIENT_SIZE])
        lane, data = _lane_and_data(frame, 5 + RECIPIENT_SIZE, "data")
        return SendAnonymousRequest(recipient, data, reply_surbs, lane)
    if tag == _REPLY:
        _need(frame, _REPLY_MIN, "reply", ErrorKind.TOO_SHORT_REQUEST)
        sender_tag = bytes(frame[1 : 1 + SENDER_TAG_SIZE])
        lane, data = _lane_and_data(frame, 1 + SENDER_TAG_SIZE, "message")
        return ReplyRequest(sender_tag, data, lane)
    if tag == _SELF_ADDRESS:
        return SelfAddressRequest()  # upstream ignores anything after the tag
    if tag in (_CLOSED_CONNECTION, _GET_LANE_QUEUE_LENGTH):
        name = "closed_connection" if tag == _CLOSED_CONNECTION else "get_lane_queue_length"
        _need(frame, _CONNECTION_FRAME, name, ErrorKind.TOO_SHORT_REQUEST)
        if len(frame) != _CONNECTION_FRAME:
            raise ApiError(
                ErrorKind.MALFORMED_REQUEST,
                f"'{name}' is exactly {_CONNECTION_FRAME} bytes, got {len(frame)}",
            )
        (connection_id,) = _U64.unpack_from(frame, 1)
        if tag == _CLOSED_CONNECTION:
            return ClosedConnectionRequest(connection_id)
        return GetLaneQueueLengthRequest(connection_id)
    raise ApiError(ErrorKind.UNKNOWN_REQUEST, f"{tag} does not correspond to any valid request tag")


def _need(frame: bytes, size: int, name: str, kind: ErrorKind) -> None:
    if len(frame) < size:
        raise ApiError(kind, f"not enough data provided to recover '{name}': {len(frame)} < {size} bytes")


def _lane_and_data(frame: bytes, offset: int, what: str) -> tuple[int | None, bytes]:
    (connection_id,) = _U64.unpack_from(frame, offset)
    (declared,) = _U64.unpack_from(frame, offset + 8)
    data = bytes(frame[offset + 16 :])
    if declared != len(data):
        raise ApiError(
            ErrorKind.MALFORMED_REQUEST,
            f"{what} len has inconsistent length. specified: {declared} got: {len(data)}",
        )
    return _lane_from_wire(connection_id), data


def _recipient_from_wire(raw: bytes) -> Recipient:
    recipient = Recipient.from_bytes(bytes(raw))
    _check_identities(recipient, ErrorKind.MALFORMED_REQUEST)
    return recipient


def _check_identities(recipient: Recipient, kind: ErrorKind) -> None:
    if not recipient.has_valid_identities:
        raise ApiError(kind, "malformed recipient: identity key is not an ed25519 point")


def _check_sender_tag(tag: bytes) -> None:
    if len(tag) != SENDER_TAG_SIZE:
        raise ValueError(f"a sender tag is {SENDER_TAG_SIZE} bytes, got {len(tag)}")


# --- binary responses -----------------------------------------------------------------------

_ERROR, _RECEIVED, _SELF_ADDRESS_RESPONSE, _LANE_QUEUE_LENGTH = range(4)


def encode_response(response: Response) -> bytes:
    """The binary frame for ``response``."""
    if isinstance(response, ErrorResponse):
        message = response.message.encode()
        return bytes([_ERROR, int(response.kind)]) + _U64.pack(len(message)) + message
    if isinstance(response, ReceivedResponse):
        if response.sender_tag is None:
            head = bytes([_RECEIVED, 0])
        else:
            _check_sender_tag(response.sender_tag)
            head = bytes([_RECEIVED, 1]) + response.sender_tag
        return head + _U64.pack(len(response.data)) + response.data
    if isinstance(response, SelfAddressResponse):
        return bytes([_SELF_ADDRESS_RESPONSE]) + response.recipient.to_bytes()
    return bytes([_LANE_QUEUE_LENGTH]) + _U64.pack(response.lane) + _U64.pack(response.queue_length)


def decode_response(frame: bytes) -> Response:
    """Parse a binary response frame (for a client of a real nym-client)."""
    if not frame:
        raise ApiError(ErrorKind.EMPTY_RESPONSE, "no data provided")
    tag = frame[0]
    if tag == _ERROR:
        _need(frame, 10, "error", ErrorKind.TOO_SHORT_RESPONSE)
        try:
            kind = ErrorKind(frame[1])
        except ValueError:
            raise ApiError(ErrorKind.MALFORMED_RESPONSE, f"unknown error kind {frame[1]}") from None
        message = _sized(frame, 2, "error message", ErrorKind.MALFORMED_RESPONSE)
        try:
            return ErrorResponse(kind, message.decode())
        except UnicodeDecodeError:
            raise ApiError(ErrorKind.MALFORMED_RESPONSE, "error message is not UTF-8") from None
    if tag == _RECEIVED:
        _need(frame, 10, "received", ErrorKind.TOO_SHORT_RESPONSE)
        flag = frame[1]
        if flag == 0:
            return ReceivedResponse(_sized(frame, 2, "message", ErrorKind.MALFORMED_RESPONSE), None)
        if flag == 1:
            _need(frame, 2 + SENDER_TAG_SIZE + 8, "received", ErrorKind.TOO_SHORT_RESPONSE)
            sender_tag = bytes(frame[2 : 2 + SENDER_TAG_SIZE])
            data = _sized(frame, 2 + SENDER_TAG_SIZE, "message", ErrorKind.MALFORMED_RESPONSE)
            return ReceivedResponse(data, sender_tag)
        raise ApiError(ErrorKind.MALFORMED_RESPONSE, f"has_sender_tag must be 0 or 1, got {flag}")
    if tag == _SELF_ADDRESS_RESPONSE:
        if len(frame) != 1 + RECIPIENT_SIZE:  # upstream calls any other length "too short"
            raise ApiError(
                ErrorKind.TOO_SHORT_RESPONSE,
                f"not enough data provided to recover 'self_address': {len(frame)} != 97 bytes",
            )
        recipient = Recipient.from_bytes(bytes(frame[1:]))
        _check_identities(recipient, ErrorKind.MALFORMED_RESPONSE)
        return SelfAddressResponse(recipient)
    if tag == _LANE_QUEUE_LENGTH:
        _need(frame, 17, "lane_queue_length", ErrorKind.TOO_SHORT_RESPONSE)
        if len(frame) != 17:
            raise ApiError(
                ErrorKind.MALFORMED_RESPONSE, f"'lane_queue_length' is exactly 17 bytes, got {len(frame)}"
            )
        lane, queue_length = struct.unpack_from(">QQ", frame, 1)
        return LaneQueueLengthResponse(lane, queue_length)
    raise ApiError(ErrorKind.UNKNOWN_RESPONSE, f"{tag} does not correspond to any valid response tag")


def _sized(frame: bytes, offset: int, what: str, kind: ErrorKind) -> bytes:
    (declared,) = _U64.unpack_from(frame, offset)
    data = bytes(frame[offset + 8 :])
    if declared != len(data):
        raise ApiError(kind, f"{what} len has inconsistent length. specified: {declared} got: {len(data)}")
    return data


# --- JSON -----------------------------------------------------------------------------------


def encode_request_text(request: Request) -> str:
    """The JSON form of ``request``; ClosedConnection and GetLaneQueueLength have none."""
    body: dict[str, Any]
    if isinstance(request, SendRequest):
        body = {
            "type": "send",
            "message": _text_message(request.data),
            "recipient": str(request.recipient),
            "connectionId": request.connection_id,
        }
    elif isinstance(request, SendAnonymousRequest):
        body = {
            "type": "sendAnonymous",
            "recipient": str(request.recipient),
            "message": _text_message(request.data),
            "replySurbs": request.reply_surbs,
            "connectionId": request.connection_id,
        }
    elif isinstance(request, ReplyRequest):
        _check_sender_tag(request.sender_tag)
        body = {
            "type": "reply",
            "senderTag": b58encode(request.sender_tag),
            "message": _text_message(request.data),
            "connectionId": request.connection_id,
        }
    elif isinstance(request, SelfAddressRequest):
        body = {"type": "selfAddress"}
    else:
        raise ValueError(f"{type(request).__name__} has no JSON form; send it as binary")
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def _text_message(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ValueError("the JSON API carries UTF-8 text only; use the binary form for bytes") from None


def decode_request_text(text: str) -> Request:
    """Parse a JSON request; errors are ``MalformedRequest`` (or ``UnknownRequest`` for a bad type)."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ApiError(ErrorKind.MALFORMED_REQUEST, str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(ErrorKind.MALFORMED_REQUEST, "a JSON request is an object")
    kind = body.get("type")
    if kind == "send":
        return SendRequest(
            _recipient_field(body),
            _message_field(body),
            _lane_field(body),
        )
    if kind == "sendAnonymous":
        surbs: Any = body.get("replySurbs")
        if not _is_uint(surbs, _MAX_U32):
            raise ApiError(ErrorKind.MALFORMED_REQUEST, f"replySurbs must be a u32, got {surbs!r}")
        return SendAnonymousRequest(_recipient_field(body), _message_field(body), surbs, _lane_field(body))
    if kind == "reply":
        tag_text = body.get("senderTag")
        if not isinstance(tag_text, str):
            raise ApiError(ErrorKind.MALFORMED_REQUEST, "missing field `senderTag`")
        try:
            sender_tag = b58decode(tag_text, max_size=SENDER_TAG_SIZE)
        except ValueError as exc:
            raise ApiError(ErrorKind.MALFORMED_REQUEST, f"senderTag is not base58: {exc}") from None
        if len(sender_tag) != SENDER_TAG_SIZE:
            raise ApiError(ErrorKind.MALFORMED_REQUEST, f"senderTag must decode to {SENDER_TAG_SIZE} bytes")
        return ReplyRequest(sender_tag, _message_field(body), _lane_field(body))
    if kind == "selfAddress":
        return SelfAddressRequest()
    if isinstance(kind, str):
        raise ApiError(ErrorKind.MALFORMED_REQUEST, f"unknown variant `{kind}`")
    raise ApiError(ErrorKind.MALFORMED_REQUEST, "missing field `type`")


def _is_uint(value: Any, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def _recipient_field(body: dict[str, Any]) -> Recipient:
    text = body.get("recipient")
    if not isinstance(text, str):
        raise ApiError(ErrorKind.MALFORMED_REQUEST, "missing field `recipient`")
    try:
        recipient = Recipient.parse(text)
    except RecipientError as exc:
        raise ApiError(ErrorKind.MALFORMED_REQUEST, str(exc)) from None
    _check_identities(recipient, ErrorKind.MALFORMED_REQUEST)
    return recipient


def _message_field(body: dict[str, Any]) -> bytes:
    message = body.get("message")
    if not isinstance(message, str):
        raise ApiError(ErrorKind.MALFORMED_REQUEST, "missing field `message`")
    return message.encode()


def _lane_field(body: dict[str, Any]) -> int | None:
    value = body.get("connectionId")
    if value is None:
        return None
    if not _is_uint(value, _MAX_U64):
        raise ApiError(ErrorKind.MALFORMED_REQUEST, f"connectionId must be a u64 or null, got {value!r}")
    return int(value)


def encode_response_text(response: Response) -> str:
    """The JSON form of ``response`` (received bytes become lossy UTF-8)."""
    body: dict[str, Any]
    if isinstance(response, ErrorResponse):
        body = {"type": "error", "message": f"{response.kind.text}:{response.message}"}
    elif isinstance(response, ReceivedResponse):
        body = {
            "type": "received",
            "message": response.data.decode(errors="replace"),
            "senderTag": None if response.sender_tag is None else b58encode(response.sender_tag),
        }
    elif isinstance(response, SelfAddressResponse):
        body = {"type": "selfAddress", "address": str(response.recipient)}
    else:
        body = {"type": "laneQueueLength", "lane": response.lane, "queue_length": response.queue_length}
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def decode_response_text(text: str) -> Response:
    """Parse a JSON response. Error kinds are recovered from the message's fixed prefix."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ApiError(ErrorKind.MALFORMED_RESPONSE, str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(ErrorKind.MALFORMED_RESPONSE, "a JSON response is an object")
    kind = body.get("type")
    try:
        if kind == "received":
            tag_text = body.get("senderTag")
            sender_tag = None if tag_text is None else b58decode(tag_text, max_size=SENDER_TAG_SIZE)
            if sender_tag is not None and len(sender_tag) != SENDER_TAG_SIZE:
                raise ValueError("senderTag is not 16 bytes")
            return ReceivedResponse(str(body["message"]).encode(), sender_tag)
        if kind == "selfAddress":
            recipient = Recipient.parse(body["address"])
            _check_identities(recipient, ErrorKind.MALFORMED_RESPONSE)
            return SelfAddressResponse(recipient)
        if kind == "laneQueueLength":
            length = body["queue_length"] if "queue_length" in body else body["queueLength"]
            if not (_is_uint(body["lane"], _MAX_U64) and _is_uint(length, _MAX_U64)):
                raise ValueError("lane and queue_length are u64")
            return LaneQueueLengthResponse(body["lane"], length)
        if kind == "error":
            return _error_from_text(str(body["message"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ApiError(ErrorKind.MALFORMED_RESPONSE, f"bad {kind} response: {exc!r}") from None
    raise ApiError(ErrorKind.UNKNOWN_RESPONSE, f"unknown response type {kind!r}")


def _error_from_text(message: str) -> ErrorResponse:
    for kind in sorted(ErrorKind, key=lambda k: -len(k.text)):
        prefix = kind.text + ":"
        if message.startswith(prefix):
            return ErrorResponse(kind, message[len(prefix) :])
    return ErrorResponse(ErrorKind.OTHER, message)


__all__ = [
    "SENDER_TAG_SIZE",
    "ClosedConnectionRequest",
    "ErrorKind",
    "ErrorResponse",
    "GetLaneQueueLengthRequest",
    "LaneQueueLengthResponse",
    "ReceivedResponse",
    "ReplyRequest",
    "Request",
    "Response",
    "SelfAddressRequest",
    "SelfAddressResponse",
    "SendAnonymousRequest",
    "SendRequest",
    "decode_request",
    "decode_request_text",
    "decode_response",
    "decode_response_text",
    "encode_request",
    "encode_request_text",
    "encode_response",
    "encode_response_text",
]
