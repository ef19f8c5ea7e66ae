"""A bounded TTL cache of answers, sans-I/O (``now`` is passed in).

Keys are ``(name_key, record type)``. Positive and negative answers (RFC 2308) are both kept,
each for its TTL clamped to ``[min_ttl, max_ttl]`` (negative ones to ``[min_ttl,
max_negative_ttl]``): a floor so a burst of connections does not send a burst of queries through
the mixnet, a ceiling so a stale answer cannot live for weeks. When ``max_entries`` are held, the
least recently used entry is evicted.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

from smolmix_core.dns.answer import Answer

__all__ = ["CacheKey", "DnsCache"]

CacheKey = tuple[str, int]


class DnsCache:
    def __init__(
        self,
        max_entries: int = 1024,
        *,
        min_ttl: float = 5.0,
        max_ttl: float = 86400.0,
        max_negative_ttl: float = 300.0,
    ) -> None:
        if max_entries < 0 or not 0 <= min_ttl <= max_ttl or max_negative_ttl < 0:
            raise ValueError("cache bounds must be non-negative, with min_ttl <= max_ttl")
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self._entries: OrderedDict[CacheKey, tuple[float, Answer]] = OrderedDict()
        self.counters = dict.fromkeys(("hits", "misses", "stored", "expired", "evicted"), 0)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey, now: float) -> Answer | None:
        """The cached answer with its TTL counted down to what remains, or None."""
        entry = self._entries.get(key)
        if entry is None:
            self.counters["misses"] += 1
            return None
        expires, answer = entry
        if now >= expires:
            del self._entries[key]
            self.counters["expired"] += 1
            self.counters["misses"] += 1
            return None
        self._entries.move_to_end(key)
        self.counters["hits"] += 1
        return dataclasses.replace(answer, ttl=math.ceil(expires - now))

    def put(self, key: CacheKey, answer: Answer, now: float) -> None:
        """Keep ``answer`` for its clamped TTL; a TTL clamped to zero stores nothing."""
        ceiling = self.max_negative_ttl if answer.negative else self.max_ttl
        ttl = min(max(float(answer.ttl), self.min_ttl), ceiling)
        if ttl <= 0 or self.max_entries == 0:
            self._entries.pop(key, None)
            return
        self._entries[key] = (now + ttl, answer)
        self._entries.move_to_end(key)
        self.counters["stored"] += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.counters["evicted"] += 1

    def clear(self) -> None:
        self._entries.clear()
