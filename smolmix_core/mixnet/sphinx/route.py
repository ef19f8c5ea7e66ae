"""A hop of a Sphinx route."""

from __future__ import annotations

from dataclasses import dataclass

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.constants import NODE_ADDRESS_LENGTH


@dataclass(frozen=True, slots=True)
class RouteNode:
    """A mix node or gateway: its 32-byte (zero-padded) routing address and X25519 public key."""

    address: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if len(self.address) != NODE_ADDRESS_LENGTH:
            raise SphinxError(f"a node address has {NODE_ADDRESS_LENGTH} bytes, not {len(self.address)}")
        if len(self.public_key) != 32:
            raise SphinxError(f"a node public key has 32 bytes, not {len(self.public_key)}")
