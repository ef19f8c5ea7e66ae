"""Path MTUs learnt from ICMP, per destination address (RFC 1191 / RFC 8201).

A connection lowers its own MSS when an ICMP error quotes one of its segments; this cache lets
the rest of the stack benefit too: new TCP connections to that destination start with the
smaller MSS instead of losing their first flight, and UDP sends that could only vanish in the
narrow link raise ``MessageTooLarge`` instead. Entries expire (10 minutes, as RFC 1191 6.3 and
Linux's ``mtu_expires``) so a path that widened again is used fully; the cache holds at most
``capacity`` destinations and forgets the oldest entry first.
"""

from __future__ import annotations

from collections import OrderedDict

DEFAULT_LIFETIME = 600.0
DEFAULT_CAPACITY = 1024


class PathMtuCache:
    """Destination address (packed) → the smallest MTU reported for it, until it expires."""

    __slots__ = ("_entries", "capacity", "lifetime")

    def __init__(self, capacity: int = DEFAULT_CAPACITY, lifetime: float = DEFAULT_LIFETIME) -> None:
        self.capacity = capacity
        self.lifetime = lifetime
        self._entries: OrderedDict[bytes, tuple[int, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, destination: bytes, now: float) -> int | None:
        entry = self._entries.get(destination)
        if entry is None:
            return None
        mtu, expires = entry
        if now >= expires:
            del self._entries[destination]
            return None
        return mtu

    def learn(self, destination: bytes, mtu: int, now: float) -> bool:
        """Record ``mtu`` if it is smaller than what is known; True when it changed anything."""
        known = self.get(destination, now)
        if known is not None and known <= mtu:
            return False
        entries = self._entries
        entries.pop(destination, None)
        entries[destination] = (mtu, now + self.lifetime)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
        return True
