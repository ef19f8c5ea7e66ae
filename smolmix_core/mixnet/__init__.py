"""The Nym-style mixnet: Sphinx packets, messages and fragments, SURBs, clients, nodes, gateways."""

from smolmix_core.mixnet.api_server import ApiServer
from smolmix_core.mixnet.client import SphinxClient, SphinxClientConfig
from smolmix_core.mixnet.client_core import ClientCoreConfig, MixnetClientCore, OutgoingPacket
from smolmix_core.mixnet.fragment import FragmentIdentifier
from smolmix_core.mixnet.gateway import GatewayConfig, GatewayServer
from smolmix_core.mixnet.gateway_link import GatewayLink
from smolmix_core.mixnet.interface import MixnetClient, ReceivedMessage
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.node import LinkObservation, MixNodeServer, NodeConfig
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.reply import ReplySurb
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.topology import Gateway, MixNode, Topology

__all__ = [
    "ApiServer",
    "ClientCoreConfig",
    "ClientKeys",
    "FragmentIdentifier",
    "Gateway",
    "GatewayConfig",
    "GatewayLink",
    "GatewayServer",
    "LinkObservation",
    "MixNode",
    "MixNodeServer",
    "MixnetClient",
    "MixnetClientCore",
    "NodeConfig",
    "NymNodeRoutingAddress",
    "OutgoingPacket",
    "ReceivedMessage",
    "Recipient",
    "ReplySurb",
    "SphinxClient",
    "SphinxClientConfig",
    "Topology",
]
