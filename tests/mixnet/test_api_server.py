"""The devnet's nym-client websocket API: applications talking to the mixnet through it."""

from __future__ import annotations

import json
import os

import anyio
import pytest

from smolmix_core.devnet import Devnet
from smolmix_core.errors import LinkError, WebSocketClosed
from smolmix_core.mixnet.api_codec import (
    ClosedConnectionRequest,
    ErrorKind,
    ErrorResponse,
    GetLaneQueueLengthRequest,
    LaneQueueLengthResponse,
    ReceivedResponse,
    ReplyRequest,
    Response,
    SelfAddressRequest,
    SelfAddressResponse,
    SendAnonymousRequest,
    SendRequest,
    decode_response,
    decode_response_text,
    encode_request,
    encode_request_text,
)
from smolmix_core.mixnet.base58 import b58encode
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.ws import WebSocket, ws_connect

pytestmark = pytest.mark.anyio


async def request(websocket: WebSocket, frame: bytes | str) -> Response:
    await websocket.send(frame)
    return await next_response(websocket)


async def next_response(websocket: WebSocket, within: float = 20.0) -> Response:
    with anyio.fail_after(within):
        answer = await websocket.receive()
    return decode_response_text(answer) if isinstance(answer, str) else decode_response(answer)


async def self_address(websocket: WebSocket) -> Recipient:
    response = await request(websocket, encode_request(SelfAddressRequest()))
    assert isinstance(response, SelfAddressResponse)
    return response.recipient


async def test_two_api_clients_exchange_send_anonymous_and_reply() -> None:
    async with Devnet.start(seed=21) as net:
        app = await ws_connect(net.describe().api_url(0))
        service = await ws_connect(net.describe().api_url(1))
        app_address = await self_address(app)
        service_address = await self_address(service)
        assert app_address != service_address
        assert app_address.gateway == net.topology.gateways[0].identity
        assert service_address.gateway == net.topology.gateways[1].identity

        payload = os.urandom(3000)
        await app.send(encode_request(SendAnonymousRequest(service_address, payload, reply_surbs=5)))
        received = await next_response(service)
        assert isinstance(received, ReceivedResponse)
        assert received.data == payload
        assert received.sender_tag is not None

        answer = os.urandom(9000)
        await service.send(encode_request(ReplyRequest(received.sender_tag, answer)))
        reply = await next_response(app)
        assert reply == ReceivedResponse(answer, None)

        await app.send(encode_request(SendRequest(service_address, b"plain")))
        assert await next_response(service) == ReceivedResponse(b"plain", None)
        for websocket in (app, service):
            await websocket.aclose()


async def test_json_requests_and_the_text_versus_binary_rule() -> None:
    async with Devnet.start(seed=22) as net:
        app = await ws_connect(net.describe().api_url(0))
        peer = await ws_connect(net.describe().api_url(1))
        answer = await request(app, encode_request_text(SelfAddressRequest()))
        assert isinstance(answer, SelfAddressResponse)
        peer_address = await self_address(peer)

        # the peer's last request was text, so what it receives is pushed as text
        await peer.send(json.dumps({"type": "selfAddress"}))
        assert isinstance(await next_response(peer), SelfAddressResponse)
        await app.send(
            encode_request_text(SendAnonymousRequest(peer_address, "héllo".encode(), reply_surbs=2))
        )
        with anyio.fail_after(20):
            raw = await peer.receive()
        assert isinstance(raw, str)
        body = json.loads(raw)
        assert body["type"] == "received"
        assert body["message"] == "héllo"
        tag = decode_response_text(raw)
        assert isinstance(tag, ReceivedResponse)
        assert tag.sender_tag is not None
        assert body["senderTag"] == b58encode(tag.sender_tag)

        # JSON reply with a lane: answered with laneQueueLength in JSON
        await peer.send(
            json.dumps(
                {"type": "reply", "senderTag": body["senderTag"], "message": "back", "connectionId": 7}
            )
        )
        lane = await next_response(peer)
        assert isinstance(lane, LaneQueueLengthResponse)
        assert lane.lane == 7
        # the app's last request was text too
        with anyio.fail_after(20):
            pushed = await app.receive()
        assert isinstance(pushed, str)
        assert json.loads(pushed) == {"type": "received", "message": "back", "senderTag": None}

        # switching the app to binary makes pushes binary again
        assert isinstance(await request(app, encode_request(SelfAddressRequest())), SelfAddressResponse)
        await peer.send(encode_request_text(ReplyRequest(tag.sender_tag, b"binary now")))
        with anyio.fail_after(20):
            pushed_binary = await app.receive()
        assert isinstance(pushed_binary, bytes)
        assert decode_response(pushed_binary) == ReceivedResponse(b"binary now", None)
        for websocket in (app, peer):
            await websocket.aclose()


async def test_lanes() -> None:
    async with Devnet.start(seed=23) as net:
        app = await ws_connect(net.describe().api_url(0))
        peer = await ws_connect(net.describe().api_url(1))
        peer_address = await self_address(peer)
        answer = await request(app, encode_request(SendRequest(peer_address, b"on lane 5", connection_id=5)))
        assert isinstance(answer, LaneQueueLengthResponse)
        assert answer.lane == 5
        assert answer.queue_length >= 0
        assert await next_response(peer) == ReceivedResponse(b"on lane 5", None)
        assert await request(app, encode_request(GetLaneQueueLengthRequest(5))) == LaneQueueLengthResponse(
            5, 0
        )
        assert await request(app, encode_request(GetLaneQueueLengthRequest(999))) == LaneQueueLengthResponse(
            999, 0
        )
        # ClosedConnection has no response: the next answer is for the next request
        await app.send(encode_request(ClosedConnectionRequest(5)))
        assert isinstance(await request(app, encode_request(SelfAddressRequest())), SelfAddressResponse)
        # General lane: no response at all
        await app.send(encode_request(SendRequest(peer_address, b"general")))
        assert isinstance(await request(app, encode_request(SelfAddressRequest())), SelfAddressResponse)
        assert await next_response(peer) == ReceivedResponse(b"general", None)
        for websocket in (app, peer):
            await websocket.aclose()


async def test_every_error_path_keeps_the_connection_open() -> None:
    async with Devnet.start(seed=24, gateways=1) as net:
        api = net.api_servers[0]
        app = await ws_connect(net.describe().api_url(0))
        address = await self_address(app)
        good = encode_request(SendRequest(address, b"abc"))
        cases: list[tuple[bytes | str, ErrorKind]] = [
            (b"", ErrorKind.EMPTY_REQUEST),
            (b"\x09", ErrorKind.UNKNOWN_REQUEST),
            (good[:50], ErrorKind.TOO_SHORT_REQUEST),
            (good + b"trailing", ErrorKind.MALFORMED_REQUEST),
            (good[:105] + (2**63).to_bytes(8, "big") + b"abc", ErrorKind.MALFORMED_REQUEST),
            (b"\x04\x00", ErrorKind.TOO_SHORT_REQUEST),
            (b"\x05" + bytes(9), ErrorKind.MALFORMED_REQUEST),
            ("{not json", ErrorKind.MALFORMED_REQUEST),
            (json.dumps({"type": "send", "message": "x", "recipient": "bogus"}), ErrorKind.MALFORMED_REQUEST),
            (encode_request(ReplyRequest(b"\x01" * 16, b"nobody gave us SURBs")), ErrorKind.OTHER),
            (encode_request(SendAnonymousRequest(address, b"x", reply_surbs=2**32 - 1)), ErrorKind.OTHER),
        ]
        for frame, kind in cases:
            answer = await request(app, frame)
            assert isinstance(answer, ErrorResponse), frame
            assert answer.kind == kind, (frame, answer)
        assert api.stats()["malformed_requests"] == len(cases) - 2
        # still serving: a message to ourselves goes round the mixnet
        await app.send(good)
        assert await next_response(app) == ReceivedResponse(b"abc", None)
        await app.aclose()


async def test_oversized_frames_and_garbage_on_the_api_port() -> None:
    async with Devnet.start(seed=25, gateways=1) as net:
        api = net.api_servers[0]
        stream = await anyio.connect_tcp(api.host, api.port)
        await stream.send(os.urandom(500))
        await stream.aclose()
        big = await ws_connect(net.describe().api_url(0), max_size=None)
        close_code: int | None = None
        try:
            await big.send(b"\x00" * (17 * 2**20))
            answer = await big.receive()
        except WebSocketClosed as closed:
            close_code = closed.code
        except LinkError:
            close_code = 1009  # the server closed the socket while we were still writing the frame
        else:
            pytest.fail(f"a 17 MiB request was accepted: {answer!r}")
        assert close_code == 1009
        await big.aclose()
        app = await ws_connect(net.describe().api_url(0))
        address = await self_address(app)
        await app.send(encode_request(SendRequest(address, b"fine")))
        assert await next_response(app) == ReceivedResponse(b"fine", None)
        await app.aclose()
        assert api.stats()["handshake_failures"] >= 1
