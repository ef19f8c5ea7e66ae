"""A client's long-term keys: ed25519 identity, x25519 encryption key, and the 16-byte ack key.

The identity names the client (and is its Sphinx destination), the encryption key receives the
per-fragment key exchange, and the ack key encrypts fragment ids inside SURB-ACKs; it never
leaves the client.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from smolmix_core.errors import MixnetError
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.x25519 import x25519, x25519_base

ACK_KEY_SIZE = 16
_PRIVATE_SIZE = 32
SERIALIZED_SIZE = 2 * _PRIVATE_SIZE + ACK_KEY_SIZE


@dataclass(frozen=True)
class ClientKeys:
    """Private key material; ``to_bytes`` is ``ed25519 seed ‖ x25519 secret ‖ ack key`` (80 B)."""

    identity_secret: bytes
    encryption_secret: bytes
    ack_key: bytes
    identity_key: bytes = field(init=False, repr=False)
    encryption_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.identity_secret) != _PRIVATE_SIZE or len(self.encryption_secret) != _PRIVATE_SIZE:
            raise MixnetError("client private keys must be 32 bytes each")
        if len(self.ack_key) != ACK_KEY_SIZE:
            raise MixnetError(f"the ack key must be {ACK_KEY_SIZE} bytes")
        identity = Ed25519PrivateKey.from_private_bytes(self.identity_secret).public_key().public_bytes_raw()
        object.__setattr__(self, "identity_key", identity)
        object.__setattr__(self, "encryption_key", x25519_base(self.encryption_secret))

    @classmethod
    def generate(cls, rng: random.Random | None = None) -> ClientKeys:
        """Fresh keys; a seeded ``rng`` makes them reproducible (tests only: not secret then)."""
        source = rng if rng is not None else random.SystemRandom()
        return cls(
            source.randbytes(_PRIVATE_SIZE), source.randbytes(_PRIVATE_SIZE), source.randbytes(ACK_KEY_SIZE)
        )

    def to_bytes(self) -> bytes:
        return self.identity_secret + self.encryption_secret + self.ack_key

    @classmethod
    def from_bytes(cls, data: bytes) -> ClientKeys:
        if len(data) != SERIALIZED_SIZE:
            raise MixnetError(f"serialized client keys are {SERIALIZED_SIZE} bytes, got {len(data)}")
        return cls(data[:32], data[32:64], data[64:])

    def address(self, gateway_identity: bytes) -> Recipient:
        """This client's Recipient when registered at the given gateway."""
        return Recipient(self.identity_key, self.encryption_key, gateway_identity)

    def sign(self, message: bytes) -> bytes:
        """An ed25519 signature by our identity (the gateway handshake needs one)."""
        return Ed25519PrivateKey.from_private_bytes(self.identity_secret).sign(message)

    def diffie_hellman(self, peer_public: bytes) -> bytes:
        """X25519 of our encryption secret with a peer's public key (the fragment key exchange)."""
        return x25519(self.encryption_secret, peer_public)

    def __repr__(self) -> str:
        return f"ClientKeys(identity={self.identity_key.hex()[:16]}…)"
