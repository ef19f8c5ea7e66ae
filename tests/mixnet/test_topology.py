"""Topology: consistency checks, uniform seeded route choice, lookups and JSON descriptors."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from smolmix_core.errors import TopologyError
from smolmix_core.mixnet.base58 import b58encode
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology


def _key(n: int, salt: int = 0) -> bytes:
    return bytes([n, salt]) + bytes(30)


def _mix(n: int, layer: int) -> MixNode:
    return MixNode(_key(n), _key(n, 1), f"127.0.0.{n}", 1789, layer)


def _gateway(n: int) -> Gateway:
    return Gateway(_key(100 + n), _key(100 + n, 1), "127.0.1.1", 2000 + n, f"ws://127.0.1.1:{9000 + n}")


def _topology(per_layer: int = 3) -> Topology:
    layers = [[_mix(layer * 10 + i, layer) for i in range(per_layer)] for layer in (1, 2, 3)]
    return Topology(layers, [_gateway(0), _gateway(1)])


def test_routes_take_one_mix_per_layer_then_the_gateway() -> None:
    topology = _topology()
    rng = random.Random(7)
    target = _gateway(1)
    for _ in range(50):
        route = topology.random_route(rng, target.identity)
        assert [getattr(node, "layer", None) for node in route] == [1, 2, 3, None]
        assert route[-1] == target


def test_route_choice_is_uniform_and_seeded() -> None:
    topology = _topology(per_layer=4)
    rng = random.Random(3)
    counts = Counter(topology.random_mix_route(rng)[1].identity for _ in range(4000))
    assert len(counts) == 4
    assert all(850 < count < 1150 for count in counts.values())
    first = [topology.random_mix_route(random.Random(5)) for _ in range(3)]
    assert first[0] == first[1] == first[2]


def test_lookups() -> None:
    topology = _topology()
    mix = _mix(21, 2)
    assert topology.node_by_identity(mix.identity) == mix
    assert topology.node_by_address(NymNodeRoutingAddress("127.0.0.21", 1789)) == mix
    assert topology.node_by_address(_gateway(0).routing_address) == _gateway(0)
    assert topology.node_by_identity(bytes(32)) is None
    assert topology.gateway(_gateway(0).identity) == _gateway(0)
    with pytest.raises(TopologyError, match="no gateway"):
        topology.gateway(mix.identity)


def test_json_descriptor_round_trip() -> None:
    topology = _topology()
    text = json.dumps(topology.to_dict())
    again = Topology.from_dict(json.loads(text))
    assert again.layers == topology.layers
    assert again.gateways == topology.gateways
    assert json.loads(text)["mixnodes"][0]["identity"] == b58encode(_mix(10, 1).identity)


def test_inconsistencies_are_topology_errors() -> None:
    with pytest.raises(TopologyError, match="layer 2 is empty"):
        Topology([[_mix(1, 1)], [], [_mix(3, 3)]], [_gateway(0)])
    with pytest.raises(TopologyError, match="says layer 3"):
        Topology([[_mix(1, 3)]], [_gateway(0)])
    with pytest.raises(TopologyError, match="appears twice"):
        Topology([[_mix(1, 1), _mix(1, 1)]], [_gateway(0)])
    with pytest.raises(TopologyError, match="used by two nodes"):
        Topology([[_mix(1, 1), MixNode(_key(2), _key(2, 1), "127.0.0.1", 1789, 1)]], [_gateway(0)])
    with pytest.raises(TopologyError, match="at least one gateway"):
        Topology([[_mix(1, 1)]], [])
    with pytest.raises(TopologyError, match="at least one mix layer"):
        Topology([], [_gateway(0)])
    with pytest.raises(TopologyError, match="32 bytes"):
        MixNode(b"short", _key(1), "127.0.0.1", 1, 1)
    with pytest.raises(TopologyError, match="IP literal"):
        Gateway(_key(1), _key(2), "gateway.example", 1, "ws://x")


@pytest.mark.parametrize(
    "descriptor",
    [
        {},
        {"mixnodes": [], "gateways": []},
        {"mixnodes": [{"identity": "1"}], "gateways": []},
        {"mixnodes": [{**_mix(1, 1).to_dict(), "identity": "0OIl"}], "gateways": [_gateway(0).to_dict()]},
        {"mixnodes": [{**_mix(1, 1).to_dict(), "port": "x"}], "gateways": [_gateway(0).to_dict()]},
        {"mixnodes": [_mix(1, 1).to_dict()], "gateways": [{**_gateway(0).to_dict(), "sphinx_key": 5}]},
        {"mixnodes": [_mix(1, 2).to_dict()], "gateways": [_gateway(0).to_dict()]},
    ],
)
def test_malformed_descriptors(descriptor: dict[str, object]) -> None:
    with pytest.raises(TopologyError):
        Topology.from_dict(descriptor)


@pytest.mark.parametrize("layer", [4, 10**12])
def test_a_layer_gap_is_refused_without_walking_to_the_claimed_layer(layer: int) -> None:
    # Found by fuzzing: a descriptor naming layer 10**12 used to build 10**12 empty layers.
    descriptor = {
        "mixnodes": [_mix(1, 1).to_dict(), {**_mix(2, 2).to_dict(), "layer": layer}],
        "gateways": [_gateway(0).to_dict()],
    }
    with pytest.raises(TopologyError, match="layer 2 is empty"):
        Topology.from_dict(descriptor)
    two_layers = Topology.from_nodes([_mix(2, 2), _mix(1, 1)], [_gateway(0)])
    assert two_layers.layers == ((_mix(1, 1),), (_mix(2, 2),))


def test_routing_addresses_are_parsed_once_and_stay_out_of_equality() -> None:
    mix, gateway = _mix(5, 1), _gateway(3)
    assert mix.route_node is mix.route_node, "built once, not per packet"
    assert mix.routing_address is mix.routing_address
    assert mix.routing_address == NymNodeRoutingAddress("127.0.0.5", 1789)
    assert mix.route_node.address == NymNodeRoutingAddress("127.0.0.5", 1789).to_padded(32)
    assert mix.route_node.public_key == mix.sphinx_key
    assert gateway.route_node.address == NymNodeRoutingAddress("127.0.1.1", 2003).to_padded(32)
    assert gateway.routing_address.to_bytes() == bytes([4, 0x07, 0xD3, 127, 0, 1, 1])
    # the cached forms neither show in repr nor take part in == and hash
    assert mix == _mix(5, 1)
    assert hash(mix) == hash(_mix(5, 1))
    assert "route_node" not in repr(mix)
    assert MixNode.from_dict(mix.to_dict()) == mix
    assert set(mix.to_dict()) == {"identity", "sphinx_key", "host", "port", "layer"}
    ipv6 = NymNodeRoutingAddress("::1", 80)
    assert ipv6.to_bytes() == bytes([6, 0, 80]) + bytes(15) + b"\x01"
    assert ipv6 == NymNodeRoutingAddress("0:0::1", 80), "host normalised, wire form not compared"
