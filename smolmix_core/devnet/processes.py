"""The devnet with one OS process per node, so that mixing uses every CPU core.

The parent generates every node's keys, starts ``python -m smolmix_core.devnet.processes`` once
per node and talks to each child over its stdin/stdout, one JSON object per line:

    parent → child   {"role": "mix"|"gateway", "name", "host", "sphinx_secret", "identity_secret",
                      "layer", "fast", "average_packet_delay", "drop_probability"}
    child → parent   {"ready": true, "port": …, "client_port": …, "api_port": …}   (ports bound)
    parent → gateway {"descriptor": …}   (the full descriptor; the API server needs the topology)
    gateway → parent {"serving": true}

A child stops cleanly on SIGTERM/SIGINT or when its stdin closes (so children never outlive a
parent that died).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from smolmix_core.devnet.descriptor import DevnetDescriptor
from smolmix_core.devnet.network import NodeSecrets, client_config_for
from smolmix_core.errors import DevnetError
from smolmix_core.mixnet.api_server import ApiServer
from smolmix_core.mixnet.gateway import GatewayConfig, GatewayServer
from smolmix_core.mixnet.node import MixNodeServer, NodeConfig
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology
from smolmix_core.mixnet.x25519 import x25519_base

_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0


@dataclass
class _Child:
    name: str
    role: str
    secrets: NodeSecrets
    layer: int
    process: anyio.abc.Process
    output: BufferedByteReceiveStream
    port: int = 0
    client_port: int = 0
    api_port: int = 0


async def _send_line(process: anyio.abc.Process, message: dict[str, Any]) -> None:
    assert process.stdin is not None
    await process.stdin.send(json.dumps(message).encode() + b"\n")


async def _read_line(child: _Child) -> dict[str, Any]:
    try:
        line = await child.output.receive_until(b"\n", 1 << 20)
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.DelimiterNotFound) as exc:
        raise DevnetError(f"devnet node {child.name} exited during start-up") from exc
    message = json.loads(line)
    if not isinstance(message, dict):
        raise DevnetError(f"devnet node {child.name} sent {line!r}")
    return message


@asynccontextmanager
async def run_devnet_processes(
    *,
    layers: int = 3,
    nodes_per_layer: int = 1,
    gateways: int = 2,
    fast: bool = True,
    average_packet_delay: float | None = None,
    drop_probability: float = 0.0,
    host: str = "127.0.0.1",
) -> AsyncIterator[DevnetDescriptor]:
    """Start one process per node; yield the descriptor; stop every child on exit."""
    plan: list[tuple[str, str, int]] = [
        (f"mix-l{layer}-{index}", "mix", layer)
        for layer in range(1, layers + 1)
        for index in range(nodes_per_layer)
    ]
    plan += [(f"gateway-{index}", "gateway", 0) for index in range(gateways)]
    children: list[_Child] = []
    try:
        for name, role, layer in plan:
            process = await anyio.open_process(
                [sys.executable, "-m", "smolmix_core.devnet.processes"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
            )
            assert process.stdout is not None
            child = _Child(
                name, role, NodeSecrets.generate(), layer, process, BufferedByteReceiveStream(process.stdout)
            )
            children.append(child)
            await _send_line(
                process,
                {
                    "role": role,
                    "name": name,
                    "host": host,
                    "layer": layer,
                    "sphinx_secret": child.secrets.sphinx_secret.hex(),
                    "identity_secret": child.secrets.identity_secret.hex(),
                    "fast": fast,
                    "average_packet_delay": average_packet_delay,
                    "drop_probability": drop_probability,
                },
            )
        with anyio.fail_after(_START_TIMEOUT):
            for child in children:
                ready = await _read_line(child)
                child.port = int(ready["port"])
                child.client_port = int(ready.get("client_port", 0))
                child.api_port = int(ready.get("api_port", 0))
        descriptor = _describe(children, host, fast, average_packet_delay)
        with anyio.fail_after(_START_TIMEOUT):
            for child in children:
                if child.role == "gateway":
                    await _send_line(child.process, {"descriptor": descriptor.to_dict()})
                    await _read_line(child)
        yield descriptor
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(children)


def _describe(
    children: list[_Child], host: str, fast: bool, average_packet_delay: float | None
) -> DevnetDescriptor:
    layers = max((child.layer for child in children), default=0)
    mixes = [
        [
            MixNode(child.secrets.identity, _sphinx_public(child.secrets), host, child.port, child.layer)
            for child in children
            if child.role == "mix" and child.layer == layer
        ]
        for layer in range(1, layers + 1)
    ]
    gateways = [
        Gateway(
            child.secrets.identity,
            _sphinx_public(child.secrets),
            host,
            child.port,
            f"ws://{host}:{child.client_port}/",
        )
        for child in children
        if child.role == "gateway"
    ]
    api_urls = {
        child.secrets.identity: f"ws://{host}:{child.api_port}/"
        for child in children
        if child.role == "gateway"
    }
    delay = average_packet_delay if average_packet_delay is not None else (0.0 if fast else 0.015)
    return DevnetDescriptor(Topology(mixes, gateways), api_urls, fast=fast, average_packet_delay=delay)


def _sphinx_public(secrets: NodeSecrets) -> bytes:
    return x25519_base(secrets.sphinx_secret)


async def _stop(children: list[_Child]) -> None:
    for child in children:
        if child.process.returncode is None:
            try:
                child.process.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    for child in children:
        with anyio.move_on_after(_STOP_TIMEOUT) as scope:
            await child.process.wait()
        if scope.cancelled_caught:
            child.process.kill()
            await child.process.wait()
        await child.process.aclose()


# --- the child ----------------------------------------------------------------------------------


class _StdinLines:
    """Lines from stdin without a thread (a blocked reader thread would outlive the event loop)."""

    def __init__(self) -> None:
        self._fd = sys.stdin.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = b""
        self._eof = False

    async def readline(self) -> str:
        """The next line without its newline; ``""`` once stdin is closed."""
        while b"\n" not in self._buffer and not self._eof:
            await anyio.wait_readable(self._fd)
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                continue
            self._buffer += chunk
            self._eof = not chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()


async def _child() -> None:
    stdin = _StdinLines()
    first = await stdin.readline()
    if not first:
        return
    config = json.loads(first)
    secrets = NodeSecrets(bytes.fromhex(config["sphinx_secret"]), bytes.fromhex(config["identity_secret"]))
    host = str(config["host"])
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, tg.cancel_scope)
        if config["role"] == "mix":
            mix = MixNodeServer(
                secrets.sphinx_secret,
                secrets.identity,
                layer=int(config["layer"]),
                name=str(config["name"]),
                config=NodeConfig(host=host, drop_probability=float(config.get("drop_probability") or 0.0)),
            )
            await tg.start(mix.serve)
            _reply({"ready": True, "port": mix.port})
        else:
            gateway = GatewayServer(
                secrets.sphinx_secret,
                secrets.identity_secret,
                name=str(config["name"]),
                config=GatewayConfig(host=host),
            )
            await tg.start(gateway.serve)
            api_listener = await anyio.create_tcp_listener(local_host=host, local_port=0)
            api_port = api_listener.extra(anyio.abc.SocketAttribute.local_port)
            _reply(
                {
                    "ready": True,
                    "port": gateway.port,
                    "client_port": gateway.client_port,
                    "api_port": api_port,
                }
            )
            line = await stdin.readline()
            if not line:
                tg.cancel_scope.cancel()
                return
            descriptor = DevnetDescriptor.from_dict(json.loads(line)["descriptor"])
            api = ApiServer(
                descriptor.topology,
                descriptor.topology.gateway(gateway.identity),
                host=host,
                client_config=client_config_for(bool(config["fast"]), config.get("average_packet_delay")),
                listener=api_listener,
            )
            await tg.start(api.serve)
            _reply({"serving": True})
        tg.start_soon(_stop_on_stdin_eof, stdin, tg.cancel_scope)


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _stop_on_stdin_eof(stdin: _StdinLines, scope: anyio.CancelScope) -> None:
    while await stdin.readline():
        pass
    scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            scope.cancel()
            return


def main() -> None:
    anyio.run(_child)


if __name__ == "__main__":
    main()


__all__ = ["run_devnet_processes"]
