"""The Nym-style mixnet: Sphinx packets, messages and fragments, SURBs, clients, nodes, gateways."""

from smolmix_core.mixnet.client_core import ClientCoreConfig, MixnetClientCore, OutgoingPacket
from smolmix_core.mixnet.fragment import FragmentIdentifier
from smolmix_core.mixnet.interface import MixnetClient, ReceivedMessage
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.reply import ReplySurb
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology

__all__ = [
    "ClientCoreConfig",
    "ClientKeys",
    "FragmentIdentifier",
    "Gateway",
    "MixNode",
    "MixnetClient",
    "MixnetClientCore",
    "NymNodeRoutingAddress",
    "OutgoingPacket",
    "ReceivedMessage",
    "Recipient",
    "ReplySurb",
    "Topology",
]
