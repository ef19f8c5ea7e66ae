"""Lioness, the wide-block cipher that encrypts Sphinx payloads (spec mixnet.md §3.2).

``key = k1(32) ‖ k2(64) ‖ k3(32) ‖ k4(64)``, ``block = L(32) ‖ R(rest)``; the stream cipher is
ChaCha20 with a zero nonce and counter (the IETF and original variants agree there) and the hash is
BLAKE2b keyed with 64 bytes, 32-byte digest. Changing any byte of the block changes all of the
output, so a tagged payload cannot be edited in transit without destroying it.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.constants import PAYLOAD_KEY_SIZE

LIONESS_KEY_SIZE = PAYLOAD_KEY_SIZE
_HALF = 32
_ZERO_NONCE = bytes(16)


def _split_key(key: bytes) -> tuple[int, bytes, int, bytes]:
    if len(key) != LIONESS_KEY_SIZE:
        raise SphinxError(f"a Lioness key has {LIONESS_KEY_SIZE} bytes, not {len(key)}")
    return (
        int.from_bytes(key[0:32], "little"),
        key[32:96],
        int.from_bytes(key[96:128], "little"),
        key[128:192],
    )


def _check_block(block: bytes) -> None:
    if len(block) <= _HALF:
        raise SphinxError(f"a Lioness block needs more than {_HALF} bytes, got {len(block)}")


def _stream(left: int, subkey: int, data: bytes) -> bytes:
    key = (left ^ subkey).to_bytes(_HALF, "little")
    return Cipher(algorithms.ChaCha20(key, _ZERO_NONCE), mode=None).encryptor().update(data)


def _hash(subkey: bytes, data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, key=subkey, digest_size=_HALF).digest(), "little")


def lioness_encrypt(key: bytes, block: bytes) -> bytes:
    """Encrypt ``block`` (more than 32 bytes) under a 192-byte key; the output has the same length."""
    k1, k2, k3, k4 = _split_key(key)
    _check_block(block)
    left = int.from_bytes(block[:_HALF], "little")
    right = _stream(left, k1, block[_HALF:])
    left ^= _hash(k2, right)
    right = _stream(left, k3, right)
    left ^= _hash(k4, right)
    return left.to_bytes(_HALF, "little") + right


def lioness_decrypt(key: bytes, block: bytes) -> bytes:
    """Invert ``lioness_encrypt``."""
    k1, k2, k3, k4 = _split_key(key)
    _check_block(block)
    right = block[_HALF:]
    left = int.from_bytes(block[:_HALF], "little") ^ _hash(k4, right)
    right = _stream(left, k3, right)
    left ^= _hash(k2, right)
    right = _stream(left, k1, right)
    return left.to_bytes(_HALF, "little") + right
