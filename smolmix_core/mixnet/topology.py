"""The network map a client routes over: mix layers and gateways, with JSON descriptors.

Route choice is uniform per layer (spec §1: weighting is upstream's business; uniform is fine for
a local mixnet) and driven by the caller's ``random.Random`` so that seeded runs replay.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from smolmix_core.errors import RoutingAddressError, TopologyError
from smolmix_core.mixnet.base58 import b58decode, b58encode
from smolmix_core.mixnet.routing import SPHINX_ADDRESS_SIZE, NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import RouteNode

KEY_SIZE = 32


def _check_key(owner: str, name: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != KEY_SIZE:
        raise TopologyError(f"{owner} {name} must be {KEY_SIZE} bytes")


def _routing_address(owner: str, host: str, port: int) -> NymNodeRoutingAddress:
    try:
        return NymNodeRoutingAddress(host, port)
    except RoutingAddressError as exc:
        raise TopologyError(f"{owner}: {exc}") from None


def _cache_routing(node: MixNode | Gateway, address: NymNodeRoutingAddress) -> None:
    object.__setattr__(node, "routing_address", address)
    object.__setattr__(node, "route_node", RouteNode(address.to_padded(SPHINX_ADDRESS_SIZE), node.sphinx_key))


@dataclass(frozen=True, slots=True)
class MixNode:
    """A mix in one layer (1-based); ``sphinx_key`` is its x25519 public key."""

    identity: bytes
    sphinx_key: bytes
    host: str
    port: int
    layer: int
    routing_address: NymNodeRoutingAddress = field(init=False, repr=False, compare=False)
    route_node: RouteNode = field(init=False, repr=False, compare=False)
    """Parsed once: a route is built for every packet sent."""

    def __post_init__(self) -> None:
        _check_key("mix node", "identity", self.identity)
        _check_key("mix node", "sphinx_key", self.sphinx_key)
        if self.layer < 1:
            raise TopologyError(f"mix node layer must be >= 1, got {self.layer}")
        _cache_routing(self, _routing_address("mix node", self.host, self.port))

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": b58encode(self.identity),
            "sphinx_key": b58encode(self.sphinx_key),
            "host": self.host,
            "port": self.port,
            "layer": self.layer,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MixNode:
        try:
            return cls(
                _key_from_text(data["identity"]),
                _key_from_text(data["sphinx_key"]),
                str(data["host"]),
                int(data["port"]),
                int(data["layer"]),
            )
        except TopologyError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TopologyError(f"malformed mix node descriptor: {exc!r}") from None


@dataclass(frozen=True, slots=True)
class Gateway:
    """An entry/exit gateway: a Sphinx hop at ``(host, mix_port)``, clients connect to ``client_url``."""

    identity: bytes
    sphinx_key: bytes
    host: str
    mix_port: int
    client_url: str
    routing_address: NymNodeRoutingAddress = field(init=False, repr=False, compare=False)
    route_node: RouteNode = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key("gateway", "identity", self.identity)
        _check_key("gateway", "sphinx_key", self.sphinx_key)
        _cache_routing(self, _routing_address("gateway", self.host, self.mix_port))

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": b58encode(self.identity),
            "sphinx_key": b58encode(self.sphinx_key),
            "host": self.host,
            "mix_port": self.mix_port,
            "client_url": self.client_url,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Gateway:
        try:
            return cls(
                _key_from_text(data["identity"]),
                _key_from_text(data["sphinx_key"]),
                str(data["host"]),
                int(data["mix_port"]),
                str(data["client_url"]),
            )
        except TopologyError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise TopologyError(f"malformed gateway descriptor: {exc!r}") from None


Node = MixNode | Gateway


class Topology:
    """Mix layers (``layers[0]`` is layer 1) and gateways, checked for consistency on creation."""

    def __init__(self, layers: Sequence[Sequence[MixNode]], gateways: Iterable[Gateway]) -> None:
        self.layers: tuple[tuple[MixNode, ...], ...] = tuple(tuple(layer) for layer in layers)
        self.gateways: tuple[Gateway, ...] = tuple(gateways)
        if not self.layers:
            raise TopologyError("a topology needs at least one mix layer")
        if not self.gateways:
            raise TopologyError("a topology needs at least one gateway")
        self._by_identity: dict[bytes, Node] = {}
        self._by_address: dict[NymNodeRoutingAddress, Node] = {}
        for number, layer in enumerate(self.layers, start=1):
            if not layer:
                raise TopologyError(f"mix layer {number} is empty")
            for node in layer:
                if node.layer != number:
                    raise TopologyError(
                        f"mix node {b58encode(node.identity)} says layer {node.layer}, "
                        f"but is listed in layer {number}"
                    )
                self._add(node)
        for gateway in self.gateways:
            self._add(gateway)

    def _add(self, node: Node) -> None:
        name = b58encode(node.identity)
        if node.identity in self._by_identity:
            raise TopologyError(f"node identity {name} appears twice")
        if node.routing_address in self._by_address:
            raise TopologyError(f"routing address {node.routing_address} is used by two nodes")
        self._by_identity[node.identity] = node
        self._by_address[node.routing_address] = node

    @classmethod
    def from_nodes(cls, mixnodes: Iterable[MixNode], gateways: Iterable[Gateway]) -> Topology:
        """Group a flat list of mixes by their ``layer`` (layers must be 1..n without gaps)."""
        grouped: dict[int, list[MixNode]] = {}
        for node in mixnodes:
            grouped.setdefault(node.layer, []).append(node)
        if not grouped:
            raise TopologyError("a topology needs at least one mix node")
        count = len(grouped)
        if max(grouped) != count:
            # a gap: found among the first count + 1 numbers, never by walking up to a hostile layer
            missing = min(set(range(1, count + 2)) - grouped.keys())
            raise TopologyError(f"mix layer {missing} is empty")
        return cls([grouped[number] for number in range(1, count + 1)], gateways)

    @property
    def mixnodes(self) -> tuple[MixNode, ...]:
        return tuple(node for layer in self.layers for node in layer)

    def random_mix_route(self, rng: random.Random) -> list[MixNode]:
        """One uniformly chosen mix per layer, layer 1 first."""
        return [layer[rng.randrange(len(layer))] for layer in self.layers]

    def random_route(self, rng: random.Random, gateway_identity: bytes) -> list[Node]:
        """A full Sphinx route: one mix per layer, then the given gateway as the last hop."""
        return [*self.random_mix_route(rng), self.gateway(gateway_identity)]

    def random_gateway(self, rng: random.Random) -> Gateway:
        return self.gateways[rng.randrange(len(self.gateways))]

    def gateway(self, identity: bytes) -> Gateway:
        node = self._by_identity.get(identity)
        if not isinstance(node, Gateway):
            raise TopologyError(f"no gateway with identity {b58encode(identity)} in the topology")
        return node

    def node_by_identity(self, identity: bytes) -> Node | None:
        return self._by_identity.get(identity)

    def node_by_address(self, address: NymNodeRoutingAddress) -> Node | None:
        return self._by_address.get(address)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mixnodes": [node.to_dict() for node in self.mixnodes],
            "gateways": [gateway.to_dict() for gateway in self.gateways],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Topology:
        try:
            mixnodes = [MixNode.from_dict(item) for item in data["mixnodes"]]
            gateways = [Gateway.from_dict(item) for item in data["gateways"]]
        except (KeyError, TypeError) as exc:
            raise TopologyError(f"malformed topology descriptor: {exc!r}") from None
        return cls.from_nodes(mixnodes, gateways)


def sample_delays(rng: random.Random, mean: float, hops: int) -> list[int]:
    """Per-hop delays in nanoseconds, each ``Exp(mean seconds)``, rounded; a mean of 0 gives zeros."""
    if mean <= 0:
        return [0] * hops
    return [round(rng.expovariate(1.0 / mean) * 1e9) for _ in range(hops)]


def _key_from_text(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TopologyError(f"keys in descriptors are base58 text, got {type(text).__name__}")
    try:
        key = b58decode(text, max_size=KEY_SIZE)
    except ValueError as exc:
        raise TopologyError(f"key is not base58: {exc}") from None
    if len(key) != KEY_SIZE:
        raise TopologyError(f"key must decode to {KEY_SIZE} bytes, got {len(key)}")
    return key
