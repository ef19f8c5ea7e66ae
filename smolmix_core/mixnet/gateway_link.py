"""The client's end of the gateway link: a websocket carrying the protocol of ``link.py``."""

from __future__ import annotations

from collections.abc import Iterable

import anyio

from smolmix_core.errors import GatewayError, LinkError, WebSocketClosed
from smolmix_core.mixnet.framing import PacketType
from smolmix_core.mixnet.link import (
    AUTH_FAILED_CLOSE_CODE,
    FrameKind,
    LinkClientHandshake,
    LinkSession,
    encode_forward,
)
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.ws import WebSocket, ws_connect

_PUSH_FRAME_MAX = 64 * 1024
CONNECT_TIMEOUT = 10.0


class GatewayLink:
    """An authenticated link to one gateway: ``send`` MixPackets, ``receive`` pushed payloads.

    One task may send while another receives.
    """

    def __init__(self, websocket: WebSocket, session: LinkSession, gateway_identity: bytes) -> None:
        self._websocket = websocket
        self._session = session
        self.gateway_identity = gateway_identity

    @classmethod
    async def connect(
        cls,
        url: str,
        gateway_identity: bytes,
        identity_secret: bytes,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
    ) -> GatewayLink:
        """Open the websocket and run the handshake; ``GatewayError`` if authentication fails."""
        websocket = await ws_connect(url, max_size=_PUSH_FRAME_MAX, open_timeout=connect_timeout)
        handshake = LinkClientHandshake(identity_secret, gateway_identity)
        try:
            with anyio.fail_after(connect_timeout):
                await websocket.send(handshake.hello())
                gateway_hello = await websocket.receive()
                if not isinstance(gateway_hello, bytes):
                    raise GatewayError("the gateway answered the link handshake with text")
                await websocket.send(handshake.receive_gateway_hello(gateway_hello))
                ready = await websocket.receive()
                if not isinstance(ready, bytes):
                    raise GatewayError("the gateway answered the link handshake with text")
                session = handshake.receive_ready(ready)
        except WebSocketClosed as exc:
            await websocket.aclose()
            if exc.code == AUTH_FAILED_CLOSE_CODE:
                raise GatewayError(f"the gateway at {url} refused our authentication") from exc
            raise
        except (GatewayError, LinkError, TimeoutError) as exc:
            await websocket.aclose()
            if isinstance(exc, TimeoutError):
                raise GatewayError(f"the gateway at {url} did not complete the handshake") from exc
            raise
        return cls(websocket, session, gateway_identity)

    @property
    def closed(self) -> bool:
        return self._websocket.closed

    async def send(
        self,
        first_hop: NymNodeRoutingAddress | bytes,
        packet: bytes,
        packet_type: PacketType = PacketType.MIX,
    ) -> None:
        """Hand one Sphinx packet to the gateway for ``first_hop`` (an address or its 7/19-byte
        MixPacket form); waits while the link is busy."""
        await self._websocket.send(
            self._session.seal(FrameKind.FORWARD, encode_forward(first_hop, packet, packet_type))
        )

    async def send_many(
        self,
        packets: Iterable[tuple[NymNodeRoutingAddress | bytes, bytes]],
        packet_type: PacketType = PacketType.MIX,
    ) -> None:
        """Hand several ``(first_hop, packet)`` pairs to the gateway in one websocket write."""
        seal = self._session.seal
        await self._websocket.send_many(
            [seal(FrameKind.FORWARD, encode_forward(hop, packet, packet_type)) for hop, packet in packets]
        )

    async def receive(self) -> bytes:
        """The next payload the gateway pushed; ``LinkError`` when the link ends or misbehaves."""
        return self._open_push(await self._websocket.receive())

    async def receive_many(self) -> list[bytes]:
        """The next pushed payload and every one already read behind it (a burst in one call)."""
        first = self._open_push(await self._websocket.receive())
        return [first, *(self._open_push(message) for message in self._websocket.take_buffered())]

    def _open_push(self, message: bytes | str) -> bytes:
        if not isinstance(message, bytes):
            raise LinkError("the gateway sent a text frame")
        kind, plaintext = self._session.open(message)
        if kind is not FrameKind.PUSH:
            raise LinkError(f"unexpected {kind.name} frame from the gateway")
        return plaintext

    async def aclose(self) -> None:
        await self._websocket.aclose()


__all__ = ["GatewayLink"]
