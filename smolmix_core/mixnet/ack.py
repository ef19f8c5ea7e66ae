"""SURB-ACKs (spec §10): a ready-made ack packet travelling inside every fragment's packet.

The sender builds an Ack-size Sphinx packet to itself (3 random mixes and its own gateway)
whose payload is ``IV(16) ‖ AES-128-CTR(ack_key, IV, fragment_id(5))``. The recipient's gateway
cuts ``first_hop(19, padded) ‖ ack packet(386)`` off the front of the plaintext and launches it;
21 bytes come back to the sender, who alone can read which fragment arrived.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from smolmix_core.errors import FragmentError
from smolmix_core.mixnet.encryption import aes128_ctr
from smolmix_core.mixnet.fragment import FRAGMENT_ID_SIZE, FragmentIdentifier
from smolmix_core.mixnet.routing import MAX_UNPADDED_SIZE
from smolmix_core.mixnet.sphinx import VERSION_258, PacketSize
from smolmix_core.mixnet.sphinx import build_packet as build_sphinx_packet
from smolmix_core.mixnet.topology import Node

IV_SIZE = 16
ACK_PLAINTEXT_SIZE = IV_SIZE + FRAGMENT_ID_SIZE
SURB_ACK_SIZE = MAX_UNPADDED_SIZE + PacketSize.ACK.total_size
"""405 bytes at the front of every Sphinx plaintext (``ACK_OVERHEAD`` in spec §7)."""


@dataclass(frozen=True, slots=True)
class SurbAck:
    """The 405 bytes to embed and the sum of the ack's mix delays (for the retransmission timer)."""

    data: bytes
    mix_delay: float


def encrypt_fragment_id(identifier: FragmentIdentifier, ack_key: bytes, rng: random.Random) -> bytes:
    iv = rng.randbytes(IV_SIZE)
    return iv + aes128_ctr(ack_key, identifier.to_bytes(), iv)


def decode_ack(data: bytes, ack_key: bytes) -> FragmentIdentifier:
    """The fragment a received 21-byte ack confirms; ``FragmentError`` if it is not one of ours."""
    if len(data) != ACK_PLAINTEXT_SIZE:
        raise FragmentError(f"an ack is {ACK_PLAINTEXT_SIZE} bytes, got {len(data)}")
    return FragmentIdentifier.from_bytes(aes128_ctr(ack_key, bytes(data[IV_SIZE:]), bytes(data[:IV_SIZE])))


def build_surb_ack(
    identifier: FragmentIdentifier,
    *,
    ack_key: bytes,
    route: Sequence[Node],
    destination: bytes,
    delays_ns: Sequence[int],
    rng: random.Random,
    version: int = VERSION_258,
) -> SurbAck:
    """A SURB-ACK over ``route`` (mixes, then the sender's own gateway) to ``destination`` (the sender)."""
    packet = build_sphinx_packet(
        [node.route_node for node in route],
        destination,
        encrypt_fragment_id(identifier, ack_key, rng),
        delays_ns=delays_ns,
        payload_size=PacketSize.ACK.payload_size,
        version=version,
        rng=rng,
    )
    first_hop = route[0].routing_address.to_padded(MAX_UNPADDED_SIZE)
    mix_delay = sum(delays_ns[:-1]) / 1e9
    return SurbAck(first_hop + packet, mix_delay)
