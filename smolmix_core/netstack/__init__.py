"""Userspace TCP/IP: a sans-I/O core (``core``, ``tcp``) and its anyio driver (``stack``)."""

from smolmix_core.netstack.config import StackConfig, TcpConfig

__all__ = ["StackConfig", "TcpConfig"]
