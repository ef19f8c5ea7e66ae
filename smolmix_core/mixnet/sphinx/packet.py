"""Creating a forward Sphinx packet: ``header(348) ‖ payload``."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix_core.mixnet.sphinx.constants import IDENTIFIER_LENGTH, VERSION_258
from smolmix_core.mixnet.sphinx.crypto import RandomSource
from smolmix_core.mixnet.sphinx.header import KeySchedule, build_header, payload_key
from smolmix_core.mixnet.sphinx.key_schedule import sender_key_schedule
from smolmix_core.mixnet.sphinx.payload import check_fits, encrypt_payload
from smolmix_core.mixnet.sphinx.route import RouteNode


def build_packet(
    route: Sequence[RouteNode],
    destination: bytes,
    message: bytes,
    *,
    delays_ns: Sequence[int],
    payload_size: int,
    identifier: bytes = bytes(IDENTIFIER_LENGTH),
    version: int = VERSION_258,
    rng: RandomSource | None = None,
) -> bytes:
    """A packet for ``route[0]`` that delivers ``message`` to ``destination`` at ``route[-1]``.

    ``delays_ns[i]`` is the delay node i holds the packet (the last one is carried but unused);
    the packet is ``348 + payload_size`` bytes. ``SphinxError`` if the message does not fit or an
    argument is malformed. ``rng`` drives the ephemeral key and the final-block padding.
    """
    return build_packet_using(
        sender_key_schedule,
        route,
        destination,
        message,
        delays_ns=delays_ns,
        payload_size=payload_size,
        identifier=identifier,
        version=version,
        rng=rng,
    )


def build_packet_using(
    schedule: KeySchedule,
    route: Sequence[RouteNode],
    destination: bytes,
    message: bytes,
    *,
    delays_ns: Sequence[int],
    payload_size: int,
    identifier: bytes = bytes(IDENTIFIER_LENGTH),
    version: int = VERSION_258,
    rng: RandomSource | None = None,
) -> bytes:
    """``build_packet`` with an explicit sender key schedule (tests and benchmarks compare them)."""
    check_fits(len(message), payload_size)
    header, expanded = build_header(
        route,
        destination,
        delays_ns=delays_ns,
        identifier=identifier,
        version=version,
        rng=rng,
        schedule=schedule,
    )
    keys = [payload_key(secret, version) for secret in expanded]
    return header + encrypt_payload(message, keys, payload_size)
