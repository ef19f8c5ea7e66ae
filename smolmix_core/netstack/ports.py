"""Ephemeral port choice: random (RFC 6056 style) yet collision-free, reproducible from a seed."""

from __future__ import annotations

import random
from collections.abc import Callable

from smolmix_core.errors import AddressInUse


def pick_ephemeral_port(
    rng: random.Random, port_range: tuple[int, int], in_use: Callable[[int], bool]
) -> int:
    """A random port of ``port_range`` (inclusive) for which ``in_use`` is false.

    Random probes first, so an observer cannot predict the next port; then one sweep from a
    random offset, so a nearly full range still finds the last free port.
    """
    low, high = port_range
    span = high - low + 1
    if span <= 0:
        raise AddressInUse(f"empty ephemeral port range {port_range}")
    for _ in range(16):
        port = low + rng.randrange(span)
        if not in_use(port):
            return port
    start = rng.randrange(span)
    for step in range(span):
        port = low + (start + step) % span
        if not in_use(port):
            return port
    raise AddressInUse(f"every ephemeral port in {low}-{high} is in use")
