"""The primitives Sphinx is built from (spec mixnet.md §3): X25519, HKDF-SHA256, AES-128-CTR, HMAC.

Everything here takes and returns ``bytes``; the ``cryptography`` objects stay inside. Speed
matters (every packet costs several of these calls), so fixed inputs are module constants, node
public keys are checked once and cached, and X25519 is one scalar multiplication per call
(``smolmix_core.mixnet.x25519``).
"""

from __future__ import annotations

import hmac
import os
from typing import Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.constants import (
    EXPANDED_SHARED_SECRET_LENGTH,
    HEADER_MAC_SIZE,
    PAYLOAD_KEY_SIZE,
    STREAM_CIPHER_OUTPUT_LENGTH,
)
from smolmix_core.mixnet.x25519 import x25519 as raw_x25519
from smolmix_core.mixnet.x25519 import x25519_base

EXPANDED_SHARED_SECRET_HKDF_INFO = (
    b"Dwste mou enan moxlo arketa makru kai ena upomoxlio gia na ton topothetisw kai tha kinisw thn gh."
)
PAYLOAD_KEY_HKDF_SALT = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-SALT"
PAYLOAD_KEY_HKDF_INFO = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-INFO"

CURVE25519_P = 2**255 - 19
CURVE25519_ORDER = 2**252 + 27742317777372353535851937790883648493
"""ℓ, the order of the prime-order subgroup every honest public key lies in."""
_MONTGOMERY_A = 486662

_SHA256 = hashes.SHA256()
_ZERO_IV_CTR = modes.CTR(bytes(16))
_ZERO_KEYSTREAM_INPUT = bytes(STREAM_CIPHER_OUTPUT_LENGTH)
_PUBLIC_KEY_CACHE_LIMIT = 4096
_checked_public_keys: set[bytes] = set()


class RandomSource(Protocol):
    """Anything with ``randbytes`` (``random.Random`` for reproducible tests, ``None`` = os.urandom)."""

    def randbytes(self, n: int, /) -> bytes: ...


def random_bytes(rng: RandomSource | None, n: int) -> bytes:
    return os.urandom(n) if rng is None else rng.randbytes(n)


def expand_shared_secret(shared_secret: bytes) -> bytes:
    """HKDF-SHA256, empty salt, 97-byte info → ``rho 16 | mu 16 | payload 192 | blinding 32 | tag 32``."""
    hkdf = HKDF(
        algorithm=_SHA256,
        length=EXPANDED_SHARED_SECRET_LENGTH,
        salt=None,
        info=EXPANDED_SHARED_SECRET_HKDF_INFO,
    )
    return hkdf.derive(shared_secret)


def derive_payload_key(seed: bytes) -> bytes:
    """Version 259: expand a 16-byte payload key seed into the 192-byte Lioness key."""
    hkdf = HKDF(
        algorithm=_SHA256, length=PAYLOAD_KEY_SIZE, salt=PAYLOAD_KEY_HKDF_SALT, info=PAYLOAD_KEY_HKDF_INFO
    )
    return hkdf.derive(seed)


def header_keystream(stream_key: bytes) -> bytes:
    """rho: the 360-byte AES-128-CTR keystream (zero IV) that encrypts one hop's routing block."""
    return header_encrypt(stream_key, _ZERO_KEYSTREAM_INPUT)


def header_encrypt(stream_key: bytes, data: bytes) -> bytes:
    """``data`` XOR the start of rho — one call instead of keystream plus XOR."""
    return Cipher(algorithms.AES(stream_key), _ZERO_IV_CTR).encryptor().update(data)


def header_mac(mac_key: bytes, beta: bytes) -> bytes:
    """gamma = HMAC-SHA256(mu, beta) truncated to 16 bytes."""
    return hmac.digest(mac_key, beta, "sha256")[:HEADER_MAC_SIZE]


def xor_bytes(a: bytes, b: bytes) -> bytes:
    """XOR of two equal-length strings through Python integers (no per-byte loop)."""
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(len(a), "little")


def is_on_curve(public_key: bytes) -> bool:
    """True if the u-coordinate is a point of Curve25519 itself (not of its quadratic twist)."""
    u = (int.from_bytes(public_key, "little") & ((1 << 255) - 1)) % CURVE25519_P
    rhs = (u * u * u + _MONTGOMERY_A * u * u + u) % CURVE25519_P
    return rhs == 0 or pow(rhs, (CURVE25519_P - 1) // 2, CURVE25519_P) == 1


def check_node_public_key(public_key: bytes) -> bytes:
    """A node's public key, checked once to be 32 bytes and on the curve (not its twist), then cached."""
    if public_key in _checked_public_keys:
        return public_key
    if len(public_key) != 32:
        raise SphinxError(f"an X25519 public key has 32 bytes, not {len(public_key)}")
    if not is_on_curve(public_key):
        raise SphinxError("public key is not a point of Curve25519 (twist point)")
    if len(_checked_public_keys) >= _PUBLIC_KEY_CACHE_LIMIT:
        _checked_public_keys.clear()
    _checked_public_keys.add(bytes(public_key))
    return public_key


def x25519(scalar: bytes, u: bytes) -> bytes:
    """RFC 7748 X25519(scalar, u) on raw bytes; ``SphinxError`` for a low-order ``u``."""
    try:
        return raw_x25519(scalar, u)
    except ValueError as exc:
        raise SphinxError(str(exc)) from None


def generate_keypair(rng: RandomSource | None = None) -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(private, public)``, 32 bytes each; ``rng`` makes it reproducible."""
    private = random_bytes(rng, 32)
    return private, x25519_base(private)
