"""The sender's key schedule (spec §3.1): alpha_0 and one expanded shared secret per hop.

Hop i shares ``s_i = X25519(b_{i-1}, … X25519(b_0, X25519(x, Y_i)))`` with the sender, where the
blinding factors ``b_j`` come out of the earlier hops' secrets. Done literally that costs
``1 + n + n(n-1)/2`` X25519 operations. Every point involved is a multiple of the base point and
every clamped scalar is a multiple of 8, so the chain equals ``c_i · Y_i`` with
``c_i = clamp(x)·clamp(b_0)···clamp(b_{i-1}) mod ℓ``: one X25519 per hop, provided some clamped
scalar is congruent to ``±c_i`` modulo ℓ (X25519 returns only the u-coordinate, and
``u(−P) = u(P)``). A clamped scalar is ``8t`` with ``2²⁵¹ ≤ t < 2²⁵²``; with the sign free, all but
about 2⁻¹²⁶ of the products have one. The rare rest falls back to the literal chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from smolmix_core.mixnet.sphinx.crypto import (
    CURVE25519_ORDER,
    check_node_public_key,
    expand_shared_secret,
    x25519,
)
from smolmix_core.mixnet.x25519 import x25519_base

_BLINDING_FACTOR = slice(224, 256)
_INVERSE_OF_8 = pow(8, -1, CURVE25519_ORDER)
_T_LOW = 1 << 251
_T_HIGH = 1 << 252
_CLAMP_CLEAR = (1 << 255) - 8
_CLAMP_SET = 1 << 254


def clamp(scalar: bytes) -> int:
    """The integer X25519 multiplies by: low 3 bits and bit 255 cleared, bit 254 set."""
    return (int.from_bytes(scalar, "little") & _CLAMP_CLEAR) | _CLAMP_SET


def clamped_representative(product: int) -> bytes | None:
    """32 bytes whose clamped value is ≡ ±``product`` (mod ℓ), or None when neither sign has one."""
    t = product * _INVERSE_OF_8 % CURVE25519_ORDER
    if _T_LOW <= t < _T_HIGH:
        return (t << 3).to_bytes(32, "little")
    t = CURVE25519_ORDER - t
    if _T_LOW <= t < _T_HIGH:
        return (t << 3).to_bytes(32, "little")
    return None


def sender_key_schedule(public_keys: Sequence[bytes], initial_secret: bytes) -> tuple[bytes, list[bytes]]:
    """``(alpha_0, [E_0 … E_{n-1}])`` with one X25519 per hop (see the module docstring)."""
    alpha = x25519_base(initial_secret)
    expanded: list[bytes] = []
    product = clamp(initial_secret)
    for index, public_key in enumerate(public_keys):
        check_node_public_key(public_key)
        if index == 0:
            shared = x25519(initial_secret, public_key)
        else:
            scalar = clamped_representative(product)
            if scalar is None:
                shared = _blinded_chain(initial_secret, expanded, public_key)
            else:
                shared = x25519(scalar, public_key)
        secret = expand_shared_secret(shared)
        expanded.append(secret)
        product = product * clamp(secret[_BLINDING_FACTOR]) % CURVE25519_ORDER
    return alpha, expanded


def naive_sender_key_schedule(
    public_keys: Sequence[bytes], initial_secret: bytes
) -> tuple[bytes, list[bytes]]:
    """The literal schedule of spec §3.1: the reference the fast one is tested and benchmarked against."""
    alpha = x25519_base(initial_secret)
    expanded: list[bytes] = []
    for public_key in public_keys:
        check_node_public_key(public_key)
        expanded.append(expand_shared_secret(_blinded_chain(initial_secret, expanded, public_key)))
    return alpha, expanded


def _blinded_chain(initial_secret: bytes, expanded: Sequence[bytes], public_key: bytes) -> bytes:
    """``X25519(b_{i-1}, … X25519(b_0, X25519(x, Y_i)))``, literally."""
    shared = x25519(initial_secret, public_key)
    for secret in expanded:
        shared = x25519(secret[_BLINDING_FACTOR], shared)
    return shared
