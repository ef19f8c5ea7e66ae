"""X25519 (RFC 7748) on raw 32-byte strings, through libsodium: the one implementation smolmix uses.

``cryptography`` can only multiply with a private-key object, and building one from bytes costs a
full scalar multiplication (it computes the public key) before ``exchange`` does another. Sphinx
multiplies by a fresh scalar at almost every step — a blinding factor per hop, a product of them
per hop of the sender's schedule, an ephemeral key per fragment — so that hidden multiplication
doubled the cost of the dominant operation. libsodium's ``crypto_scalarmult`` takes the scalar as
bytes and does exactly one. Both clamp the scalar, ignore the top bit of ``u`` and refuse an
all-zero result (a low-order ``u``); the tests prove the outputs equal.
"""

from __future__ import annotations

from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base
from nacl.exceptions import CryptoError

KEY_SIZE = 32


def x25519(scalar: bytes, u: bytes) -> bytes:
    """``X25519(scalar, u)``; ``ValueError`` for inputs that are not 32 bytes or a low-order ``u``."""
    if len(scalar) != KEY_SIZE or len(u) != KEY_SIZE:
        # libsodium reads 32 bytes whatever it is given: lengths are checked here, always
        raise ValueError(f"X25519 takes 32-byte inputs, got {len(scalar)} and {len(u)}")
    try:
        return crypto_scalarmult(bytes(scalar), bytes(u))
    except CryptoError:
        raise ValueError("X25519 with a low-order point gives the all-zero secret") from None


def x25519_base(scalar: bytes) -> bytes:
    """The public key of ``scalar``: ``X25519(scalar, 9)``, with libsodium's fixed-base tables."""
    if len(scalar) != KEY_SIZE:
        raise ValueError(f"an X25519 private key has 32 bytes, not {len(scalar)}")
    return crypto_scalarmult_base(bytes(scalar))


__all__ = ["KEY_SIZE", "x25519", "x25519_base"]
