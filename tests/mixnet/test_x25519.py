"""X25519 through libsodium equals ``cryptography``'s X25519 (OpenSSL) on every kind of input."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.crypto import x25519 as sphinx_x25519
from smolmix_core.mixnet.x25519 import x25519, x25519_base

P = 2**255 - 19


def reference(scalar: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))


def reference_public(scalar: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(scalar).public_key().public_bytes_raw()


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def test_rfc7748_vectors() -> None:
    # RFC 7748 §5.2
    vectors = [
        (
            "a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
            "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
            "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552",
        ),
        (
            "4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
            "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
            "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957",
        ),
    ]
    for scalar, u, out in vectors:
        assert x25519(h(scalar), h(u)) == h(out) == reference(h(scalar), h(u))
    # RFC 7748 §6.1
    alice = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert x25519_base(alice) == h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert x25519_base(bob) == h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert x25519(alice, x25519_base(bob)) == x25519(bob, x25519_base(alice)) == shared


@settings(max_examples=300, deadline=None)
@given(scalar=st.binary(min_size=32, max_size=32), u=st.binary(min_size=32, max_size=32))
def test_equal_to_cryptography_on_arbitrary_bytes(scalar: bytes, u: bytes) -> None:
    """Arbitrary u: half are twist points, some have the top bit set; the scalar is unclamped."""
    try:
        expected: bytes | None = reference(scalar, u)
    except ValueError:
        expected = None
    if expected is None:
        with pytest.raises(ValueError, match="low-order"):
            x25519(scalar, u)
    else:
        assert x25519(scalar, u) == expected
    assert x25519_base(scalar) == reference_public(scalar)


@settings(max_examples=100, deadline=None)
@given(scalar=st.binary(min_size=32, max_size=32), u=st.integers(0, 2**256 - 1))
def test_top_bit_and_non_canonical_u_like_cryptography(scalar: bytes, u: int) -> None:
    for value in (u, u | 1 << 255, P + u % 19, (P + u % 19) | 1 << 255):
        encoded = (value % 2**256).to_bytes(32, "little")
        try:
            expected: bytes | None = reference(scalar, encoded)
        except ValueError:
            expected = None
        if expected is None:
            with pytest.raises(ValueError):
                x25519(scalar, encoded)
        else:
            assert x25519(scalar, encoded) == expected


LOW_ORDER = [
    0,
    1,
    325606250916557431795983626356110631294008115727848805560023387167927233504,
    39382357235489614581723060781553021112529911719440698176882885853963445705823,
    P - 1,
    P,
    P + 1,
]


@pytest.mark.parametrize("value", LOW_ORDER)
@pytest.mark.parametrize("top_bit", [0, 1 << 255])
def test_low_order_points_are_refused_by_both(value: int, top_bit: int) -> None:
    u = (value | top_bit).to_bytes(32, "little")
    scalar = bytes(range(32))
    with pytest.raises(ValueError):
        reference(scalar, u)
    with pytest.raises(ValueError, match="low-order"):
        x25519(scalar, u)
    with pytest.raises(SphinxError):
        sphinx_x25519(scalar, u)


def test_wrong_lengths_are_refused_before_libsodium_reads_them() -> None:
    good = x25519_base(bytes(range(32)))
    for scalar, u in ((b"\x01" * 31, good), (b"\x01" * 32, good[:31]), (b"\x01" * 33, good), (b"", b"")):
        with pytest.raises(ValueError, match="32-byte"):
            x25519(scalar, u)
    with pytest.raises(ValueError, match="32 bytes"):
        x25519_base(b"\x01" * 16)
    # bytearray and memoryview inputs work like bytes
    assert x25519(bytearray(b"\x05" * 32), memoryview(good)) == reference(b"\x05" * 32, good)
