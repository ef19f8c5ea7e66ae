"""End-to-end encryption of fragments (spec §8): what only the recipient can read.

Forward fragments: a fresh X25519 key per fragment, ``k = HKDF-BLAKE3(ikm = X25519(eph, enc_key))``
(16 bytes, no salt, no info) and AES-128-CTR with a zero IV; the ephemeral public key goes in
front. Replies: the creator's 16-byte reply key encrypts, and its BLAKE3 digest goes in front so
the creator can find the key again.
"""

from __future__ import annotations

import hmac
import random
from collections.abc import Callable
from typing import Any

import blake3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smolmix_core.errors import MessageError
from smolmix_core.mixnet.x25519 import x25519, x25519_base

PUBLIC_KEY_SIZE = 32
SHARED_KEY_SIZE = 16
REPLY_KEY_SIZE = 16
REPLY_KEY_DIGEST_SIZE = 32
ZERO_IV = bytes(16)

HashFactory = Callable[[], Any]


def hkdf(
    hash_factory: HashFactory, ikm: bytes, length: int, *, salt: bytes = b"", info: bytes = b""
) -> bytes:
    """RFC 5869 extract-then-expand over any hashlib-style constructor (BLAKE3 here, SHA-256 in tests)."""
    digest_size: int = hash_factory().digest_size
    if length > 255 * digest_size:
        raise ValueError(f"HKDF cannot expand to {length} bytes")
    prk = hmac.new(salt or bytes(digest_size), ikm, hash_factory).digest()
    output = b""
    block = b""
    counter = 1
    while len(output) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hash_factory).digest()
        output += block
        counter += 1
    return output[:length]


def aes128_ctr(key: bytes, data: bytes, iv: bytes = ZERO_IV) -> bytes:
    """AES-128-CTR as Nym's ``Ctr64BE``: only the IV's last 8 bytes count, wrapping at 2^64.

    OpenSSL's counter is 128 bits wide; the two differ only when the low half wraps, so the
    data is split at that block boundary and the rest continues from ``iv[:8] ‖ 0^8``.
    """
    low = int.from_bytes(iv[8:], "big")
    blocks_before_wrap = (1 << 64) - low
    if len(data) <= 16 * blocks_before_wrap:
        return _ctr(key, iv, data)
    split = 16 * blocks_before_wrap
    return _ctr(key, iv, data[:split]) + _ctr(key, iv[:8] + bytes(8), data[split:])


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def shared_key(dh_output: bytes) -> bytes:
    """The AES-128 key for one fragment from its X25519 output."""
    return hkdf(blake3.blake3, dh_output, SHARED_KEY_SIZE)


def encrypt_fragment(plaintext: bytes, recipient_encryption_key: bytes, rng: random.Random) -> bytes:
    """``eph_pub(32) ‖ AES-128-CTR(k, 0, plaintext)`` with a fresh ephemeral key."""
    ephemeral = rng.randbytes(32)
    try:
        dh_output = x25519(ephemeral, recipient_encryption_key)
    except ValueError as exc:
        raise MessageError(f"recipient encryption key is unusable: {exc}") from None
    return x25519_base(ephemeral) + aes128_ctr(shared_key(dh_output), plaintext)


def decrypt_fragment(data: bytes, diffie_hellman: Callable[[bytes], bytes]) -> bytes:
    """Inverse of ``encrypt_fragment``; ``diffie_hellman`` is the recipient's X25519 with a public key."""
    if len(data) < PUBLIC_KEY_SIZE:
        raise MessageError("encrypted fragment shorter than its ephemeral key")
    try:
        dh_output = diffie_hellman(bytes(data[:PUBLIC_KEY_SIZE]))
    except ValueError as exc:
        raise MessageError(f"ephemeral key is unusable: {exc}") from None
    return aes128_ctr(shared_key(dh_output), bytes(data[PUBLIC_KEY_SIZE:]))


def reply_key_digest(reply_key: bytes) -> bytes:
    """BLAKE3 of a reply key: the 32-byte label a reply packet carries instead of an ephemeral key."""
    return blake3.blake3(reply_key).digest()


def encrypt_reply(plaintext: bytes, reply_key: bytes) -> bytes:
    """``BLAKE3(reply_key) ‖ AES-128-CTR(reply_key, 0, plaintext)``."""
    return reply_key_digest(reply_key) + aes128_ctr(reply_key, plaintext)


def decrypt_reply(data: bytes, reply_key: bytes) -> bytes:
    return aes128_ctr(reply_key, bytes(data[REPLY_KEY_DIGEST_SIZE:]))
