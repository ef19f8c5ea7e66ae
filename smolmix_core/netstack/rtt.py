"""Retransmission timeout estimation (RFC 6298) with exponential backoff.

Kept apart from the state machine so the arithmetic can be tested alone and so Karn's rule has
one owner: callers feed only unambiguous samples (never from a retransmitted segment, unless the
sample comes from an echoed timestamp, which identifies the transmission it measures).
"""

from __future__ import annotations


class RttEstimator:
    """SRTT/RTTVAR smoothing and the RTO derived from them; ``backoff`` doubles on each timeout."""

    __slots__ = ("_backoff", "_max_rto", "_min_rto", "_rto_base", "min_rtt", "rttvar", "srtt")

    def __init__(self, initial_rto: float, min_rto: float, max_rto: float) -> None:
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.min_rtt: float | None = None
        self._min_rto = min_rto
        self._max_rto = max_rto
        self._rto_base = min(max(initial_rto, min_rto), max_rto)
        self._backoff = 0

    @property
    def rto(self) -> float:
        """The current timeout, backoff included, clamped to ``max_rto``."""
        return min(self._rto_base * (1 << self._backoff), self._max_rto)

    @property
    def backoff(self) -> int:
        return self._backoff

    def sample(self, rtt: float) -> None:
        """Fold in one measurement (RFC 6298 2.2/2.3) and clear the backoff (5.7's spirit)."""
        rtt = max(rtt, 0.0)
        if self.min_rtt is None or rtt < self.min_rtt:
            self.min_rtt = rtt
        srtt = self.srtt
        if srtt is None:
            self.srtt = rtt
            self.rttvar = rtt / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(srtt - rtt)
            self.srtt = 0.875 * srtt + 0.125 * rtt
        base = self.srtt + max(0.001, 4 * self.rttvar)
        self._rto_base = min(max(base, self._min_rto), self._max_rto)
        self._backoff = 0

    def on_timeout(self) -> None:
        """Double the timeout (5.5); stop doubling once the cap is reached."""
        if self._rto_base * (1 << self._backoff) < self._max_rto:
            self._backoff += 1

    def reset_backoff(self) -> None:
        self._backoff = 0

    def raise_floor(self, floor: float) -> None:
        """RFC 6298 5.7: after a SYN timeout with no sample, data starts with a 3 s timeout."""
        if self.srtt is None and self._rto_base < floor:
            self._rto_base = min(floor, self._max_rto)
