"""The Nym-style mixnet: Sphinx packets, messages and fragments, SURBs, clients, nodes, gateways."""

from smolmix_core.mixnet.interface import MixnetClient, ReceivedMessage
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology

__all__ = [
    "ClientKeys",
    "Gateway",
    "MixNode",
    "MixnetClient",
    "NymNodeRoutingAddress",
    "ReceivedMessage",
    "Recipient",
    "Topology",
]
