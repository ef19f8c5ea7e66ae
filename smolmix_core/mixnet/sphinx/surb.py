"""Single-use reply blocks (spec mixnet.md §12): a prepared header plus the key material to fill it.

Wire form: ``header(348) ‖ first_hop_address(32) ‖ material`` with one entry per hop — the 192-byte
Lioness key for version 258, the 16-byte seed it is derived from for version 259. The hop count is
not written down: it follows from the length, which is why parsing needs the version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from smolmix_core.errors import MalformedSurb, SphinxError
from smolmix_core.mixnet.sphinx.constants import (
    HEADER_SIZE,
    IDENTIFIER_LENGTH,
    MAX_PATH_LENGTH,
    NODE_ADDRESS_LENGTH,
    PAYLOAD_KEY_SEED_SIZE,
    PAYLOAD_KEY_SIZE,
    SUPPORTED_VERSIONS,
    VERSION_258,
)
from smolmix_core.mixnet.sphinx.crypto import RandomSource, derive_payload_key
from smolmix_core.mixnet.sphinx.header import build_header, payload_key_material
from smolmix_core.mixnet.sphinx.payload import check_fits, encrypt_payload
from smolmix_core.mixnet.sphinx.route import RouteNode


def _material_size(version: int) -> int:
    if version not in SUPPORTED_VERSIONS:
        raise MalformedSurb(f"unsupported Sphinx version {version} for a SURB")
    return PAYLOAD_KEY_SIZE if version == VERSION_258 else PAYLOAD_KEY_SEED_SIZE


@dataclass(frozen=True, slots=True)
class Surb:
    """A reply block: its holder can send one packet back to the creator without learning who that is."""

    header: bytes
    first_hop_address: bytes
    payload_keys: tuple[bytes, ...] = field(repr=False)
    """Per hop, first hop first: 192-byte Lioness keys (258) or 16-byte seeds (259); kept out of repr."""
    version: int = VERSION_258

    def __post_init__(self) -> None:
        size = _material_size(self.version)
        if len(self.header) != HEADER_SIZE:
            raise MalformedSurb(f"a SURB header has {HEADER_SIZE} bytes, not {len(self.header)}")
        if len(self.first_hop_address) != NODE_ADDRESS_LENGTH:
            raise MalformedSurb(f"a first-hop address has {NODE_ADDRESS_LENGTH} bytes")
        if not 1 <= len(self.payload_keys) <= MAX_PATH_LENGTH:
            raise MalformedSurb(f"a SURB covers 1 to {MAX_PATH_LENGTH} hops, not {len(self.payload_keys)}")
        if any(len(key) != size for key in self.payload_keys):
            raise MalformedSurb(f"version {self.version} SURB key material has {size} bytes per hop")

    @property
    def hops(self) -> int:
        return len(self.payload_keys)

    def to_bytes(self) -> bytes:
        return b"".join((self.header, self.first_hop_address, *self.payload_keys))

    @classmethod
    def from_bytes(cls, data: bytes, *, version: int = VERSION_258) -> Surb:
        """Parse the wire form; ``MalformedSurb`` unless the length is ``380 + k·m`` with 1 ≤ m ≤ 5."""
        size = _material_size(version)
        material = len(data) - HEADER_SIZE - NODE_ADDRESS_LENGTH
        hops, remainder = divmod(material, size)
        if material <= 0 or remainder or hops > MAX_PATH_LENGTH:
            raise MalformedSurb(f"{len(data)} bytes is not the size of a version {version} SURB")
        start = HEADER_SIZE + NODE_ADDRESS_LENGTH
        return cls(
            header=bytes(data[:HEADER_SIZE]),
            first_hop_address=bytes(data[HEADER_SIZE:start]),
            payload_keys=tuple(bytes(data[start + i * size : start + (i + 1) * size]) for i in range(hops)),
            version=version,
        )

    def use(self, message: bytes, *, payload_size: int) -> bytes:
        """The packet to send to ``first_hop_address``; its final hop recovers ``message``."""
        check_fits(len(message), payload_size)
        keys = (
            self.payload_keys
            if self.version == VERSION_258
            else [derive_payload_key(s) for s in self.payload_keys]
        )
        return self.header + encrypt_payload(message, keys, payload_size)


def build_surb(
    route: Sequence[RouteNode],
    destination: bytes,
    *,
    delays_ns: Sequence[int],
    identifier: bytes = bytes(IDENTIFIER_LENGTH),
    version: int = VERSION_258,
    rng: RandomSource | None = None,
) -> Surb:
    """A SURB over ``route`` whose packets reach ``destination`` at ``route[-1]`` (the creator's gateway)."""
    if not route:
        raise SphinxError("a SURB needs a route of at least one hop")
    header, expanded = build_header(
        route, destination, delays_ns=delays_ns, identifier=identifier, version=version, rng=rng
    )
    return Surb(
        header=header,
        first_hop_address=route[0].address,
        payload_keys=tuple(payload_key_material(secret, version) for secret in expanded),
        version=version,
    )
