"""Userspace TCP/IP: a sans-I/O core (``core``, ``tcp``) and its anyio driver (``stack``)."""

from smolmix_core.netstack.config import StackConfig, TcpConfig
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.request_listener import TcpConnectionRequest, TcpRequestListener
from smolmix_core.netstack.stack import Stack
from smolmix_core.netstack.streams import TcpListener, TcpStream, TcpStreamAttribute
from smolmix_core.netstack.tcp_request import Unreachable
from smolmix_core.netstack.udp_socket import UdpSocket

__all__ = [
    "NetCore",
    "Stack",
    "StackConfig",
    "TcpConfig",
    "TcpConnectionRequest",
    "TcpListener",
    "TcpRequestListener",
    "TcpStream",
    "TcpStreamAttribute",
    "UdpSocket",
    "Unreachable",
]
