"""A whole mixnet on loopback for development and tests: gateways, mix layers, nym-client APIs.

It gives no anonymity (everything runs on one host); it exists so that clients, the tunnel and
tests can run against real Sphinx packets, real TCP links and real timing without the Internet.
"""

from smolmix_core.devnet.descriptor import DevnetDescriptor
from smolmix_core.devnet.network import Devnet, NodeSecrets, client_config_for
from smolmix_core.devnet.status import NodeStatus, check_devnet

__all__ = ["Devnet", "DevnetDescriptor", "NodeSecrets", "NodeStatus", "check_devnet", "client_config_for"]
