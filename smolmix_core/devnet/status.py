"""``smolmix devnet status``: does every node of a devnet answer?

Mix nodes must accept a TCP connection on their mix port. Gateways must accept one on their mix
port and complete an authenticated client-link handshake (which proves they hold the identity
the descriptor lists). Each nym-client API must answer a SelfAddress request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import anyio

from smolmix_core.devnet.descriptor import DevnetDescriptor
from smolmix_core.errors import ApiError, MixnetError
from smolmix_core.mixnet.api_codec import SelfAddressResponse, decode_response
from smolmix_core.mixnet.base58 import b58encode
from smolmix_core.mixnet.gateway_link import GatewayLink
from smolmix_core.mixnet.ws import ws_connect


@dataclass(frozen=True)
class NodeStatus:
    name: str
    address: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'up  ' if self.ok else 'DOWN'}  {self.name:<12} {self.address:<28} {self.detail}"


async def _tcp(host: str, port: int, limit: float) -> str | None:
    try:
        with anyio.fail_after(limit):
            stream = await anyio.connect_tcp(host, port)
    except (OSError, TimeoutError) as exc:
        return f"mix port does not answer: {exc!r}"
    await stream.aclose()
    return None


async def check_devnet(descriptor: DevnetDescriptor, *, probe_timeout: float = 5.0) -> list[NodeStatus]:
    """Probe every node; one ``NodeStatus`` per mix node, gateway and API endpoint."""
    results: list[NodeStatus] = []
    for layer in descriptor.topology.layers:
        for mix in layer:
            problem = await _tcp(mix.host, mix.port, probe_timeout)
            results.append(
                NodeStatus(
                    f"mix-l{mix.layer}",
                    f"{mix.host}:{mix.port}",
                    problem is None,
                    problem or f"identity {b58encode(mix.identity)[:12]}…",
                )
            )
    for index, gateway in enumerate(descriptor.topology.gateways):
        problem = await _tcp(gateway.host, gateway.mix_port, probe_timeout)
        if problem is None:
            try:
                with anyio.fail_after(probe_timeout):
                    link = await GatewayLink.connect(gateway.client_url, gateway.identity, os.urandom(32))
                await link.aclose()
            except (MixnetError, TimeoutError, OSError) as exc:
                problem = f"client link failed: {exc}"
        results.append(
            NodeStatus(
                f"gateway-{index}",
                f"{gateway.host}:{gateway.mix_port}",
                problem is None,
                problem or f"client link {gateway.client_url} authenticated",
            )
        )
        url = descriptor.api_urls.get(gateway.identity)
        if url is not None:
            results.append(await _check_api(f"api-{index}", url, probe_timeout))
    return results


async def _check_api(name: str, url: str, limit: float) -> NodeStatus:
    try:
        with anyio.fail_after(limit):
            websocket = await ws_connect(url)
            try:
                await websocket.send(b"\x03")
                answer = await websocket.receive()
            finally:
                await websocket.aclose()
        if not isinstance(answer, bytes):
            return NodeStatus(name, url, False, "SelfAddress answered with text")
        response = decode_response(answer)
    except (MixnetError, TimeoutError, OSError) as exc:
        detail = f"{exc}" if not isinstance(exc, ApiError) else f"bad response: {exc}"
        return NodeStatus(name, url, False, f"nym-client API failed: {detail}")
    if not isinstance(response, SelfAddressResponse):
        return NodeStatus(name, url, False, f"SelfAddress answered with {type(response).__name__}")
    return NodeStatus(name, url, True, f"nym-client API answers as {str(response.recipient)[:16]}…")


__all__ = ["NodeStatus", "check_devnet"]
