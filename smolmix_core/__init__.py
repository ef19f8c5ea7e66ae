"""smolmix core: userspace TCP/IP, devices, the Nym-style mixnet, the devnet and the Tunnel."""

from smolmix_core.errors import SmolmixError

__all__ = ["SmolmixError"]
__version__ = "0.1.0"
