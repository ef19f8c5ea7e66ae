"""A whole mixnet inside the current process, on loopback: gateways, mix layers, nym-client APIs.

    async with Devnet.start(layers=3, nodes_per_layer=1, fast=True) as net:
        async with await net.client() as alice, await net.client(gateway=1) as bob:
            await alice.send(bob.address, b"hello")
            print((await bob.receive()).data)

Every server listens on an ephemeral 127.0.0.1 port. ``net.descriptor()`` is the JSON topology
other processes load. The devnet gives no anonymity: everything runs on one host.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace

import anyio
import anyio.abc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smolmix_core.clock import Clock, RealClock
from smolmix_core.devnet.descriptor import WARNING, DevnetDescriptor
from smolmix_core.errors import DevnetError
from smolmix_core.mixnet.api_server import ApiServer
from smolmix_core.mixnet.client import SphinxClient, SphinxClientConfig
from smolmix_core.mixnet.gateway import GatewayConfig, GatewayServer
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.node import LinkMonitor, MixNodeServer, NodeConfig
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.sphinx import generate_keypair
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology

logger = logging.getLogger("smolmix.devnet")


@dataclass(frozen=True)
class NodeSecrets:
    """A node's private keys: X25519 for Sphinx, an ed25519 seed for its identity."""

    sphinx_secret: bytes
    identity_secret: bytes

    @classmethod
    def generate(cls, rng: random.Random | None = None) -> NodeSecrets:
        source = rng if rng is not None else random.SystemRandom()
        sphinx_secret, _ = generate_keypair(source)
        return cls(sphinx_secret, source.randbytes(32))

    @property
    def identity(self) -> bytes:
        return Ed25519PrivateKey.from_private_bytes(self.identity_secret).public_key().public_bytes_raw()


class Devnet:
    """Running servers of a local mixnet; build it with ``Devnet.start(...)``."""

    def __init__(
        self,
        mixes: list[MixNodeServer],
        gateways: list[GatewayServer],
        api_servers: list[ApiServer],
        topology: Topology,
        client_config: SphinxClientConfig,
        task_group: anyio.abc.TaskGroup,
        clock: Clock,
        fast: bool,
        rng: random.Random,
    ) -> None:
        self.mixes = mixes
        self.gateways = gateways
        self.api_servers = api_servers
        self.topology = topology
        self.client_config = client_config
        self.clock = clock
        self.fast = fast
        self.exit: Recipient | None = None
        self._task_group = task_group
        self._rng = rng
        self._clients: list[SphinxClient] = []

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        *,
        layers: int = 3,
        nodes_per_layer: int = 1,
        gateways: int = 2,
        fast: bool = True,
        average_packet_delay: float | None = None,
        client_config: SphinxClientConfig | None = None,
        node_config: NodeConfig | None = None,
        drop_probability: float = 0.0,
        seed: int | None = None,
        monitor: LinkMonitor | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        api: bool = True,
    ) -> AsyncIterator[Devnet]:
        """Start every server, yield the running devnet, stop everything on exit.

        ``drop_probability`` makes every mix node drop that fraction of packets (seeded from
        ``seed``); ``average_packet_delay`` (seconds per hop) applies to clients made here and
        is written to the descriptor. ``fast`` clients use no delays, no cover and no pacing.
        """
        if layers < 1 or nodes_per_layer < 1 or gateways < 1:
            raise DevnetError("a devnet needs at least one layer, one node per layer and one gateway")
        rng = random.Random(seed)
        clock = clock or RealClock()
        config = client_config or client_config_for(fast, average_packet_delay)
        base_node = node_config or NodeConfig(host=host)
        mixes: list[MixNodeServer] = []
        for layer in range(1, layers + 1):
            for index in range(nodes_per_layer):
                secrets = NodeSecrets.generate(rng)
                node_cfg = replace(
                    base_node,
                    host=host,
                    drop_probability=drop_probability or base_node.drop_probability,
                    fault_seed=rng.getrandbits(32) if seed is not None else base_node.fault_seed,
                )
                mixes.append(
                    MixNodeServer(
                        secrets.sphinx_secret,
                        secrets.identity,
                        layer=layer,
                        name=f"mix-l{layer}-{index}",
                        config=node_cfg,
                        clock=clock,
                        monitor=monitor,
                    )
                )
        gateway_servers = [
            GatewayServer(
                secrets.sphinx_secret,
                secrets.identity_secret,
                name=f"gateway-{index}",
                config=GatewayConfig(host=host),
                clock=clock,
                monitor=monitor,
            )
            for index, secrets in enumerate(NodeSecrets.generate(rng) for _ in range(gateways))
        ]
        async with anyio.create_task_group() as tg:
            for server in (*mixes, *gateway_servers):
                await tg.start(server.serve)
            topology = Topology(
                [
                    [_mix_descriptor(mix) for mix in mixes if mix.layer == layer]
                    for layer in range(1, layers + 1)
                ],
                [_gateway_descriptor(gateway) for gateway in gateway_servers],
            )
            api_servers: list[ApiServer] = []
            # API servers (and the clients they own) stop first, while the gateways can still
            # answer their closing handshakes.
            async with anyio.create_task_group() as api_group:
                if api:
                    for gateway in topology.gateways:
                        api_server = ApiServer(
                            topology, gateway, host=host, client_config=config, clock=clock
                        )
                        await api_group.start(api_server.serve)
                        api_servers.append(api_server)
                net = cls(mixes, gateway_servers, api_servers, topology, config, tg, clock, fast, rng)
                logger.warning(
                    "devnet up (%d mixes, %d gateways): %s", len(mixes), len(gateway_servers), WARNING
                )
                try:
                    yield net
                finally:
                    with anyio.CancelScope(shield=True):
                        await net._close_clients()
                    api_group.cancel_scope.cancel()
            tg.cancel_scope.cancel()

    # --- clients --------------------------------------------------------------------------------

    async def client(
        self,
        gateway: int | Gateway = 0,
        *,
        keys: ClientKeys | None = None,
        config: SphinxClientConfig | None = None,
        seed: int | None = None,
    ) -> SphinxClient:
        """A connected ``SphinxClient`` at ``gateway`` (index or descriptor); closed with the devnet."""
        chosen = self.topology.gateways[gateway] if isinstance(gateway, int) else gateway
        rng = random.Random(seed) if seed is not None else random.Random(self._rng.getrandbits(64))
        client = await SphinxClient.start(
            self._task_group,
            self.topology,
            chosen,
            keys=keys or ClientKeys.generate(rng),
            config=config or self.client_config,
            clock=self.clock,
            rng=rng,
        )
        self._clients.append(client)
        return client

    async def _close_clients(self) -> None:
        for client in self._clients:
            await client.aclose()
        self._clients.clear()

    # --- description ----------------------------------------------------------------------------

    def describe(self) -> DevnetDescriptor:
        core = self.client_config.core
        return DevnetDescriptor(
            self.topology,
            {server.gateway.identity: server.url for server in self.api_servers},
            self.exit,
            fast=self.fast,
            average_packet_delay=core.average_packet_delay,
            message_sending_average_delay=self.client_config.message_sending_average_delay,
            loop_cover_traffic_average_delay=self.client_config.loop_cover_traffic_average_delay,
        )

    def descriptor(self) -> dict[str, object]:
        """The JSON-serialisable descriptor (topology, API URLs, exit slot, client settings)."""
        return self.describe().to_dict()

    def stats(self) -> dict[str, dict[str, int]]:
        """Counters of every server, by name."""
        stats: dict[str, dict[str, int]] = {}
        for server in (*self.mixes, *self.gateways):
            stats[server.name] = server.stats()
        for index, api in enumerate(self.api_servers):
            stats[f"api-{index}"] = api.stats()
        return stats


def client_config_for(fast: bool, average_packet_delay: float | None) -> SphinxClientConfig:
    """Client settings for a devnet: fast mode, or Poisson/cover with the given per-hop delay."""
    if fast and average_packet_delay is None:
        return SphinxClientConfig.fast()
    base = SphinxClientConfig.fast() if fast else SphinxClientConfig()
    if average_packet_delay is None:
        return base
    core = replace(
        base.core, average_packet_delay=average_packet_delay, average_ack_delay=average_packet_delay
    )
    return replace(base, core=core)


def _mix_descriptor(mix: MixNodeServer) -> MixNode:
    return MixNode(mix.identity, mix.sphinx_key, mix.host, mix.port, mix.layer)


def _gateway_descriptor(gateway: GatewayServer) -> Gateway:
    return Gateway(gateway.identity, gateway.sphinx_key, gateway.host, gateway.port, gateway.client_url)


__all__ = ["Devnet", "NodeSecrets", "client_config_for"]
