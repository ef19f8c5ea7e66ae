"""``smolmix devnet up|status``: run a local mixnet as a service, or check one."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from smolmix_core.devnet import Devnet, DevnetDescriptor, check_devnet
from smolmix_core.devnet.descriptor import WARNING
from smolmix_core.devnet.processes import run_devnet_processes
from smolmix_core.errors import SmolmixError

DEFAULT_DESCRIPTOR = "smolmix-devnet.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="devnet_action", required=True)
    up = actions.add_parser("up", help="run a devnet until Ctrl-C/SIGTERM and write its descriptor")
    up.add_argument(
        "--descriptor", default=DEFAULT_DESCRIPTOR, help=f"where to write it (default {DEFAULT_DESCRIPTOR})"
    )
    up.add_argument("--processes", action="store_true", help="one OS process per node (uses every core)")
    up.add_argument("--layers", type=int, default=3)
    up.add_argument("--nodes-per-layer", type=int, default=1)
    up.add_argument("--gateways", type=int, default=2)
    up.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        help="mean per-hop delay for clients (default: fast mode, no delays, no cover)",
    )
    up.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    status = actions.add_parser("status", help="check that every node of a devnet answers (exit 0/1)")
    status.add_argument("descriptor", help="descriptor file written by 'smolmix devnet up'")
    status.add_argument("--timeout", type=float, default=5.0)


def run(args: argparse.Namespace) -> int:
    if args.devnet_action == "status":
        return anyio.run(_status, Path(args.descriptor), args.timeout)
    return anyio.run(_up, args, backend=args.backend)


async def _status(path: Path, probe_timeout: float) -> int:
    try:
        descriptor = DevnetDescriptor.load(path)
    except SmolmixError as exc:
        print(f"smolmix devnet status: {exc}", file=sys.stderr)
        return 1
    results = await check_devnet(descriptor, probe_timeout=probe_timeout)
    for result in results:
        print(result.line())
    healthy = all(result.ok for result in results)
    print("devnet OK" if healthy else "devnet has nodes that do not answer")
    return 0 if healthy else 1


async def _up(args: argparse.Namespace) -> int:
    path = Path(args.descriptor)
    fast = args.delay_ms is None
    delay = None if fast else args.delay_ms / 1000.0
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        try:
            if args.processes:
                async with run_devnet_processes(
                    layers=args.layers,
                    nodes_per_layer=args.nodes_per_layer,
                    gateways=args.gateways,
                    fast=fast,
                    average_packet_delay=delay,
                ) as descriptor:
                    _announce(descriptor, path, "one process per node")
                    await _wait_for_signal(signals)
            else:
                async with Devnet.start(
                    layers=args.layers,
                    nodes_per_layer=args.nodes_per_layer,
                    gateways=args.gateways,
                    fast=fast,
                    average_packet_delay=delay,
                ) as net:
                    _announce(net.describe(), path, "in this process")
                    await _wait_for_signal(signals)
        except SmolmixError as exc:
            print(f"smolmix devnet up: {exc}", file=sys.stderr)
            return 1
        finally:
            await anyio.Path(path).unlink(missing_ok=True)
    print("devnet stopped", flush=True)
    return 0


async def _wait_for_signal(signals: AsyncIterator[signal.Signals]) -> None:
    async for received in signals:
        print(f"devnet stopping ({signal.Signals(received).name})", flush=True)
        return


def _announce(descriptor: DevnetDescriptor, path: Path, where: str) -> None:
    descriptor.save(path)
    topology = descriptor.topology
    for layer in topology.layers:
        for index, mix in enumerate(layer):
            print(f"mix-l{mix.layer}-{index}   mix {mix.host}:{mix.port}", flush=True)
    for index, gateway in enumerate(topology.gateways):
        api = descriptor.api_urls.get(gateway.identity, "-")
        mix_address = f"{gateway.host}:{gateway.mix_port}"
        print(f"gateway-{index}   mix {mix_address}   client {gateway.client_url}   api {api}", flush=True)
    mode = (
        "fast mode (no delays, no cover)"
        if descriptor.fast
        else f"{descriptor.average_packet_delay * 1000:g} ms/hop"
    )
    print(f"devnet up ({where}, {mode}); descriptor: {path}", flush=True)
    print(f"warning: {WARNING}", flush=True)
