"""The TCP receive side's bytes: in-order data waiting for ``recv`` and out-of-order islands.

Sequence numbers here are unwrapped (plain ints that never wrap); the connection converts them
from and to the 32-bit wire values. Memory is bounded by the caller's window (nothing outside
``[rcv_nxt, window_end)`` is stored) and by ``max_ranges`` (separate out-of-order islands).
"""

from __future__ import annotations

from bisect import bisect_left
from operator import attrgetter


class Island:
    """Contiguous out-of-order bytes ``[start, end)``."""

    __slots__ = ("buf", "end", "start")

    def __init__(self, start: int, end: int, buf: bytearray) -> None:
        self.start = start
        self.end = end
        self.buf = buf


_island_end = attrgetter("end")


class ReceiveBuffer:
    """Reassembly without per-byte work: appends are amortised O(1), merges copy each byte once."""

    __slots__ = ("data", "islands", "latest", "max_ranges", "refused")

    def __init__(self, max_ranges: int) -> None:
        self.data = bytearray()
        self.islands: list[Island] = []  # sorted, disjoint and never adjacent
        self.latest = -1  # start of the island that received the newest out-of-order segment
        self.max_ranges = max_ranges
        self.refused = 0  # out-of-order segments not stored because of ``max_ranges``

    @property
    def out_of_order_bytes(self) -> int:
        return sum(len(island.buf) for island in self.islands)

    def add(self, start: int, payload: bytes | memoryview, rcv_nxt: int, window_end: int) -> int:
        """Store ``payload`` (sequence ``start``); return the new ``rcv_nxt``.

        Bytes before ``rcv_nxt`` or at/after ``window_end`` are discarded. When the segment
        cannot be stored (too many islands) nothing changes but ``refused``.
        """
        end = start + len(payload)
        if start < rcv_nxt:
            if end <= rcv_nxt:
                return rcv_nxt
            payload = memoryview(payload)[rcv_nxt - start :]
            start = rcv_nxt
        if end > window_end:
            if start >= window_end:
                return rcv_nxt
            payload = memoryview(payload)[: window_end - start]
            end = window_end
        if start == rcv_nxt:
            self.data += payload
            return self._pull_islands(end) if self.islands else end
        self._store(start, end, payload)
        return rcv_nxt

    def _pull_islands(self, nxt: int) -> int:
        islands = self.islands
        while islands and islands[0].start <= nxt:
            first = islands.pop(0)
            if first.end > nxt:
                self.data += memoryview(first.buf)[nxt - first.start :]
                nxt = first.end
        return nxt

    def _store(self, start: int, end: int, payload: bytes | memoryview) -> None:
        islands = self.islands
        first_idx = bisect_left(islands, start, key=_island_end)
        last_idx = first_idx
        while last_idx < len(islands) and islands[last_idx].start <= end:
            last_idx += 1
        if first_idx == last_idx:
            if len(islands) >= self.max_ranges:
                self.refused += 1
                return
            islands.insert(first_idx, Island(start, end, bytearray(payload)))
            self.latest = start
            return
        view = memoryview(payload)
        first = islands[first_idx]
        if start < first.start:
            grown = bytearray(view[: first.start - start])
            grown += first.buf
            first.buf = grown
            first.start = start
        buf = first.buf
        cursor = first.end
        for later in islands[first_idx + 1 : last_idx]:
            if cursor < later.start:
                buf += view[cursor - start : later.start - start]
            buf += later.buf
            cursor = later.end
        if cursor < end:
            buf += view[cursor - start :]
            cursor = end
        first.end = cursor
        del islands[first_idx + 1 : last_idx]
        self.latest = first.start

    def sack_blocks(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (start, end) blocks: the newest island first (RFC 2018), then highest."""
        if limit <= 0 or not self.islands:
            return []
        latest = self.latest
        blocks = [(i.start, i.end) for i in self.islands if i.start == latest]
        for island in reversed(self.islands):
            if len(blocks) >= limit:
                break
            if island.start != latest:
                blocks.append((island.start, island.end))
        return blocks

    def read(self, max_bytes: int) -> bytes:
        data = self.data
        if max_bytes >= len(data):
            out = bytes(data)
            data.clear()
            return out
        with memoryview(data) as view:
            out = bytes(view[:max_bytes])
        del data[:max_bytes]
        return out

    def clear(self) -> None:
        self.data = bytearray()
        self.islands = []
