"""The nym-client websocket API, served by a devnet gateway (spec ``nym-client-api.md``).

Every websocket connection is its own mixnet client with fresh keys and its own Recipient
(``SelfAddress`` tells it), registered at this server's gateway. Requests are decoded with
``api_codec``; malformed ones are answered with the spec's error codes and the connection stays
open. Received messages are pushed as text if the most recent request on the socket was text,
as binary otherwise. Send/SendAnonymous/Reply on a ConnectionId lane answer LaneQueueLength;
ClosedConnection drops the lane's queued packets; GetLaneQueueLength always answers.

A request that needs queue space (the client's bounded send queue) waits, which stops reading
the socket: that is the API's backpressure. A Reply for a tag we hold no SURBs for is answered
with an ``Other`` error.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.abc import TaskStatus

from smolmix_core.clock import Clock, RealClock
from smolmix_core.errors import ApiError, LinkError, MixnetClientClosed, MixnetError
from smolmix_core.mixnet.api_codec import (
    ClosedConnectionRequest,
    ErrorKind,
    ErrorResponse,
    GetLaneQueueLengthRequest,
    LaneQueueLengthResponse,
    ReceivedResponse,
    ReplyRequest,
    Request,
    Response,
    SelfAddressRequest,
    SelfAddressResponse,
    SendAnonymousRequest,
    SendRequest,
    decode_request,
    decode_request_text,
    encode_response,
    encode_response_text,
)
from smolmix_core.mixnet.client import SphinxClient, SphinxClientConfig
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.topology import Gateway, Topology
from smolmix_core.mixnet.ws import WebSocket, ws_accept

logger = logging.getLogger("smolmix.mixnet")

MAX_REQUEST_SIZE = 16 * 2**20


@dataclass
class _Form:
    text: bool = False


class ApiServer:
    """Serves the nym-client API on ``(host, port)``; each connection gets its own ``SphinxClient``."""

    def __init__(
        self,
        topology: Topology,
        gateway: Gateway,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        client_config: SphinxClientConfig | None = None,
        clock: Clock | None = None,
        max_connections: int = 256,
        listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None,
    ) -> None:
        """``listener``: an already bound listener to serve on (its port must be known to the caller)."""
        self.topology = topology
        self.gateway = gateway
        self.host = host
        self._requested_port = port
        self.port = 0
        self.client_config = client_config or SphinxClientConfig()
        self.clock = clock or RealClock()
        self.max_connections = max_connections
        self.counters: Counter[str] = Counter()
        self._open = 0
        self._listener = listener
        if listener is not None:
            self.port = listener.extra(anyio.abc.SocketAttribute.local_port)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    def stats(self) -> dict[str, int]:
        return {**self.counters, "connections": self._open}

    async def bind(self) -> None:
        """Bind the listening socket now (its port becomes known) and serve later."""
        self._listener = await anyio.create_tcp_listener(
            local_host=self.host, local_port=self._requested_port
        )
        self.port = self._listener.extra(anyio.abc.SocketAttribute.local_port)

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if self._listener is None:
            await self.bind()
        listener = self._listener
        assert listener is not None
        async with listener, anyio.create_task_group() as tg:
            logger.info("nym-client API for gateway %s on %s", self.gateway.client_url, self.url)
            task_status.started()
            await listener.serve(self._handle_connection, tg)

    async def _handle_connection(self, stream: anyio.abc.SocketStream) -> None:
        if self._open >= self.max_connections:
            self.counters["connections_refused"] += 1
            await anyio.aclose_forcefully(stream)
            return
        try:
            websocket = await ws_accept(stream, max_size=MAX_REQUEST_SIZE)
        except LinkError as exc:
            self.counters["handshake_failures"] += 1
            logger.info("API websocket handshake failed: %s", exc)
            return
        self._open += 1
        self.counters["connections"] += 1
        try:
            async with SphinxClient.connect(
                self.topology,
                self.gateway,
                keys=ClientKeys.generate(),
                config=self.client_config,
                clock=self.clock,
            ) as client:
                await self._serve_client(websocket, client)
        except (MixnetError, OSError) as exc:
            logger.warning("API connection ended: %s", exc)
        except Exception:
            self.counters["internal_errors"] += 1
            logger.exception("API connection failed unexpectedly")
        finally:
            self._open -= 1
            with anyio.CancelScope(shield=True):
                await websocket.aclose()

    async def _serve_client(self, websocket: WebSocket, client: SphinxClient) -> None:
        form = _Form()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._push_received, websocket, client, form)
            try:
                async for message in websocket:
                    form.text = isinstance(message, str)
                    response = await self._answer(client, message)
                    if response is not None:
                        await self._send(websocket, response, form)
            except (LinkError, MixnetClientClosed):
                pass
            tg.cancel_scope.cancel()

    async def _push_received(self, websocket: WebSocket, client: SphinxClient, form: _Form) -> None:
        try:
            async for received in client:
                await self._send(websocket, ReceivedResponse(received.data, received.sender_tag), form)
                self.counters["messages_pushed"] += 1
        except LinkError:
            pass

    async def _send(self, websocket: WebSocket, response: Response, form: _Form) -> None:
        await websocket.send(encode_response_text(response) if form.text else encode_response(response))

    async def _answer(self, client: SphinxClient, message: bytes | str) -> Response | None:
        try:
            request = decode_request_text(message) if isinstance(message, str) else decode_request(message)
        except ApiError as exc:
            self.counters["malformed_requests"] += 1
            return ErrorResponse(ErrorKind(exc.kind), exc.message)
        self.counters["requests"] += 1
        try:
            return await self._execute(client, request)
        except MixnetClientClosed:
            raise
        except MixnetError as exc:
            self.counters["failed_requests"] += 1
            return ErrorResponse(ErrorKind.OTHER, str(exc))

    async def _execute(self, client: SphinxClient, request: Request) -> Response | None:
        if isinstance(request, SendRequest):
            await client.send(request.recipient, request.data, lane=request.connection_id)
            return self._lane_answer(client, request.connection_id)
        if isinstance(request, SendAnonymousRequest):
            await client.send_anonymous(
                request.recipient, request.data, reply_surbs=request.reply_surbs, lane=request.connection_id
            )
            return self._lane_answer(client, request.connection_id)
        if isinstance(request, ReplyRequest):
            await client.reply(request.sender_tag, request.data, lane=request.connection_id)
            return self._lane_answer(client, request.connection_id)
        if isinstance(request, SelfAddressRequest):
            return SelfAddressResponse(client.address)
        if isinstance(request, ClosedConnectionRequest):
            client.close_lane(request.connection_id)
            return None
        assert isinstance(request, GetLaneQueueLengthRequest)
        return LaneQueueLengthResponse(request.connection_id, client.lane_queue_length(request.connection_id))

    def _lane_answer(self, client: SphinxClient, lane: int | None) -> Response | None:
        if lane is None:
            return None
        return LaneQueueLengthResponse(lane, client.lane_queue_length(lane))


__all__ = ["MAX_REQUEST_SIZE", "ApiServer"]
