"""End-to-end fragment encryption: HKDF (checked against RFC 5869), HMAC-BLAKE3, AES-128-CTR,
X25519 round trips and reply-key digests."""

from __future__ import annotations

import hashlib
import random

import blake3
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import MessageError
from smolmix_core.mixnet.encryption import (
    aes128_ctr,
    decrypt_fragment,
    decrypt_reply,
    encrypt_fragment,
    encrypt_reply,
    hkdf,
    reply_key_digest,
    shared_key,
)
from smolmix_core.mixnet.keys import ClientKeys


def test_hkdf_matches_rfc5869_with_sha256() -> None:
    # RFC 5869 test case 1
    okm = hkdf(
        hashlib.sha256,
        bytes.fromhex("0b" * 22),
        42,
        salt=bytes.fromhex("000102030405060708090a0b0c"),
        info=bytes.fromhex("f0f1f2f3f4f5f6f7f8f9"),
    )
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    # RFC 5869 test case 3: no salt, no info
    okm = hkdf(hashlib.sha256, bytes.fromhex("0b" * 22), 42)
    assert okm.hex() == (
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    )


def _manual_hmac_blake3(key: bytes, message: bytes) -> bytes:
    key = key.ljust(64, b"\x00") if len(key) <= 64 else blake3.blake3(key).digest().ljust(64, b"\x00")
    inner = blake3.blake3(bytes(b ^ 0x36 for b in key) + message).digest()
    return blake3.blake3(bytes(b ^ 0x5C for b in key) + inner).digest()


def test_shared_key_is_hkdf_over_hmac_blake3() -> None:
    dh = bytes(range(32))
    prk = _manual_hmac_blake3(bytes(32), dh)
    expected = _manual_hmac_blake3(prk, b"\x01")[:16]
    assert shared_key(dh) == expected
    assert len(shared_key(dh)) == 16


def test_aes128_ctr_nist_vector() -> None:
    # NIST SP 800-38A F.5.1, first block
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    plaintext = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    assert aes128_ctr(key, plaintext, iv).hex() == "874d6191b620e3261bef6864990db6ce"


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=1611), st.integers(min_value=0, max_value=2**32))
def test_fragment_round_trip(plaintext: bytes, seed: int) -> None:
    keys = ClientKeys.generate(random.Random(seed))
    ciphertext = encrypt_fragment(plaintext, keys.encryption_key, random.Random(seed + 1))
    assert len(ciphertext) == 32 + len(plaintext)
    assert decrypt_fragment(ciphertext, keys.diffie_hellman) == plaintext


def test_each_fragment_gets_a_fresh_ephemeral_key() -> None:
    keys = ClientKeys.generate()
    rng = random.Random(4)
    first = encrypt_fragment(b"same", keys.encryption_key, rng)
    second = encrypt_fragment(b"same", keys.encryption_key, rng)
    assert first[:32] != second[:32]
    assert first[32:] != second[32:]


def test_someone_else_cannot_decrypt() -> None:
    alice, eve = ClientKeys.generate(), ClientKeys.generate()
    ciphertext = encrypt_fragment(b"secret message", alice.encryption_key, random.Random(1))
    assert decrypt_fragment(ciphertext, eve.diffie_hellman) != b"secret message"


def test_low_order_keys_are_message_errors() -> None:
    keys = ClientKeys.generate()
    with pytest.raises(MessageError, match="unusable"):
        decrypt_fragment(bytes(64), keys.diffie_hellman)
    with pytest.raises(MessageError, match="unusable"):
        encrypt_fragment(b"x", bytes(32), random.Random(1))
    with pytest.raises(MessageError, match="shorter"):
        decrypt_fragment(bytes(10), keys.diffie_hellman)


def test_reply_encryption_and_digest() -> None:
    key = bytes(range(16))
    assert reply_key_digest(key) == blake3.blake3(key).digest()
    ciphertext = encrypt_reply(b"reply fragment", key)
    assert ciphertext[:32] == reply_key_digest(key)
    assert ciphertext[32:] == aes128_ctr(key, b"reply fragment")
    assert decrypt_reply(ciphertext, key) == b"reply fragment"


def test_ctr_counter_is_64_bits_and_wraps_like_ctr64be() -> None:
    key = bytes(range(16))
    iv = b"\xaa" * 8 + b"\xff" * 8
    ecb = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    keystream = ecb.update(iv + b"\xaa" * 8 + bytes(8) + b"\xaa" * 8 + bytes(7) + b"\x01")
    data = bytes(range(48))
    assert aes128_ctr(key, data, iv) == bytes(a ^ b for a, b in zip(data, keystream))
