"""The one-X25519-per-hop sender key schedule equals the literal chain of spec §3.1."""

from __future__ import annotations

import random
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx import RouteNode, build_packet, generate_keypair
from smolmix_core.mixnet.sphinx import key_schedule as schedule_module
from smolmix_core.mixnet.sphinx.crypto import CURVE25519_ORDER, is_on_curve
from smolmix_core.mixnet.sphinx.key_schedule import (
    clamp,
    clamped_representative,
    naive_sender_key_schedule,
    sender_key_schedule,
)
from smolmix_core.mixnet.sphinx.packet import build_packet_using

scalars = st.binary(min_size=32, max_size=32)


def x25519(scalar: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))


def test_fast_and_naive_schedules_agree_on_many_random_routes() -> None:
    rng = random.Random(2718)
    for trial in range(600):
        hops = 1 + trial % 5
        public_keys = [generate_keypair(rng)[1] for _ in range(hops)]
        initial = rng.randbytes(32)
        assert sender_key_schedule(public_keys, initial) == naive_sender_key_schedule(public_keys, initial)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=CURVE25519_ORDER - 1))
def test_representative_is_a_clamped_scalar_congruent_to_plus_or_minus_the_product(product: int) -> None:
    scalar = clamped_representative(product)
    if scalar is None:
        t = product * pow(8, -1, CURVE25519_ORDER) % CURVE25519_ORDER
        assert not (1 << 251 <= t < 1 << 252)
        assert not (1 << 251 <= CURVE25519_ORDER - t < 1 << 252)
        return
    value = int.from_bytes(scalar, "little")
    assert clamp(scalar) == value  # clamping leaves it alone
    assert value % CURVE25519_ORDER in (product, CURVE25519_ORDER - product)


@settings(max_examples=40, deadline=None)
@given(scalars, scalars, scalars)
def test_one_multiplication_equals_two(a: bytes, b: bytes, node_private: bytes) -> None:
    """X25519(rep(clamp a · clamp b), Y) == X25519(b, X25519(a, Y)) for a curve point Y."""
    public = X25519PrivateKey.from_private_bytes(node_private).public_key().public_bytes_raw()
    scalar = clamped_representative(clamp(a) * clamp(b) % CURVE25519_ORDER)
    if scalar is not None:
        assert x25519(scalar, public) == x25519(b, x25519(a, public))


def test_products_without_a_representative_exist_and_are_refused() -> None:
    eight = 8  # t = 1: far below 2^251, and ℓ - 1 is above 2^252
    assert clamped_representative(eight) is None
    assert clamped_representative(8 * ((1 << 251) - 1) % CURVE25519_ORDER) is not None


def test_fallback_to_the_literal_chain_gives_the_same_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    public_keys = [generate_keypair(rng)[1] for _ in range(5)]
    initial = rng.randbytes(32)
    expected = naive_sender_key_schedule(public_keys, initial)
    chains: list[bytes] = []
    literal_chain = schedule_module._blinded_chain

    def counting_chain(*args: Any) -> bytes:
        chains.append(literal_chain(*args))
        return chains[-1]

    monkeypatch.setattr(schedule_module, "clamped_representative", lambda product: None)
    monkeypatch.setattr(schedule_module, "_blinded_chain", counting_chain)
    assert sender_key_schedule(public_keys, initial) == expected
    assert len(chains) == 4  # every hop after the first took the fallback


P = 2**255 - 19
A = 486662


def _sqrt(value: int) -> int:
    root = pow(value, (P + 3) // 8, P)
    if root * root % P != value % P:
        root = root * pow(2, (P - 1) // 4, P) % P
    assert root * root % P == value % P
    return root


def _add_torsion(u1: int, u2: int) -> int:
    """u(P1 + P2) on v² = u³ + Au² + u, for u1 ≠ u2 (either v sign: ±P2 both keep the order)."""
    v1 = _sqrt((u1**3 + A * u1 * u1 + u1) % P)
    v2 = _sqrt((u2**3 + A * u2 * u2 + u2) % P)
    slope = (v2 - v1) * pow(u2 - u1, -1, P) % P
    return (slope * slope - A - u1 - u2) % P


def test_public_keys_with_a_small_order_component_still_agree() -> None:
    """Clamped scalars are multiples of 8, so a torsion component vanishes on both paths."""
    order_8_u = int.from_bytes(
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little"
    )
    rng = random.Random(8)
    clean = [generate_keypair(rng)[1] for _ in range(4)]
    dirty = [_add_torsion(int.from_bytes(key, "little"), order_8_u).to_bytes(32, "little") for key in clean]
    assert dirty != clean
    assert all(is_on_curve(key) for key in dirty)
    initial = rng.randbytes(32)
    expected = naive_sender_key_schedule(clean, initial)
    assert naive_sender_key_schedule(dirty, initial) == expected
    assert sender_key_schedule(dirty, initial) == expected


def test_twist_public_keys_are_refused() -> None:
    twist_point = next(
        u.to_bytes(32, "little") for u in range(2, 100) if not is_on_curve(u.to_bytes(32, "little"))
    )
    route = [RouteNode(b"a" * 32, twist_point)]
    with pytest.raises(SphinxError, match="twist"):
        build_packet(route, bytes(32), b"m", delays_ns=[0], payload_size=64)


def test_packets_built_with_either_schedule_are_identical() -> None:
    rng = random.Random(77)
    route = [RouteNode(bytes([i]) * 32, generate_keypair(rng)[1]) for i in range(4)]
    arguments = {"delays_ns": [1, 2, 3, 4], "payload_size": 2065}
    fast = build_packet(route, bytes(32), b"same", rng=random.Random(3), **arguments)  # type: ignore[arg-type]
    naive = build_packet_using(
        naive_sender_key_schedule,
        route,
        bytes(32),
        b"same",
        rng=random.Random(3),
        **arguments,  # type: ignore[arg-type]
    )
    assert fast == naive
