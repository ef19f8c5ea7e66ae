"""The sender's view of data in flight: SACKed, lost and retransmitted segments, and the pipe.

An RFC 6675-style scoreboard kept per transmitted segment. Loss is inferred by a packet
threshold on *transmission order* (a segment is lost once ``threshold`` segments sent after it
have been delivered), which, unlike a sequence-number rule, also finds lost retransmissions
without waiting for the retransmission timer. Sequence numbers are unwrapped ints.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from operator import attrgetter, itemgetter


class SentSegment:
    """One transmission unit ``[start, end)`` (a FIN counts as one byte of it)."""

    __slots__ = ("end", "in_pipe", "lost", "rexmits", "sacked", "start", "time", "xmit")

    def __init__(self, start: int, end: int, xmit: int, time: float) -> None:
        self.start = start
        self.end = end
        self.xmit = xmit  # transmission number, increasing over every (re)transmission
        self.time = time
        self.rexmits = 0
        self.sacked = False  # delivered: SACKed, or cumulatively acknowledged
        self.lost = False  # marked lost and not retransmitted since
        self.in_pipe = True  # counted in ``pipe`` (sent, not delivered, not deemed lost)


_seg_end = attrgetter("end")
_range_end = itemgetter(1)


class Scoreboard:
    """Segments in flight in sequence order, with ``pipe`` kept incrementally (RFC 6675 §4)."""

    __slots__ = (
        "_head",
        "_lost_queue",
        "_prior_delivered",
        "_rexmitted",
        "_scan",
        "_xmit_counter",
        "delivered_xmit",
        "pipe",
        "reorder_distance",
        "sacked_bytes",
        "sacked_ranges",
        "segs",
    )

    def __init__(self) -> None:
        self.segs: list[SentSegment] = []
        self._head = 0
        self._scan = 0  # segments before this index are settled for first-transmission loss scans
        self._xmit_counter = 0
        self._lost_queue: deque[SentSegment] = deque()
        self._rexmitted: list[SentSegment] = []
        self.pipe = 0
        self.sacked_bytes = 0
        # merged [l, r) spans of SACKed segments above the cumulative ACK: segment-aligned, so
        # there are never more of them than segments, whatever blocks a peer invents
        self.sacked_ranges: list[list[int]] = []
        self.delivered_xmit = 0
        self._prior_delivered = 0
        self.reorder_distance = 0  # most transmissions a never-retransmitted segment was overtaken by

    def __bool__(self) -> bool:
        return self._head < len(self.segs)

    def first(self) -> SentSegment | None:
        return self.segs[self._head] if self._head < len(self.segs) else None

    def last(self) -> SentSegment | None:
        return self.segs[-1] if self._head < len(self.segs) else None

    def record(self, start: int, end: int, now: float) -> SentSegment:
        self._xmit_counter += 1
        seg = SentSegment(start, end, self._xmit_counter, now)
        self.segs.append(seg)
        self.pipe += end - start
        return seg

    def retransmitted(self, seg: SentSegment, now: float) -> None:
        """``seg`` went out again (it must be ``peek_lost()`` or a probe of an in-flight one)."""
        if self._lost_queue and self._lost_queue[0] is seg:
            self._lost_queue.popleft()
        self._xmit_counter += 1
        seg.xmit = self._xmit_counter
        seg.time = now
        seg.lost = False
        seg.rexmits += 1
        if seg.rexmits == 1:
            self._rexmitted.append(seg)
        if not seg.in_pipe:
            seg.in_pipe = True
            self.pipe += seg.end - seg.start

    def begin_ack(self) -> None:
        """Start processing one incoming ACK (its cumulative part and its SACK blocks)."""
        self._prior_delivered = self.delivered_xmit

    def _overtaken(self, seg: SentSegment) -> None:
        """``seg``, sent once, arrives after later transmissions did: the path reorders."""
        distance = self._prior_delivered - seg.xmit
        if distance > self.reorder_distance:
            self.reorder_distance = distance

    def ack(self, ack: int) -> SentSegment | None:
        """Drop everything below the cumulative ``ack``; return the newest never-retransmitted
        segment it covers (an unambiguous RTT sample under Karn's rule), if any."""
        segs = self.segs
        i = self._head
        n = len(segs)
        sample: SentSegment | None = None
        delivered = self.delivered_xmit
        while i < n:
            seg = segs[i]
            if seg.end <= ack:
                size = seg.end - seg.start
                if seg.in_pipe:
                    self.pipe -= size
                    seg.in_pipe = False
                if seg.sacked:
                    self.sacked_bytes -= size
                else:
                    seg.sacked = True
                    if seg.rexmits == 0 and seg.xmit < self._prior_delivered:
                        self._overtaken(seg)
                seg.lost = False
                if seg.rexmits == 0:
                    sample = seg
                if seg.xmit > delivered:
                    delivered = seg.xmit
                i += 1
                continue
            if seg.start < ack:
                cut = ack - seg.start
                if seg.in_pipe:
                    self.pipe -= cut
                if seg.sacked:
                    self.sacked_bytes -= cut
                seg.start = ack
            break
        self.delivered_xmit = delivered
        self._head = i
        if self._scan < i:
            self._scan = i
        if i == n:
            segs.clear()
            self._head = self._scan = 0
            self._lost_queue.clear()
            self._rexmitted.clear()
        elif i > 256 and i * 2 > n:
            del segs[:i]
            self._head = 0
            self._scan -= i
        ranges = self.sacked_ranges
        if ranges:
            del ranges[: bisect_right(ranges, ack, key=_range_end)]
            if ranges and ranges[0][0] < ack:
                ranges[0][0] = ack
        return sample

    def sack(self, blocks: list[tuple[int, int]]) -> bool:
        """Mark segments wholly inside the (validated, unwrapped) blocks; True if any were new.

        A block is first narrowed to the segments it wholly covers: bytes of a segment cannot
        be delivered on their own, and blocks that cover no segment change nothing.
        """
        newly = False
        segs = self.segs
        n = len(segs)
        for block_left, block_right in blocks:
            first = bisect_left(segs, block_left + 1, lo=self._head, key=_seg_end)
            if first < n and segs[first].start < block_left:
                first += 1
            last = bisect_right(segs, block_right, lo=self._head, key=_seg_end) - 1
            if first > last:
                continue
            left, right = segs[first].start, segs[last].end
            for gap_left, gap_right in self._uncovered(left, right):
                idx = bisect_left(segs, gap_left + 1, lo=self._head, key=_seg_end)
                while idx < n:
                    seg = segs[idx]
                    if seg.start >= gap_right:
                        break
                    if not seg.sacked and seg.start >= left and seg.end <= right:
                        size = seg.end - seg.start
                        seg.sacked = True
                        if seg.rexmits == 0 and seg.xmit < self._prior_delivered:
                            self._overtaken(seg)
                        seg.lost = False
                        self.sacked_bytes += size
                        if seg.in_pipe:
                            seg.in_pipe = False
                            self.pipe -= size
                        if seg.xmit > self.delivered_xmit:
                            self.delivered_xmit = seg.xmit
                        newly = True
                    idx += 1
            self._merge_range(left, right)
        return newly

    def _uncovered(self, left: int, right: int) -> list[tuple[int, int]]:
        gaps = []
        cursor = left
        ranges = self.sacked_ranges
        for index in range(bisect_right(ranges, left, key=_range_end), len(ranges)):
            r_left, r_right = ranges[index]
            if r_left >= right:
                break
            if r_left > cursor:
                gaps.append((cursor, r_left))
            cursor = max(cursor, r_right)
            if cursor >= right:
                break
        if cursor < right:
            gaps.append((cursor, right))
        return gaps

    def _merge_range(self, left: int, right: int) -> None:
        ranges = self.sacked_ranges
        i = bisect_left(ranges, left, key=_range_end)
        j = i
        while j < len(ranges) and ranges[j][0] <= right:
            left = min(left, ranges[j][0])
            right = max(right, ranges[j][1])
            j += 1
        ranges[i:j] = [[left, right]]

    def _mark_lost(self, seg: SentSegment) -> None:
        seg.lost = True
        if seg.in_pipe:
            seg.in_pipe = False
            self.pipe -= seg.end - seg.start
        self._lost_queue.append(seg)

    def detect_losses(self, threshold: int) -> int:
        """Mark undelivered segments sent ``threshold`` transmissions before a delivered one."""
        limit = self.delivered_xmit - threshold
        if limit <= 0:
            return 0
        marked = 0
        segs = self.segs
        n = len(segs)
        i = self._scan
        while i < n:
            seg = segs[i]
            if not (seg.sacked or seg.lost or seg.rexmits):
                break
            i += 1
        self._scan = i
        while i < n:
            seg = segs[i]
            if not (seg.sacked or seg.lost or seg.rexmits):
                if seg.xmit > limit:
                    break
                self._mark_lost(seg)
                marked += 1
            i += 1
        if self._rexmitted:
            keep = []
            for seg in self._rexmitted:
                if seg.sacked:
                    continue
                keep.append(seg)
                if not seg.lost and seg.xmit <= limit:
                    self._mark_lost(seg)
                    marked += 1
            self._rexmitted = keep
        return marked

    def reorder_candidate_time(self) -> float | None:
        """Send time of the oldest undelivered, unmarked segment sent before the newest delivered
        one: the packet threshold has not condemned it yet, a time threshold (RACK) may."""
        delivered = self.delivered_xmit
        segs = self.segs
        earliest: float | None = None
        for i in range(self._scan, len(segs)):
            seg = segs[i]
            if not (seg.sacked or seg.lost or seg.rexmits):
                if seg.xmit < delivered:
                    earliest = seg.time
                break
        for seg in self._rexmitted:
            if seg.sacked or seg.lost or seg.xmit >= delivered:
                continue
            if earliest is None or seg.time < earliest:
                earliest = seg.time
        return earliest

    def mark_overtaken(self, now: float, window: float) -> int:
        """Mark lost every undelivered segment sent ``window`` or longer before ``now`` and before
        the newest delivered transmission (RFC 8985's time-based rule)."""
        delivered = self.delivered_xmit
        marked = 0
        segs = self.segs
        for i in range(self._scan, len(segs)):
            seg = segs[i]
            if seg.sacked or seg.lost or seg.rexmits:
                continue
            if seg.xmit >= delivered or seg.time + window > now:
                break
            self._mark_lost(seg)
            marked += 1
        for seg in self._rexmitted:
            if not (seg.sacked or seg.lost) and seg.xmit < delivered and seg.time + window <= now:
                self._mark_lost(seg)
                marked += 1
        return marked

    def revert_losses(self) -> None:
        """Segments marked lost but not yet retransmitted are in flight after all (the loss
        signal was reordering): count them in the pipe again."""
        keep: deque[SentSegment] = deque()
        for seg in self._lost_queue:
            if not seg.lost or seg.sacked:
                continue
            if seg.rexmits:
                keep.append(seg)
                continue
            seg.lost = False
            seg.in_pipe = True
            self.pipe += seg.end - seg.start
        self._lost_queue = keep
        self._scan = self._head

    def mark_first_lost(self) -> bool:
        """NewReno (no SACK): the first unacknowledged segment is presumed lost."""
        seg = self.first()
        if seg is None or seg.lost or seg.sacked:
            return False
        self._mark_lost(seg)
        return True

    def mark_all_lost(self, forget_sacks: bool) -> None:
        """Retransmission timeout: everything not SACKed is lost (SACKs too, if we suspect the
        peer reneged on them)."""
        self._lost_queue.clear()
        if forget_sacks:
            self.sacked_ranges.clear()
            self.sacked_bytes = 0
        for seg in self.segs[self._head :]:
            if forget_sacks:
                seg.sacked = False
            if not seg.sacked:
                seg.in_pipe = False
                seg.lost = True
                self._lost_queue.append(seg)
        self.pipe = 0

    def mark_oversized_lost(self, size: int) -> int:
        """Path MTU dropped: segments larger than ``size`` must go again, split (no congestion)."""
        marked = 0
        for seg in self.segs[self._head :]:
            if not seg.sacked and not seg.lost and seg.end - seg.start > size:
                self._mark_lost(seg)
                marked += 1
        if marked:
            self._lost_queue = deque(sorted(self._lost_queue, key=_seg_end))
        return marked

    def peek_lost(self) -> SentSegment | None:
        queue = self._lost_queue
        while queue:
            seg = queue[0]
            if seg.lost and not seg.sacked:
                return seg
            queue.popleft()
        return None

    def split(self, seg: SentSegment, size: int) -> None:
        """Cut ``seg`` into pieces of at most ``size``; the pieces inherit its state."""
        idx = bisect_left(self.segs, seg.end, lo=self._head, key=_seg_end)
        pieces = []
        start = seg.start + size
        while start < seg.end:
            piece = SentSegment(start, min(start + size, seg.end), seg.xmit, seg.time)
            piece.rexmits = seg.rexmits
            piece.sacked = seg.sacked
            piece.lost = seg.lost
            piece.in_pipe = seg.in_pipe
            pieces.append(piece)
            start += size
        if not pieces:
            return
        seg.end = seg.start + size
        self.segs[idx + 1 : idx + 1] = pieces
        if self._scan > idx:
            self._scan += len(pieces)
        if seg.lost and self._lost_queue and self._lost_queue[0] is seg:
            for offset, piece in enumerate(pieces, start=1):
                self._lost_queue.insert(offset, piece)
        if seg.rexmits:
            self._rexmitted.extend(pieces)

    def clear(self) -> None:
        self.segs.clear()
        self._head = self._scan = 0
        self._lost_queue.clear()
        self._rexmitted.clear()
        self.sacked_ranges.clear()
        self.pipe = self.sacked_bytes = 0
