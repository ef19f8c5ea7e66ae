"""ClientKeys: generation, serialisation, the address they give, and the key exchange."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from smolmix_core.errors import MixnetError
from smolmix_core.mixnet.keys import ClientKeys


def test_round_trip_and_address() -> None:
    keys = ClientKeys.generate()
    again = ClientKeys.from_bytes(keys.to_bytes())
    assert again == keys
    assert len(keys.to_bytes()) == 80
    address = keys.address(bytes(range(32)))
    assert address.identity == keys.identity_key
    assert address.encryption_key == keys.encryption_key
    assert address.gateway == bytes(range(32))


def test_seeded_generation_is_reproducible_and_unseeded_is_not() -> None:
    assert ClientKeys.generate(random.Random(1)) == ClientKeys.generate(random.Random(1))
    assert ClientKeys.generate() != ClientKeys.generate()


def test_diffie_hellman_matches_the_peer_side() -> None:
    keys = ClientKeys.generate()
    peer = X25519PrivateKey.generate()
    ours = keys.diffie_hellman(peer.public_key().public_bytes_raw())
    theirs = peer.exchange(X25519PrivateKey.from_private_bytes(keys.encryption_secret).public_key())
    assert ours == theirs


def test_signature_verifies_under_the_identity() -> None:
    keys = ClientKeys.generate()
    Ed25519PublicKey.from_public_bytes(keys.identity_key).verify(keys.sign(b"hello"), b"hello")


def test_bad_sizes() -> None:
    with pytest.raises(MixnetError, match="80 bytes"):
        ClientKeys.from_bytes(bytes(79))
    with pytest.raises(MixnetError, match="ack key"):
        ClientKeys(bytes(32), bytes(32), bytes(15))
