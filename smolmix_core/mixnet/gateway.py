"""Gateways: the clients' entry to the mixnet and the final Sphinx hop that delivers to them.

A gateway listens on two ports. The mix port takes framed Sphinx packets like a mix node
(``SphinxHop``); packets whose final hop is this gateway are delivered. The client port takes
websocket links authenticated as described in ``link.py``; each client sends its MixPackets
(first hop ‖ Sphinx packet) there and the gateway forwards them into layer 1.

Final hop (spec §9): for non-ack sizes the first 405 bytes are a SURB-ACK — the first hop's
routing address padded to 19 bytes and a 386-byte ack packet — which is launched immediately
(it carries its own delays); the rest (1643 bytes for regular packets) is pushed to the client
whose identity equals the Sphinx destination. Ack-size packets carry no SURB-ACK; their 21 bytes
are pushed as they are.

Queues and policies:
- Uplink (client → layer 1): bounded per next hop, and the client's reader *waits* when full,
  so a fast client is slowed through websocket/TCP backpressure.
- SURB-ACK launches never wait (dropped and counted when the hop's queue is full), so no waiting
  cycle can form through the mixnet.
- Pushes to a connected client: bounded (``push_queue_size``); a client that does not read is
  dropped-and-counted rather than allowed to stall the mix port.
- Backlog for a client that is not connected (or briefly disconnected): at most
  ``backlog_packets`` payloads per identity, each kept ``backlog_ttl`` seconds, for at most
  ``backlog_clients`` identities (the least recently filled is forgotten first). When a client's
  backlog is full the oldest payload is dropped. All drops are counted. The backlog is flushed,
  oldest first, when the client (re)connects.
- One link per identity: a new authenticated link for the same identity replaces the old one.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smolmix_core.clock import Clock
from smolmix_core.errors import GatewayError, LinkError, SphinxError
from smolmix_core.mixnet.ack import SURB_ACK_SIZE
from smolmix_core.mixnet.framing import Frame, encode_frame
from smolmix_core.mixnet.link import (
    AUTH_FAILED_CLOSE_CODE,
    FrameKind,
    LinkGatewayHandshake,
    LinkSession,
    decode_forward,
)
from smolmix_core.mixnet.node import LinkMonitor, LinkObservation, NodeConfig, SphinxHop
from smolmix_core.mixnet.routing import MAX_UNPADDED_SIZE
from smolmix_core.mixnet.sphinx import FinalHop, PacketSize
from smolmix_core.mixnet.ws import WebSocket, ws_accept

logger = logging.getLogger("smolmix.mixnet")

CLIENT_FRAME_MAX = 1 + 8 + 1 + MAX_UNPADDED_SIZE + PacketSize.EXTENDED32.total_size + 16
_HANDSHAKE_TIMEOUT = 10.0
_REPLACED_CLOSE_CODE = 4000
_POLICY_CLOSE_CODE = 1008
_PUSH_BURST = 64
"""Payloads queued for one client are sealed and written together, up to this many."""


@dataclass
class GatewayConfig(NodeConfig):
    """A gateway's ports and queue bounds (``port`` is the mix port)."""

    client_port: int = 0
    push_queue_size: int = 4096
    backlog_packets: int = 4096
    backlog_ttl: float = 60.0
    backlog_clients: int = 1024


class _ClientLink:
    __slots__ = ("identity", "pushes", "pushes_out", "websocket")

    def __init__(self, identity: bytes, websocket: WebSocket, size: int) -> None:
        self.identity = identity
        self.websocket = websocket
        self.pushes: MemoryObjectSendStream[bytes]
        self.pushes_out: MemoryObjectReceiveStream[bytes]
        self.pushes, self.pushes_out = anyio.create_memory_object_stream[bytes](size)


class GatewayServer(SphinxHop):
    """A gateway: final Sphinx hop (mix port) and client entry (websocket client port)."""

    def __init__(
        self,
        sphinx_private_key: bytes,
        identity_secret: bytes,
        *,
        name: str = "gateway",
        config: GatewayConfig | None = None,
        clock: Clock | None = None,
        monitor: LinkMonitor | None = None,
    ) -> None:
        self.gateway_config = config or GatewayConfig()
        super().__init__(
            sphinx_private_key, name=name, config=self.gateway_config, clock=clock, monitor=monitor
        )
        self._identity_secret = identity_secret
        self.identity = Ed25519PrivateKey.from_private_bytes(identity_secret).public_key().public_bytes_raw()
        self._clients: dict[bytes, _ClientLink] = {}
        self._backlog: OrderedDict[bytes, deque[tuple[float, bytes]]] = OrderedDict()
        self.client_port = 0

    @property
    def client_url(self) -> str:
        return f"ws://{self.host}:{self.client_port}/"

    def connected_clients(self) -> int:
        return len(self._clients)

    async def disconnect_client(self, identity: bytes) -> bool:
        """Close a client's link (an operator's kick; tests use it to exercise reconnection)."""
        link = self._clients.get(identity)
        if link is None:
            return False
        await link.websocket.aclose(1001, "disconnected by the gateway")
        return True

    def stats(self) -> dict[str, int]:
        stats = super().stats()
        stats["clients"] = len(self._clients)
        stats["backlog"] = sum(len(queue) for queue in self._backlog.values())
        return stats

    async def _start_extra(self, task_group: anyio.abc.TaskGroup) -> None:
        listener = await anyio.create_tcp_listener(
            local_host=self.config.host, local_port=self.gateway_config.client_port
        )
        self.client_port = listener.extra(anyio.abc.SocketAttribute.local_port)
        task_group.start_soon(self._serve_clients, listener, task_group)

    async def _serve_clients(
        self, listener: anyio.abc.Listener[anyio.abc.SocketStream], task_group: anyio.abc.TaskGroup
    ) -> None:
        async with listener:
            await listener.serve(self._handle_client_connection, task_group)

    # --- final hop ----------------------------------------------------------------------------

    async def _on_final_hop(self, hop: FinalHop, frame: Frame) -> None:
        message = hop.message
        if frame.packet_size is PacketSize.ACK:
            self._deliver(hop.destination, message)
            return
        if len(message) < SURB_ACK_SIZE:
            self.counters["dropped_malformed"] += 1
            self._log_drop(
                "malformed", "final-hop message of %d bytes has no room for a SURB-ACK", len(message)
            )
            return
        address = self._next_hop(message[:MAX_UNPADDED_SIZE])
        if address is not None:
            ack_packet = message[MAX_UNPADDED_SIZE:SURB_ACK_SIZE]
            if await self.forwarder.send(address, encode_frame(ack_packet), wait=False):
                self.counters["surb_acks_launched"] += 1
        self._deliver(hop.destination, message[SURB_ACK_SIZE:])

    def _deliver(self, identity: bytes, payload: bytes) -> None:
        link = self._clients.get(identity)
        if link is not None:
            try:
                link.pushes.send_nowait(payload)
            except anyio.WouldBlock:
                self.counters["dropped_client_slow"] += 1
                self._log_drop("client_slow", "client push queue full: dropping a payload")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._add_backlog(identity, payload)
            else:
                self.counters["payloads_queued"] += 1
            return
        self._add_backlog(identity, payload)

    def _add_backlog(self, identity: bytes, payload: bytes) -> None:
        config = self.gateway_config
        queue = self._backlog.get(identity)
        if queue is None:
            while len(self._backlog) >= config.backlog_clients:
                _, forgotten = self._backlog.popitem(last=False)
                self.counters["backlog_dropped"] += len(forgotten)
            queue = self._backlog[identity] = deque()
        else:
            self._backlog.move_to_end(identity)
        now = self.clock.now()
        self._expire(queue, now)
        if len(queue) >= config.backlog_packets:
            queue.popleft()
            self.counters["backlog_dropped"] += 1
        queue.append((now, payload))
        self.counters["backlog_stored"] += 1

    def _expire(self, queue: deque[tuple[float, bytes]], now: float) -> None:
        ttl = self.gateway_config.backlog_ttl
        while queue and now - queue[0][0] > ttl:
            queue.popleft()
            self.counters["backlog_expired"] += 1

    # --- client links -------------------------------------------------------------------------

    async def _handle_client_connection(self, stream: anyio.abc.SocketStream) -> None:
        try:
            await self._serve_client_connection(stream)
        except Exception:
            self.counters["internal_errors"] += 1
            logger.exception("%s: a client link failed unexpectedly", self.name)

    async def _serve_client_connection(self, stream: anyio.abc.SocketStream) -> None:
        try:
            websocket = await ws_accept(stream, max_size=CLIENT_FRAME_MAX)
        except LinkError as exc:
            self.counters["client_handshake_failures"] += 1
            self._log_drop("client_handshake", "websocket handshake failed: %s", exc)
            return
        try:
            session, identity = await self._authenticate(websocket)
        except (GatewayError, LinkError, TimeoutError) as exc:
            self.counters["client_auth_failures"] += 1
            self._log_drop("client_auth", "client link refused: %s", exc)
            await websocket.aclose(AUTH_FAILED_CLOSE_CODE, "authentication failed")
            return
        link = _ClientLink(identity, websocket, self.gateway_config.push_queue_size)
        previous = self._clients.get(identity)
        self._clients[identity] = link
        if previous is not None:
            self.counters["client_links_replaced"] += 1
            previous.pushes.close()
        self.counters["client_links"] += 1
        self._flush_backlog(link)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._push_to_client, link, session, tg.cancel_scope)
                await self._read_client(link, session)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                replaced = self._clients.get(identity) is not link
                link.pushes.close()
                if not replaced:
                    del self._clients[identity]
                    self._requeue(link)
                link.pushes_out.close()
                await websocket.aclose(_REPLACED_CLOSE_CODE if replaced else 1000)

    async def _authenticate(self, websocket: WebSocket) -> tuple[LinkSession, bytes]:
        handshake = LinkGatewayHandshake(self._identity_secret)
        with anyio.fail_after(_HANDSHAKE_TIMEOUT):
            hello = await websocket.receive()
            if not isinstance(hello, bytes):
                raise GatewayError("the link handshake is binary")
            await websocket.send(handshake.receive_client_hello(hello))
            auth = await websocket.receive()
            if not isinstance(auth, bytes):
                raise GatewayError("the link handshake is binary")
            session = handshake.receive_client_auth(auth)
            await websocket.send(session.seal(FrameKind.READY, b""))
        assert handshake.client_identity is not None
        return session, handshake.client_identity

    def _flush_backlog(self, link: _ClientLink) -> None:
        queue = self._backlog.pop(link.identity, None)
        if not queue:
            return
        self._expire(queue, self.clock.now())
        while queue:
            _, payload = queue.popleft()
            try:
                link.pushes.send_nowait(payload)
            except anyio.WouldBlock:
                self.counters["dropped_client_slow"] += 1 + len(queue)
                return
            self.counters["backlog_delivered"] += 1

    def _requeue(self, link: _ClientLink) -> None:
        """Payloads still queued for a link that went away go back to the backlog."""
        while True:
            try:
                payload = link.pushes_out.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                return
            self._add_backlog(link.identity, payload)

    async def _push_to_client(
        self, link: _ClientLink, session: LinkSession, scope: anyio.CancelScope
    ) -> None:
        """Push queued payloads, a burst per write; payloads that could not be sent go back to the backlog.

        When the queue is closed (the link was replaced) the reader is cancelled too; when the
        websocket fails, the reader notices by itself and must not be cut off mid-write.
        """
        async for payload in link.pushes_out:
            burst = [payload]
            while len(burst) < _PUSH_BURST:
                try:
                    burst.append(link.pushes_out.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            if self.monitor is not None:
                for pushed in burst:
                    self.monitor(LinkObservation(self.name, "push", "client", len(pushed)))
            try:
                await link.websocket.send_many([session.seal(FrameKind.PUSH, pushed) for pushed in burst])
            except LinkError:
                for pushed in burst:
                    self._add_backlog(link.identity, pushed)
                return
            self.counters["payloads_pushed"] += len(burst)
        scope.cancel()

    async def _read_client(self, link: _ClientLink, session: LinkSession) -> None:
        websocket = link.websocket
        while True:
            try:
                message = await websocket.receive()
            except LinkError:
                return
            if not isinstance(message, bytes):
                self.counters["client_bad_frames"] += 1
                self._log_drop("client_bad_frame", "closing a client link that sent text")
                await websocket.aclose(_POLICY_CLOSE_CODE, "binary frames only")
                return
            try:
                kind, plaintext = session.open(message)
                if kind is not FrameKind.FORWARD:
                    raise LinkError(f"unexpected {kind.name} frame from a client")
                forward = decode_forward(plaintext)
            except LinkError as exc:
                self.counters["client_bad_frames"] += 1
                self._log_drop("client_bad_frame", "closing a client link: %s", exc)
                await websocket.aclose(_POLICY_CLOSE_CODE, "bad frame")
                return
            if self.monitor is not None:
                self.monitor(LinkObservation(self.name, "uplink", "client", len(forward.packet)))
            try:
                framed = encode_frame(forward.packet, packet_type=forward.packet_type)
            except (SphinxError, ValueError):
                self.counters["dropped_bad_size"] += 1
                self._log_drop("bad_size", "dropping a client packet of %d bytes", len(forward.packet))
                continue
            self.counters["client_packets"] += 1
            await self.forwarder.send(forward.first_hop.address, framed)


__all__ = ["GatewayConfig", "GatewayServer"]
