"""Building the 348-byte Sphinx header (spec mixnet.md §4.1).

Layout: ``alpha(32) ‖ gamma(16) ‖ beta(300)``. beta always has room for five 60-byte hop blocks;
shorter routes fill the tail with the filler, so neither the header size nor its contents tell a
node how far it is from the end.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.constants import (
    DESTINATION_ADDRESS_LENGTH,
    FINAL_HOP_FLAG,
    FORWARD_HOP_FLAG,
    HOP_BLOCK_SIZE,
    IDENTIFIER_LENGTH,
    MAX_PATH_LENGTH,
    ROUTING_INFO_SIZE,
    STREAM_CIPHER_OUTPUT_LENGTH,
    VERSION_258,
    version_bytes,
)
from smolmix_core.mixnet.sphinx.crypto import (
    RandomSource,
    derive_payload_key,
    header_keystream,
    header_mac,
    random_bytes,
    xor_bytes,
)
from smolmix_core.mixnet.sphinx.key_schedule import sender_key_schedule
from smolmix_core.mixnet.sphinx.route import RouteNode

KeySchedule = Callable[[Sequence[bytes], bytes], tuple[bytes, list[bytes]]]
"""``(public keys, initial secret) -> (alpha_0, expanded secrets)``."""

_FINAL_BLOCK_FIXED = 1 + 3 + DESTINATION_ADDRESS_LENGTH + IDENTIFIER_LENGTH
_FORWARD_TAIL = ROUTING_INFO_SIZE - HOP_BLOCK_SIZE
_MAX_DELAY = 1 << 64


def build_header(
    route: Sequence[RouteNode],
    destination: bytes,
    *,
    delays_ns: Sequence[int],
    identifier: bytes,
    version: int,
    rng: RandomSource | None,
    schedule: KeySchedule = sender_key_schedule,
) -> tuple[bytes, list[bytes]]:
    """The header and the hops' expanded shared secrets (the caller derives payload keys from them)."""
    hops = len(route)
    if not 1 <= hops <= MAX_PATH_LENGTH:
        raise SphinxError(f"a Sphinx route has 1 to {MAX_PATH_LENGTH} hops, not {hops}")
    if len(delays_ns) != hops:
        raise SphinxError(f"{hops} hops need {hops} delays, got {len(delays_ns)}")
    if len(destination) != DESTINATION_ADDRESS_LENGTH:
        raise SphinxError(f"a destination has {DESTINATION_ADDRESS_LENGTH} bytes, not {len(destination)}")
    if len(identifier) != IDENTIFIER_LENGTH:
        raise SphinxError(f"an identifier has {IDENTIFIER_LENGTH} bytes, not {len(identifier)}")
    for delay in delays_ns:
        if not 0 <= delay < _MAX_DELAY:
            raise SphinxError(f"delay {delay} ns does not fit a u64")
    version_field = version_bytes(version)

    alpha, expanded = schedule([node.public_key for node in route], random_bytes(rng, 32))
    keystreams = [header_keystream(secret[:16]) for secret in expanded]

    filler = b""
    for i in range(1, hops):
        filler = xor_bytes(
            filler + bytes(HOP_BLOCK_SIZE),
            keystreams[i - 1][STREAM_CIPHER_OUTPUT_LENGTH - HOP_BLOCK_SIZE * i :],
        )

    final_size = ROUTING_INFO_SIZE - HOP_BLOCK_SIZE * (hops - 1)
    padding = random_bytes(rng, final_size - _FINAL_BLOCK_FIXED)
    final_block = b"".join((bytes((FINAL_HOP_FLAG,)), version_field, destination, identifier, padding))
    beta = xor_bytes(final_block, keystreams[-1][:final_size]) + filler
    gamma = header_mac(expanded[-1][16:32], beta)

    forward_prefix = bytes((FORWARD_HOP_FLAG,)) + version_field
    for i in range(hops - 2, -1, -1):
        block = b"".join(
            (
                forward_prefix,
                route[i + 1].address,
                delays_ns[i].to_bytes(8, "big"),
                gamma,
                beta[:_FORWARD_TAIL],
            )
        )
        beta = xor_bytes(block, keystreams[i][:ROUTING_INFO_SIZE])
        gamma = header_mac(expanded[i][16:32], beta)
    return alpha + gamma + beta, expanded


def payload_key_material(expanded: bytes, version: int) -> bytes:
    """What a SURB stores per hop: the 192-byte key (258) or its 16-byte seed (259)."""
    return expanded[32:224] if version == VERSION_258 else expanded[32:48]


def payload_key(expanded: bytes, version: int) -> bytes:
    """The hop's 192-byte Lioness key under ``version``."""
    return expanded[32:224] if version == VERSION_258 else derive_payload_key(expanded[32:48])
