"""``NymNodeRoutingAddress``: a node's ``(host, port)`` as Sphinx headers and SURB-ACKs carry it.

Wire form: ``ip_version u8 (4|6) ‖ port u16 BE ‖ ip octets`` = 7 bytes for IPv4, 19 for IPv6;
zero-padded to 32 bytes inside Sphinx headers and to 19 bytes in front of SURB-ACKs.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass, field

from smolmix_core.errors import RoutingAddressError
from smolmix_core.mixnet.sphinx.constants import NODE_ADDRESS_LENGTH

SPHINX_ADDRESS_SIZE = NODE_ADDRESS_LENGTH
MAX_UNPADDED_SIZE = 19
IPV4_SIZE = 7
IPV6_SIZE = 19
_SIZES = {4: IPV4_SIZE, 6: IPV6_SIZE}


@dataclass(frozen=True, slots=True)
class NymNodeRoutingAddress:
    """A mix node or gateway address; ``host`` is an IP literal (names are never resolved here)."""

    host: str
    port: int
    _wire: bytes = field(init=False, repr=False, compare=False)
    """The unpadded wire form, built once: packets are addressed by the thousand per second."""

    def __post_init__(self) -> None:
        try:
            ip = ipaddress.ip_address(self.host)
        except ValueError:
            raise RoutingAddressError(
                f"routing address host must be an IP literal, got {self.host!r}"
            ) from None
        if not 0 <= self.port <= 0xFFFF:
            raise RoutingAddressError(f"routing address port out of range: {self.port}")
        object.__setattr__(self, "host", str(ip))
        object.__setattr__(self, "_wire", struct.pack(">BH", ip.version, self.port) + ip.packed)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def to_bytes(self) -> bytes:
        return self._wire

    def to_padded(self, size: int) -> bytes:
        """The form zero-padded to ``size`` bytes (32 in headers, 19 before SURB-ACKs)."""
        raw = self.to_bytes()
        if len(raw) > size:
            raise RoutingAddressError(f"a {len(raw)}-byte routing address does not fit in {size} bytes")
        return raw.ljust(size, b"\x00")

    @classmethod
    def parse_prefix(cls, data: bytes) -> tuple[NymNodeRoutingAddress, int]:
        """Parse an address at the start of ``data``; returns it and the bytes it used.

        Packets name their next hop by the thousand per second and there are few distinct hops,
        so parsed addresses are cached (bounded) by their wire form.
        """
        if len(data) < 1:
            raise RoutingAddressError("routing address is empty")
        version = data[0]
        size = _SIZES.get(version)
        if size is None:
            raise RoutingAddressError(f"routing address has unknown IP version byte {version}")
        if len(data) < size:
            raise RoutingAddressError(f"IPv{version} routing address needs {size} bytes, got {len(data)}")
        return _parse_wire_form(bytes(data[:size])), size

    @classmethod
    def from_bytes(cls, data: bytes) -> NymNodeRoutingAddress:
        """Parse the unpadded 7- or 19-byte form exactly."""
        address, used = cls.parse_prefix(data)
        if used != len(data):
            raise RoutingAddressError(f"routing address has {len(data) - used} trailing bytes")
        return address

    @classmethod
    def from_padded(cls, data: bytes) -> NymNodeRoutingAddress:
        """Parse a zero-padded form; non-zero padding means the bytes are not an address."""
        address, used = cls.parse_prefix(data)
        if any(data[used:]):
            raise RoutingAddressError("routing address padding is not all zero")
        return address

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def _parse_wire_form(wire: bytes) -> NymNodeRoutingAddress:
    """The address whose unpadded wire form is ``wire`` (its version and length already checked)."""
    (port,) = struct.unpack_from(">H", wire, 1)
    return NymNodeRoutingAddress(str(ipaddress.ip_address(wire[3:])), port)
