"""A tiny in-process mixnet for client-core tests: real SphinxProcessors, no sockets, no mocks.

Three mix layers of two nodes, one gateway per client. Mixes peel a layer and forward; a
gateway at the final hop does what spec §9 says — split off the 405-byte SURB-ACK, launch its
ack packet at once, and hand the rest (or a 21-byte ack) to the client whose identity is the
destination. Every packet on every link is checked to be exactly Regular or Ack size. Delays in
the headers are ignored: a step delivers everything in flight, which makes loss and reordering
the only things tests need to control.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smolmix_core.mixnet.ack import SURB_ACK_SIZE
from smolmix_core.mixnet.client_core import ClientCoreConfig, MixnetClientCore, OutgoingPacket
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.routing import MAX_UNPADDED_SIZE, NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import FinalHop, ForwardHop, PacketSize, SphinxProcessor, generate_keypair
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology

Drop = Callable[[str, bytes], bool]


@dataclass
class SimNetwork:
    seed: int = 1
    config: ClientCoreConfig = field(default_factory=ClientCoreConfig)
    clients: dict[str, MixnetClientCore] = field(default_factory=dict)
    drop: Drop | None = None
    duplicate: Callable[[bytes], bool] | None = None
    now: float = 0.0
    sizes_seen: set[int] = field(default_factory=set)
    hops: int = 0
    dropped: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._processors: dict[tuple[str, int], SphinxProcessor] = {}
        self._gateway_of: dict[tuple[str, int], bytes] = {}
        self._by_identity: dict[bytes, MixnetClientCore] = {}
        layers = []
        for layer in (1, 2, 3):
            nodes = []
            for index in range(2):
                private, public = generate_keypair(self.rng)
                node = MixNode(self.rng.randbytes(32), public, f"127.0.{layer}.{index + 1}", 1789, layer)
                self._processors[node.routing_address.address] = SphinxProcessor(private)
                nodes.append(node)
            layers.append(nodes)
        self.gateways = []
        for index in range(2):
            private, public = generate_keypair(self.rng)
            identity = Ed25519PrivateKey.from_private_bytes(self.rng.randbytes(32)).public_key()
            gateway = Gateway(
                identity.public_bytes_raw(), public, f"127.0.9.{index + 1}", 1789, "ws://unused"
            )
            self._processors[gateway.routing_address.address] = SphinxProcessor(private)
            self._gateway_of[gateway.routing_address.address] = gateway.identity
            self.gateways.append(gateway)
        self.topology = Topology(layers, self.gateways)
        self._wire: deque[tuple[tuple[str, int], bytes, str]] = deque()

    def add_client(
        self, name: str, gateway_index: int, config: ClientCoreConfig | None = None
    ) -> MixnetClientCore:
        core = MixnetClientCore(
            ClientKeys.generate(self.rng),
            self.gateways[gateway_index],
            self.topology,
            config or self.config,
            rng=random.Random(self.rng.getrandbits(64)),
        )
        self.clients[name] = core
        self._by_identity[core.address.identity] = core
        return core

    def send(self, packet: OutgoingPacket, label: str) -> None:
        """The client's own gateway forwards the MixPacket to its first hop."""
        assert len(packet.packet) == packet.packet_size.total_size
        assert NymNodeRoutingAddress.from_bytes(packet.first_hop_address).address == packet.first_hop
        self._wire.append((packet.first_hop, packet.packet, label))

    def pump_client(self, name: str, limit: int | None = None) -> int:
        """Send everything the client has queued (one main-stream tick per packet)."""
        core = self.clients[name]
        sent = 0
        while limit is None or sent < limit:
            packet = core.next_real_packet(self.now)
            if packet is None:
                break
            core.packet_sent(packet, self.now)
            self.send(packet, name)
            sent += 1
        return sent

    def deliver(self) -> None:
        """Run every packet in flight through the mixes and gateways until the wire is empty."""
        while self._wire:
            address, packet, label = self._wire.popleft()
            self.sizes_seen.add(len(packet))
            assert len(packet) in (PacketSize.REGULAR.total_size, PacketSize.ACK.total_size) or (
                len(packet) == self.config.packet_size.total_size
            ), f"odd packet size {len(packet)}"
            if self.drop is not None and self.drop(label, packet):
                self.dropped += 1
                continue
            copies = 2 if self.duplicate is not None and self.duplicate(packet) else 1
            for _ in range(copies):
                self._hop(address, packet, label)

    def process_at(self, address: tuple[str, int], packet: bytes) -> ForwardHop | FinalHop:
        """What the node at ``address`` makes of ``packet`` (for tests that walk a route by hand)."""
        return self._processors[address].process(packet)

    def _hop(self, address: tuple[str, int], packet: bytes, label: str) -> None:
        self.hops += 1
        result = self._processors[address].process(packet)
        if not isinstance(result, FinalHop):
            next_address = NymNodeRoutingAddress.from_padded(result.next_address).address
            self._wire.append((next_address, result.packet, label))
            return
        assert address in self._gateway_of, "only gateways are final hops"
        client = self._by_identity[result.destination]
        assert client.address.gateway == self._gateway_of[address]
        message = result.message
        if len(packet) != PacketSize.ACK.total_size:
            ack_hop = NymNodeRoutingAddress.from_padded(message[:MAX_UNPADDED_SIZE]).address
            self._wire.append((ack_hop, message[MAX_UNPADDED_SIZE:SURB_ACK_SIZE], label + ":ack"))
            message = message[SURB_ACK_SIZE:]
        client.handle_gateway_payload(message, self.now)

    def run(self, names: list[str] | None = None, *, rounds: int = 50) -> None:
        """Alternate sending and delivering until every queue is empty (no time passes)."""
        names = names or list(self.clients)
        for _ in range(rounds):
            sent = sum(self.pump_client(name) for name in names)
            self.deliver()
            if sent == 0:
                return
        raise AssertionError("the simulation did not settle")

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for core in self.clients.values():
            core.handle_timeouts(self.now)
