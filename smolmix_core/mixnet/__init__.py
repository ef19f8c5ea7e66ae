"""The Nym-style mixnet: Sphinx packets, messages and fragments, SURBs, clients, nodes, gateways."""

from smolmix_core.mixnet.interface import MixnetClient, ReceivedMessage

__all__ = ["MixnetClient", "ReceivedMessage"]
