"""One TCP connection (RFC 9293) as a sans-I/O state machine.

``TcpSocket`` is both the connection's control block and the object the driver holds. Segments
come in as parsed ``TcpHeader`` objects with a ``now``; segments go out through the ``TcpHost``
(the ``NetCore``), which wraps them in IP. Sequence numbers are kept unwrapped internally
(``0`` is our ISS on the send side and the peer's ISS on the receive side) so that no comparison
has to think about 32-bit wraparound; they are converted only at the wire.

Implemented: the full state machine with simultaneous open and close, RFC 5961 protections,
RFC 6298 retransmission timing with Karn's rule and backoff (SYN included), RFC 5681/6582
congestion control, SACK (RFC 2018) both ways with an RFC 6675-style scoreboard, window scaling,
timestamps with RTTM and PAWS (RFC 7323), delayed ACKs, Nagle (off by default), zero-window
probes, keepalive and path-MTU reduction.
"""

from __future__ import annotations

import math
from typing import Protocol

from smolmix_core.errors import (
    ConnectionAborted,
    ConnectionClosed,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    NetstackError,
)
from smolmix_core.netstack.config import TcpConfig
from smolmix_core.netstack.rtt import RttEstimator
from smolmix_core.netstack.scoreboard import Scoreboard
from smolmix_core.netstack.tcp_buffers import ReceiveBuffer
from smolmix_core.wire.tcp import TCP_MAX_OPTIONS, TcpHeader, TcpOptions

Address = tuple[str, int]

FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10

_M32 = 0xFFFFFFFF
_HALF = 1 << 31
INF = math.inf
_PAWS_IDLE = 24 * 24 * 3600.0  # RFC 7323 5.5: TS.Recent older than 24 days is invalid
_MAX_STRETCH = 8  # even in a batch, ACK at least every 8 full segments (one lost ACK hurts less)
_OUT_OF_WINDOW_ACK_INTERVAL = 0.5  # seconds between answers to unacceptable pure ACKs
# The MSS of IPv4's smallest datagram (68 bytes, RFC 791), which every host can take: a peer
# advertising less is held to it, so it cannot make us cut data into ever smaller segments.
_MIN_PEER_MSS = 68 - 40
_TS_OPTION = 12  # NOP, NOP, kind, length, TSval, TSecr: on every segment once negotiated
_SACK_BLOCK = 8
_SACK_OPTION_BASE = 4  # NOP, NOP, kind, length

CLOSED = "CLOSED"
SYN_SENT = "SYN-SENT"
SYN_RECEIVED = "SYN-RECEIVED"
ESTABLISHED = "ESTABLISHED"
FIN_WAIT_1 = "FIN-WAIT-1"
FIN_WAIT_2 = "FIN-WAIT-2"
CLOSE_WAIT = "CLOSE-WAIT"
CLOSING = "CLOSING"
LAST_ACK = "LAST-ACK"
TIME_WAIT = "TIME-WAIT"

_SENDING_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_1, CLOSING, LAST_ACK})
_RECEIVING_STATES = frozenset({ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2})
_WRITABLE_STATES = frozenset({SYN_SENT, SYN_RECEIVED, ESTABLISHED, CLOSE_WAIT})
_KEEPALIVE_STATES = frozenset({ESTABLISHED, CLOSE_WAIT, FIN_WAIT_2})


class TcpHost(Protocol):
    """What a connection needs from the stack that owns it (the ``NetCore``, or a test double)."""

    counters: dict[str, int]
    last_now: float
    deferring_acks: bool  # inside a batch of received packets: ACKs may wait for its end

    def tcp_transmit(self, sock: TcpSocket, header: TcpHeader, payload: bytes) -> None:
        """Send one segment from ``sock.local`` to ``sock.remote``."""

    def tcp_wake(self, sock: TcpSocket) -> None:
        """Readiness of ``sock`` may have changed."""

    def tcp_timer_changed(self, sock: TcpSocket) -> None:
        """``sock.deadline`` changed (it is finite)."""

    def tcp_established(self, sock: TcpSocket) -> bool:
        """A passively opened ``sock`` completed its handshake; False if it cannot be queued."""

    def tcp_finished(self, sock: TcpSocket) -> None:
        """``sock`` reached CLOSED: stop demultiplexing to it."""

    def tcp_defer_ack(self, sock: TcpSocket) -> None:
        """Call ``sock.flush_deferred_ack`` when the current batch of packets is done."""


def max_segment_size(mtu: int, ipv6: bool) -> int:
    """The MSS an MTU allows: minus the IP header and a 20-byte TCP header (RFC 6691).

    Data and TCP options share it: a segment's options come out of its data, so that no
    segment exceeds the MTU (RFC 9293 3.7.1).
    """
    return mtu - (60 if ipv6 else 40)


def sack_blocks_fitting(room: int) -> int:
    """How many SACK blocks ``room`` option bytes can carry (at most 4)."""
    if room < _SACK_OPTION_BASE + _SACK_BLOCK:
        return 0
    return min((room - _SACK_OPTION_BASE) // _SACK_BLOCK, 4)


def _ts_before(a: int, b: int) -> bool:
    return a != b and ((a - b) & _M32) >= _HALF


class TcpSocket:
    """A TCP connection; its public surface is the NetCore contract's ``TcpSocket``."""

    __slots__ = (
        "_ack_deferred",
        "_ack_now",
        "_ca_acc",
        "_challenge_count",
        "_challenge_start",
        "_close_at",
        "_config",
        "_cwnd",
        "_deadline",
        "_delack_at",
        "_dupacks",
        "_fin_received",
        "_fin_seq",
        "_force_rexmit",
        "_heap_at",
        "_host",
        "_in_recovery",
        "_irs",
        "_iss",
        "_ka_probes",
        "_keepalive",
        "_keepalive_at",
        "_last_ack_sent",
        "_last_rx",
        "_max_snd_wnd",
        "_mss",
        "_nagle",
        "_offer_sack",
        "_offer_ts",
        "_offer_wscale",
        "_oow_ack_at",
        "_path_mss",
        "_peer_mss",
        "_persist_at",
        "_persist_backoff",
        "_persist_probes",
        "_rack_at",
        "_rbuf",
        "_rcv_adv",
        "_rcv_buf_size",
        "_rcv_fin_at",
        "_rcv_mss",
        "_rcv_nxt",
        "_rcv_wscale",
        "_recover",
        "_rto_at",
        "_rto_count",
        "_rtt",
        "_sack_ok",
        "_sb",
        "_sbuf",
        "_sbuf_seq",
        "_snd_buf_size",
        "_snd_nxt",
        "_snd_una",
        "_snd_wl1",
        "_snd_wl2",
        "_snd_wnd",
        "_snd_wscale",
        "_soft_error",
        "_ssthresh",
        "_stats",
        "_syn_rexmits",
        "_syn_time",
        "_tlp_at",
        "_tlp_outstanding",
        "_ts_offset",
        "_ts_ok",
        "_ts_recent",
        "_ts_recent_at",
        "_unacked",
        "_undo_cwnd",
        "_undo_retrans",
        "_undo_spurious",
        "_undo_ssthresh",
        "_user_closed",
        "_wake",
        "_wake_queued",
        "_write_closed",
        "error",
        "established",
        "listener",
        "local",
        "local_ip",
        "remote",
        "remote_ip",
        "state",
        "user_data",
    )

    def __init__(
        self,
        host: TcpHost,
        config: TcpConfig,
        *,
        local: Address,
        remote: Address,
        local_ip: bytes,
        remote_ip: bytes,
        iss: int,
        mtu: int,
        ts_offset: int = 0,
        parent: object | None = None,
    ) -> None:
        self._host = host
        self._config = config
        self._stats = host.counters
        self.user_data: object = None
        self.local = local
        self.remote = remote
        self.local_ip = local_ip
        self.remote_ip = remote_ip
        self.state = CLOSED
        self.established = False
        self.error: NetstackError | None = None
        self.listener = parent  # the TcpListener that accepted this connection, if any
        self._soft_error: NetstackError | None = None
        self._user_closed = False
        self._write_closed = False
        self._wake = False
        self._wake_queued = False
        self._nagle = config.nagle
        self._keepalive = config.keepalive_idle is not None

        ipv6 = len(local_ip) == 16
        self._path_mss = max_segment_size(mtu, ipv6)
        self._peer_mss = 1220 if ipv6 else 536
        self._offer_wscale = config.window_scaling
        self._offer_sack = config.sack
        self._offer_ts = config.timestamps
        self._snd_wscale = 0
        self._rcv_wscale = 0
        self._sack_ok = False
        self._ts_ok = False
        self._ts_offset = ts_offset & _M32
        self._ts_recent = 0
        self._ts_recent_at = 0.0
        self._mss = min(self._path_mss, self._peer_mss)
        self._rcv_mss = self._mss

        self._iss = iss & _M32
        self._irs = 0
        self._snd_una = 0
        self._snd_nxt = 0
        self._snd_wnd = 0
        self._max_snd_wnd = 0
        self._snd_wl1 = 0
        self._snd_wl2 = 0
        self._snd_buf_size = config.send_buffer
        self._sbuf = bytearray()
        self._sbuf_seq = 1
        self._fin_seq: int | None = None
        self._sb = Scoreboard()

        self._rcv_nxt = 0
        self._rcv_adv = 0
        self._rcv_buf_size = config.recv_buffer
        self._rbuf = ReceiveBuffer(config.reassembly_ranges)
        self._rcv_fin_at: int | None = None
        self._fin_received = False
        self._last_ack_sent = 0
        self._unacked = 0
        self._ack_now = False
        self._ack_deferred = False

        self._rtt = RttEstimator(config.initial_rto, config.min_rto, config.max_rto)
        self._cwnd = 0
        self._ssthresh = 1 << 62
        self._ca_acc = 0
        self._in_recovery = False
        self._recover = 0
        self._dupacks = 0
        self._force_rexmit = 0
        self._undo_cwnd = 0
        self._undo_ssthresh = 0
        self._undo_retrans = 0
        self._undo_spurious = 0
        self._rto_count = 0
        self._syn_rexmits = 0
        self._syn_time = 0.0

        self._rto_at = INF
        self._delack_at = INF
        self._persist_at = INF
        self._keepalive_at = INF
        self._close_at = INF
        self._rack_at = INF
        self._tlp_at = INF
        self._tlp_outstanding = False
        self._deadline = INF
        self._heap_at = INF
        self._persist_backoff = 0
        self._persist_probes = 0
        self._ka_probes = 0
        self._last_rx = 0.0
        self._challenge_start = -INF
        self._challenge_count = 0
        self._oow_ack_at = -INF

    # ------------------------------------------------------------------ public surface

    def __repr__(self) -> str:
        return f"<TcpSocket {self.local} -> {self.remote} {self.state}>"

    @property
    def deadline(self) -> float:
        """The earliest timer of this connection (``inf`` when none is armed)."""
        return self._deadline

    @property
    def readable(self) -> bool:
        return bool(self._rbuf.data) or self._fin_received or self.error is not None or self.state == CLOSED

    @property
    def at_eof(self) -> bool:
        """The peer's FIN and every byte before it were consumed, and no error came since: an
        error that discarded unread data must not look like a clean end of stream."""
        return self._fin_received and not self._rbuf.data and self.error is None

    @property
    def send_space(self) -> int:
        if self.error is not None or self._write_closed or self.state not in _WRITABLE_STATES:
            return 0
        return max(0, self._snd_buf_size - len(self._sbuf))

    @property
    def nodelay(self) -> bool:
        return not self._nagle

    @nodelay.setter
    def nodelay(self, value: bool) -> None:
        self._nagle = not value

    @property
    def keepalive(self) -> bool:
        return self._keepalive

    @keepalive.setter
    def keepalive(self, value: bool) -> None:
        self._keepalive = bool(value)
        if value and self.state in _KEEPALIVE_STATES:
            self._keepalive_at = self._last_rx + self._keepalive_idle
        else:
            self._keepalive_at = INF
        self._finish()

    @property
    def mss(self) -> int:
        """Payload bytes per full segment (options already deducted)."""
        return self._mss

    @property
    def cwnd(self) -> int:
        return self._cwnd

    @property
    def rto(self) -> float:
        return self._rtt.rto

    @property
    def srtt(self) -> float | None:
        return self._rtt.srtt

    @property
    def in_flight(self) -> int:
        return self._snd_nxt - self._snd_una if self.established else 0

    def info(self) -> dict[str, object]:
        """What was negotiated and how the connection runs now (like Linux's TCP_INFO)."""
        return {
            "state": self.state,
            "mss": self._mss,
            "peer_mss": self._peer_mss,
            "path_mss": self._path_mss,
            "sack": self._sack_ok,
            "timestamps": self._ts_ok,
            "window_scaling": self._offer_wscale and self.established,
            "snd_wscale": self._snd_wscale,
            "rcv_wscale": self._rcv_wscale,
            "snd_wnd": self._snd_wnd,
            "cwnd": self._cwnd,
            "ssthresh": min(self._ssthresh, 1 << 31),
            "in_flight": self.in_flight,
            "srtt": self._rtt.srtt,
            "rto": self._rtt.rto,
            "unread": len(self._rbuf.data),
            "unsent": max(0, self._sbuf_seq + len(self._sbuf) - self._snd_nxt),
        }

    def send(self, data: bytes | bytearray | memoryview, now: float) -> int:
        if self.error is not None:
            raise self.error
        if self._write_closed or self.state not in _WRITABLE_STATES:
            raise ConnectionClosed("this side of the connection is shut down for sending")
        space = self._snd_buf_size - len(self._sbuf)
        if space <= 0 or not data:
            return 0
        count = len(data)
        if count > space:
            data = memoryview(data)[:space]
            count = space
        self._sbuf += data
        if self.state in _SENDING_STATES:
            self._output(now)
        self._finish()
        return count

    def recv(self, max_bytes: int) -> bytes:
        rbuf = self._rbuf
        if not rbuf.data or max_bytes <= 0:
            return b""
        data = rbuf.read(max_bytes)
        if self.state in _RECEIVING_STATES and not self._fin_received:
            self._maybe_window_update()
        return data

    def shutdown_write(self, now: float) -> None:
        if self._write_closed or self.state == CLOSED:
            return
        self._queue_fin()
        if self.state == ESTABLISHED:
            self.state = FIN_WAIT_1
        elif self.state == CLOSE_WAIT:
            self.state = LAST_ACK
        if self.state in _SENDING_STATES:
            self._output(now)
        self._finish()

    def close(self, now: float) -> None:
        """Graceful close, or RST when received data was never read (RFC 1122 4.2.2.13, as
        Linux): the peer learns at once that it was lost and stops sending more."""
        if self._user_closed:
            return
        if self._rbuf.data and self.state not in (CLOSED, SYN_SENT, TIME_WAIT):
            self._stats["tcp_resets_unread_on_close"] += 1
            self.fail(ConnectionAborted("closed with unread data: the connection was reset"), now)
            return
        self._user_closed = True
        self._rbuf.clear()
        state = self.state
        if state == SYN_SENT:
            self._terminate(None, now, send_rst=False)
        elif state == FIN_WAIT_2:
            self._close_at = now + self._config.fin_wait2_timeout
        elif state != CLOSED:
            self.shutdown_write(now)
            if self.state == FIN_WAIT_2:
                self._close_at = now + self._config.fin_wait2_timeout
        self._finish()

    def abort(self, now: float) -> None:
        self.fail(ConnectionAborted("connection aborted"), now)

    def fail(self, error: NetstackError, now: float) -> None:
        """End the connection at once with ``error`` (RST to the peer if it knows us)."""
        self._user_closed = True
        if self.state == CLOSED:
            if self.error is None:
                self.error = error
            return
        # the peer does not know us yet (SYN-SENT) or has finished (TIME-WAIT): no RST
        self._terminate(error, now, send_rst=self.state not in (SYN_SENT, TIME_WAIT))
        self._finish()

    # ------------------------------------------------------------------ opening

    def connect(self, now: float) -> None:
        """Active open: send our SYN."""
        self._fit_offers()
        self.state = SYN_SENT
        self._snd_una = 0
        self._snd_nxt = 1
        self._syn_time = now
        self._last_rx = now
        self._send_syn(now, with_ack=False)
        self._rto_at = now + self._rtt.rto
        self._finish()

    def accept_syn(self, header: TcpHeader, now: float) -> None:
        """Passive open: ``header`` is a SYN for a listener; answer with SYN-ACK."""
        self._fit_offers()
        self._irs = header.seq
        self._rcv_nxt = 1
        self._last_ack_sent = 1
        self._negotiate(header.options, now)
        self._snd_wnd = header.window
        self._max_snd_wnd = header.window
        self._snd_una = 0
        self._snd_nxt = 1
        self._syn_time = now
        self._last_rx = now
        self._rcv_adv = 1 + min(self._rcv_buf_size, 0xFFFF)
        self.state = SYN_RECEIVED
        self._send_syn(now, with_ack=True)
        self._rto_at = now + self._rtt.rto
        self._finish()

    def _fit_offers(self) -> None:
        """Offer on the SYN (or SYN-ACK) only the options that fit the MTU beside the headers:
        MSS first, then SACK-permitted, window scale and timestamps. Timestamps then ride on
        every segment, so they are offered only when they leave at least as many data bytes
        per segment as they take (on IPv4's 68-byte minimum MTU they still do)."""
        room = min(self._path_mss, TCP_MAX_OPTIONS) - 4  # the MSS option
        if self._offer_sack:
            self._offer_sack = room >= 4
            room -= 4 if self._offer_sack else 0
        if self._offer_wscale:
            self._offer_wscale = room >= 4
            room -= 4 if self._offer_wscale else 0
        if self._offer_ts:
            cost = _TS_OPTION - (4 if self._offer_sack else 0)  # SACK-permitted fills its NOPs
            self._offer_ts = room >= cost and self._path_mss - _TS_OPTION >= _TS_OPTION

    def _negotiate(self, options: TcpOptions, now: float) -> None:
        if options.mss is not None and options.mss > 0:
            self._peer_mss = max(options.mss, _MIN_PEER_MSS)
        if self._offer_wscale and options.window_scale is not None:
            self._snd_wscale = min(options.window_scale, 14)
            self._rcv_wscale = _window_shift(self._rcv_buf_size)
        else:
            self._offer_wscale = False
        self._sack_ok = self._offer_sack and options.sack_permitted
        self._offer_sack = self._sack_ok
        if self._offer_ts and options.timestamp is not None:
            self._ts_ok = True
            self._ts_recent = options.timestamp[0]
            self._ts_recent_at = now
        else:
            self._offer_ts = False
        self._update_mss()

    def _update_mss(self) -> None:
        base = min(self._path_mss, self._peer_mss)
        self._mss = max(base - (_TS_OPTION if self._ts_ok else 0), 1)
        self._rcv_mss = self._mss

    def _send_syn(self, now: float, *, with_ack: bool) -> None:
        options = TcpOptions(mss=self._path_mss)
        if self._offer_wscale:
            options.window_scale = _window_shift(self._rcv_buf_size)
        options.sack_permitted = self._offer_sack
        if self._offer_ts:
            options.timestamp = (self._tsval(now), self._ts_recent if with_ack else 0)
        if with_ack:
            flags = SYN | ACK
            ack = (self._irs + self._rcv_nxt) & _M32
        else:
            flags = SYN
            ack = 0
        window = min(self._rcv_buf_size, 0xFFFF)
        header = TcpHeader(self.local[1], self.remote[1], self._iss, ack, flags, window, 0, options)
        self._host.tcp_transmit(self, header, b"")
        self._ack_now = False

    def _enter_established(self, now: float) -> bool:
        if self.listener is not None and not self._host.tcp_established(self):
            return False
        self.established = True
        self.state = FIN_WAIT_1 if self._write_closed else ESTABLISHED
        self._snd_una = 1
        self._rto_at = INF
        self._syn_rexmits_done()
        mss = self._mss
        segments = max(self._config.initial_window, 1)
        self._cwnd = min(segments * mss, max(2 * mss, segments * 1460))  # RFC 6928 for 10
        if self._keepalive:
            self._keepalive_at = now + self._keepalive_idle
        self._wake = True
        return True

    def _syn_rexmits_done(self) -> None:
        """RFC 6298 5.7: after a SYN timeout and no RTT sample, data starts with RTO = 3 s."""
        if self._syn_rexmits and self._rtt.srtt is None:
            self._rtt.reset_backoff()
            self._rtt.raise_floor(3.0)

    @property
    def _keepalive_idle(self) -> float:
        idle = self._config.keepalive_idle
        return 7200.0 if idle is None else idle

    # ------------------------------------------------------------------ segment arrival

    def on_segment(self, header: TcpHeader, payload: bytes, now: float) -> bool:
        """Process one segment addressed to this connection.

        Returns True only when the segment is a new SYN that may reuse this TIME-WAIT
        connection's addresses: the connection is then gone and the caller hands the SYN
        to a listener.
        """
        state = self.state
        if state == CLOSED:
            return False
        if state is ESTABLISHED and self._fast_path(header, payload, now):
            self._last_rx = now
            self._ka_probes = 0
            self._finish()
            return False
        if state == SYN_SENT:
            self._on_segment_syn_sent(header, payload, now)
        elif self._on_segment_synchronized(header, payload, now):
            return True
        self._finish()
        return False

    def _fast_path(self, header: TcpHeader, payload: bytes, now: float) -> bool:
        """Header prediction: the next in-order data segment, or a pure ACK of new data, with
        nothing unusual about it. False sends the segment through the full RFC 9293 checks."""
        if header.flags & (FIN | SYN | RST | ACK) != ACK or self._in_recovery:
            return False
        rcv_nxt = self._rcv_nxt
        if (header.seq - self._irs - rcv_nxt) & _M32:
            return False
        options = header.options
        timestamp = options.timestamp
        if options.sack_blocks or (timestamp is not None) != self._ts_ok:
            return False
        if timestamp is not None:
            if _ts_before(timestamp[0], self._ts_recent):
                return False
            if rcv_nxt == self._last_ack_sent:
                self._ts_recent = timestamp[0]
                self._ts_recent_at = now
        window = header.window << self._snd_wscale
        una = self._snd_una
        acked = (header.ack - self._iss - una) & _M32
        plen = len(payload)
        if not plen:
            if not 0 < acked <= self._snd_nxt - una:
                return False
            self._snd_wl1 = rcv_nxt
            self._snd_wl2 = una + acked
            self._sb.begin_ack()
            if window != self._snd_wnd:
                self._snd_wnd = window
                if window > self._max_snd_wnd:
                    self._max_snd_wnd = window
                if self._persist_at != INF and window:
                    self._persist_at = INF
                    self._persist_backoff = self._persist_probes = 0
            self._on_new_ack(una + acked, options, now)
            if self._sack_ok and self._sb:
                self._after_ack_loss_checks(options, now)
            self._output(now)
            return True
        if acked or window != self._snd_wnd or plen > self._rcv_adv - rcv_nxt:
            return False
        if self._rbuf.islands or self._user_closed:
            return False
        if self._rcv_fin_at is not None:
            return False
        self._rbuf.data += payload
        self._rcv_nxt = rcv_nxt + plen
        self._snd_wl1 = rcv_nxt
        self._wake = True
        self._unacked += plen
        if self._unacked >= 2 * self._rcv_mss or self._config.delayed_ack <= 0:
            self._ack_now = True
            self._ack_or_defer(now)
        elif self._delack_at == INF:
            self._delack_at = now + self._config.delayed_ack
        return True

    def _on_segment_syn_sent(self, header: TcpHeader, payload: bytes, now: float) -> None:
        flags = header.flags
        if flags & ACK and (header.ack - self._iss) & _M32 != 1:
            if not flags & RST:
                self._emit_raw(RST, header.ack, 0)
                self._stats["tcp_bad_ack"] += 1
            return
        if flags & RST:
            if flags & ACK:
                self._stats["tcp_resets_received"] += 1
                self._terminate(ConnectionRefused(f"{self.remote} refused the connection"), now, False)
            return
        if not flags & SYN:
            return
        self._last_rx = now
        self._irs = header.seq
        self._rcv_nxt = 1
        self._last_ack_sent = 1
        self._negotiate(header.options, now)
        self._rcv_adv = 1 + min(self._rcv_buf_size, 0xFFFF)
        self._snd_wnd = header.window
        self._max_snd_wnd = header.window
        if not flags & ACK:
            self.state = SYN_RECEIVED  # simultaneous open
            self._send_syn(now, with_ack=True)
            return
        self._rtt_sample_from(header.options, now, self._syn_time if not self._syn_rexmits else None)
        self._snd_wl1 = 0
        self._snd_wl2 = 1
        self._enter_established(now)
        if payload:
            self._receive_data(1, payload, now)
        if flags & FIN:
            self._rcv_fin_at = 1 + len(payload)
            self._check_fin(now)
        self._ack_now = True
        self._output(now)

    def _on_segment_synchronized(self, header: TcpHeader, payload: bytes, now: float) -> bool:
        flags = header.flags
        stats = self._stats
        rcv_nxt = self._rcv_nxt
        seq = rcv_nxt + ((((header.seq - self._irs - rcv_nxt) + _HALF) & _M32) - _HALF)
        state = self.state
        timestamp = header.options.timestamp
        if self._ts_ok and not flags & RST:
            if timestamp is None:
                stats["tcp_missing_timestamp"] += 1
                return False
            if (
                _ts_before(timestamp[0], self._ts_recent)
                and now - self._ts_recent_at < _PAWS_IDLE
                and (self._ts_recent - timestamp[0]) & _M32 > self._paws_tolerance_ms()
            ):
                stats["tcp_paws_rejected"] += 1
                if payload or flags & (SYN | FIN):
                    self._send_ack(now)
                return False

        if state == SYN_RECEIVED and flags & SYN and seq == rcv_nxt - 1 and not flags & RST:
            if not flags & ACK:
                self._send_syn(now, with_ack=True)  # our SYN-ACK was lost
                return False
            if self.listener is None and self._ack_abs(header.ack) == 1:
                flags &= ~SYN  # simultaneous open: their SYN-ACK acknowledges our SYN
                seq = rcv_nxt
                self._ack_now = True
        if state == TIME_WAIT and flags & SYN and not flags & (ACK | RST):
            newer = timestamp is not None and self._ts_ok and _ts_before(self._ts_recent, timestamp[0])
            if seq > rcv_nxt or newer:
                stats["tcp_time_wait_reused"] += 1
                self._terminate(None, now, send_rst=False)
                self._finish()
                return True

        plen = len(payload)
        seglen = plen + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        wnd = self._rcv_adv - rcv_nxt
        if seglen == 0:
            ok = seq == rcv_nxt if wnd <= 0 else rcv_nxt <= seq < rcv_nxt + wnd
        elif wnd <= 0:
            ok = False
        else:
            last = seq + seglen - 1
            ok = rcv_nxt <= seq < rcv_nxt + wnd or rcv_nxt <= last < rcv_nxt + wnd
        if not ok:
            if wnd <= 0 and seq == rcv_nxt and not flags & SYN:
                # RFC 9293: a zero window still takes ACKs (and a bare FIN, which needs no room)
                if plen:
                    stats["tcp_zero_window_drops"] += 1
                    self._ack_now = True
                    payload = b""
                    plen = 0
                    flags &= ~FIN
            else:
                if flags & RST:
                    stats["tcp_rst_out_of_window"] += 1
                    return False
                stats["tcp_out_of_window"] += 1
                if flags & SYN:
                    self._challenge_ack(now)  # RFC 5961 4.2, whatever its sequence number
                elif plen or flags & FIN:
                    if state == TIME_WAIT and flags & FIN:
                        self._close_at = now + self._config.time_wait
                    self._send_ack(now)
                else:
                    self._out_of_window_ack(now)
                return False
        self._last_rx = now  # only acceptable segments show that the peer is alive
        self._ka_probes = 0

        if (
            timestamp is not None
            and self._ts_ok
            and seq <= self._last_ack_sent
            and not _ts_before(timestamp[0], self._ts_recent)
        ):
            self._ts_recent = timestamp[0]
            self._ts_recent_at = now

        if flags & RST:
            if seq == rcv_nxt:
                self._on_reset(now)
            else:
                stats["tcp_blind_rst"] += 1
                self._challenge_ack(now)
            return False
        if flags & SYN:
            stats["tcp_blind_syn"] += 1
            self._challenge_ack(now)
            return False
        if not flags & ACK:
            stats["tcp_no_ack"] += 1
            return False

        if state == SYN_RECEIVED:
            ack = self._ack_abs(header.ack)
            if ack != 1:
                self._emit_raw(RST, header.ack, 0)
                stats["tcp_bad_ack"] += 1
                return False
            if not self._enter_established(now):
                stats["tcp_accept_queue_full"] += 1
                return False
            self._rtt_sample_from(header.options, now, self._syn_time if not self._syn_rexmits else None)
            self._snd_wnd = header.window << self._snd_wscale
            self._max_snd_wnd = max(self._max_snd_wnd, self._snd_wnd)
            self._snd_wl1 = seq
            self._snd_wl2 = 1

        if not self._process_ack(header, seq, plen, now):
            return False
        state = self.state
        if state == CLOSED:
            return False
        if plen and state in _RECEIVING_STATES:
            self._receive_data(seq, payload, now)
            if self.state == CLOSED:
                return False
        if flags & FIN and self._rcv_fin_at is None:
            self._rcv_fin_at = seq + plen
        if self._rcv_fin_at is not None:
            self._check_fin(now)
        self._output(now)
        return False

    def _paws_tolerance_ms(self) -> int:
        """How much older than TS.Recent a timestamp may be before PAWS rejects the segment.

        RFC 7323 allows none, which drops every segment that a retransmission overtook on a
        reordering path (a mixnet reorders by seconds). PAWS exists to stop duplicates from a
        wrapped sequence space, 2**31 bytes old, and those stay older than the tolerance: in
        1 s this stack receives well under 1 GB, and in 4 SRTT at most 4 receive windows (the
        window bounds what a peer sends per round trip), under 2**31 for any ``recv_buffer``
        below 512 MiB. The peer's clock is taken to tick in milliseconds (Linux, BSD); a
        slower clock widens the tolerance proportionally.
        """
        srtt = self._rtt.srtt or 0.0
        return int(1000 * min(max(1.0, 4 * srtt), 30.0))

    def _ack_abs(self, ack: int) -> int:
        una = self._snd_una
        return una + ((((ack - self._iss - una) + _HALF) & _M32) - _HALF)

    def _process_ack(self, header: TcpHeader, seq: int, plen: int, now: float) -> bool:
        ack = self._ack_abs(header.ack)
        una = self._snd_una
        if ack > self._snd_nxt:
            self._stats["tcp_ack_unsent"] += 1
            self._challenge_ack(now)
            return False
        if ack < una - self._max_snd_wnd:
            self._stats["tcp_ack_too_old"] += 1
            self._challenge_ack(now)
            return False
        options = header.options
        window = header.window << self._snd_wscale
        self._persist_probes = 0  # the peer answers: a closed window may stay closed (RFC 1122)
        sb = self._sb
        sb.begin_ack()
        if ack > una:
            self._on_new_ack(ack, options, now)
        elif (
            ack == una
            and not plen
            and not header.flags & FIN
            and window == self._snd_wnd
            and self._snd_nxt > una
        ):
            self._on_dupack(now)
        if self._snd_wl1 < seq or (self._snd_wl1 == seq and self._snd_wl2 <= ack):
            if window != self._snd_wnd:
                self._snd_wnd = window
                if window > self._max_snd_wnd:
                    self._max_snd_wnd = window
            self._snd_wl1 = seq
            self._snd_wl2 = ack
        if self._persist_at != INF and self._snd_una + self._snd_wnd > self._snd_nxt:
            self._persist_at = INF
            self._persist_backoff = 0
            self._persist_probes = 0
        if sb and self._sack_ok:
            self._after_ack_loss_checks(options, now)
        fin_seq = self._fin_seq
        if fin_seq is not None and self._snd_una > fin_seq:
            state = self.state
            if state == FIN_WAIT_1:
                self.state = FIN_WAIT_2
                self._wake = True
                if self._user_closed:
                    self._close_at = now + self._config.fin_wait2_timeout
            elif state == CLOSING:
                self._enter_time_wait(now)
            elif state == LAST_ACK:
                self._terminate(None, now, send_rst=False)
                return False
        return True

    def _after_ack_loss_checks(self, options: TcpOptions, now: float) -> None:
        blocks = options.sack_blocks
        if blocks:
            self._on_sack_blocks(blocks)
        if self._sb.detect_losses(self._loss_threshold()):
            self._on_loss_detected()
        self._arm_rack(now)

    def _loss_threshold(self) -> int:
        """Transmissions that must overtake a segment before it is deemed lost: the configured
        threshold, raised to the reordering this path has shown (as Linux's tcp_reordering)."""
        return max(self._config.dup_threshold, min(self._sb.reorder_distance + 1, 300))

    def _on_sack_blocks(self, blocks: tuple[tuple[int, int], ...]) -> None:
        una = self._snd_una
        nxt = self._snd_nxt
        base = self._iss + una
        valid = []
        for left, right in blocks:
            lo = una + ((((left - base) + _HALF) & _M32) - _HALF)
            hi = una + ((((right - base) + _HALF) & _M32) - _HALF)
            if una <= lo < hi <= nxt:
                valid.append((lo, hi))
            else:
                self._stats["tcp_sack_ignored"] += 1
        if valid:
            self._sb.sack(valid)

    def _on_new_ack(self, ack: int, options: TcpOptions, now: float) -> None:
        una = self._snd_una
        acked = ack - una
        self._snd_una = ack
        self._dupacks = 0
        self._rto_count = 0
        sbuf_seq = self._sbuf_seq
        data_end = sbuf_seq + len(self._sbuf)
        drop_to = ack if ack < data_end else data_end
        if drop_to > sbuf_seq:
            del self._sbuf[: drop_to - sbuf_seq]
            self._sbuf_seq = drop_to
            self._wake = True
        sb = self._sb
        first = sb.first()
        rexmit_time = first.time if self._in_recovery and first is not None and first.rexmits else None
        sample = sb.ack(ack)
        self._rtt_sample_from(options, now, sample.time if sample is not None else None)
        mss = self._mss
        if rexmit_time is not None and self._ts_ok:
            timestamp = options.timestamp
            if timestamp is not None and timestamp[1] and _ts_before(timestamp[1], self._tsval(rexmit_time)):
                self._undo_spurious += 1  # the echo names an earlier transmission (Eifel, RFC 3522)
        if self._in_recovery:
            if self._undo_retrans and self._undo_spurious >= self._undo_retrans:
                self._undo_recovery()
            elif ack >= self._recover:
                self._in_recovery = False
                self._cwnd = max(self._ssthresh, mss)
            elif not self._sack_ok:
                self._sb.mark_first_lost()
                self._force_rexmit = 1
                self._cwnd = max(self._cwnd - acked + mss, mss)
        elif self._cwnd < self._ssthresh:
            # Byte counting without RFC 3465's 2-MSS cap (as Linux): an ACK that coalesces
            # many segments must grow the window as much as the ACKs it stands for.
            self._cwnd = min(self._cwnd + acked, max(self._ssthresh, self._cwnd + mss))
        else:
            self._ca_acc += acked
            if self._ca_acc >= self._cwnd:
                self._ca_acc -= self._cwnd
                self._cwnd += mss
        cap = 2 * max(self._snd_buf_size, self._max_snd_wnd) + 4 * mss
        if self._cwnd > cap:
            self._cwnd = cap
        self._tlp_outstanding = False
        if self._snd_nxt > ack:
            self._rto_at = now + self._rtt.rto
            self._arm_tlp(now)
        else:
            self._rto_at = self._tlp_at = INF

    def _rtt_sample_from(self, options: TcpOptions, now: float, sent_at: float | None) -> None:
        timestamp = options.timestamp
        if self._ts_ok and timestamp is not None and timestamp[1]:
            elapsed = (self._tsval(now) - timestamp[1]) & _M32
            if elapsed < _HALF:
                self._rtt.sample(elapsed / 1000.0)
                return
        if sent_at is not None:
            self._rtt.sample(now - sent_at)

    def _undo_recovery(self) -> None:
        """Every retransmission of this recovery was unnecessary: the path reordered, nothing
        was lost. Restore the window and tolerate deeper reordering from now on."""
        self._stats["tcp_spurious_recoveries"] += 1
        self._in_recovery = False
        self._cwnd = max(self._cwnd, self._undo_cwnd)
        self._ssthresh = max(self._ssthresh, self._undo_ssthresh)
        sb = self._sb
        sb.reorder_distance = max(sb.reorder_distance, min(2 * self._loss_threshold(), 300))
        sb.revert_losses()

    def _rack_window(self) -> float:
        """How long after its transmission a segment overtaken by a delivered one is lost
        (RFC 8985: RTT plus a reordering window, widened once the path has shown reordering)."""
        rtt = self._rtt.srtt
        if rtt is None:
            rtt = self._rtt.rto
        if self._sb.reorder_distance:
            return 2 * rtt
        return rtt + max(rtt / 4, 0.001)

    def _arm_rack(self, now: float) -> None:
        sb = self._sb
        sent_at = sb.reorder_candidate_time()
        if sent_at is None:
            self._rack_at = INF
            return
        window = self._rack_window()
        if sent_at + window <= now:
            if sb.mark_overtaken(now, window):
                self._stats["tcp_rack_losses"] += 1
                self._on_loss_detected()
            sent_at = sb.reorder_candidate_time()
        if sent_at is None:
            self._rack_at = INF
        else:
            self._rack_at = max(sent_at + window, now + 0.001)

    def _arm_tlp(self, now: float) -> None:
        """RFC 8985 tail loss probe: if no ACK comes for ~2 RTTs, probe instead of waiting for the RTO."""
        srtt = self._rtt.srtt
        if (
            srtt is None
            or not self._sack_ok
            or self._in_recovery
            or self._tlp_outstanding
            or not self._config.tail_loss_probe
        ):
            self._tlp_at = INF
            return
        pto = max(2 * srtt, 0.01)
        if self._snd_nxt - self._snd_una <= self._mss:
            pto += 0.2  # a lone segment may wait out the peer's delayed ACK
        when = now + pto
        self._tlp_at = when if when < self._rto_at else INF

    def _on_tlp(self, now: float) -> None:
        self._tlp_at = INF
        sb = self._sb
        if self.state not in _SENDING_STATES or not sb or self._in_recovery or self._tlp_outstanding:
            return
        self._tlp_outstanding = True
        self._stats["tcp_tail_loss_probes"] += 1
        nxt = self._snd_nxt
        data_end = self._sbuf_seq + len(self._sbuf)
        room = self._snd_una + self._snd_wnd - nxt
        if nxt < data_end and room > 0:
            end = nxt + min(self._mss, data_end - nxt, room)
            if end == self._fin_seq:
                end += 1
            self._transmit_range(nxt, end, now)
            sb.record(nxt, end, now)
            self._snd_nxt = end
        else:
            last = sb.last()
            if last is None or last.sacked:
                return
            if last.end - last.start > self._mss:  # sent before the path MTU shrank
                sb.split(last, self._mss)
                last = sb.last()
                assert last is not None
            self._transmit_range(last.start, last.end, now)
            sb.retransmitted(last, now)
            self._stats["tcp_retransmits"] += 1
        self._rto_at = now + self._rtt.rto

    def _on_dupack(self, now: float) -> None:
        self._dupacks += 1
        if self._sack_ok:
            return
        if self._in_recovery:
            self._cwnd += self._mss
        elif (
            self._dupacks == self._config.dup_threshold
            and self._snd_una >= self._recover
            and self._sb.mark_first_lost()
        ):
            self._on_loss_detected()
            self._cwnd = self._ssthresh + 3 * self._mss

    def _on_loss_detected(self) -> None:
        if self._in_recovery:
            return
        self._in_recovery = True
        self._tlp_at = INF
        self._recover = self._snd_nxt
        self._stats["tcp_fast_recoveries"] += 1
        self._undo_cwnd = self._cwnd
        self._undo_ssthresh = self._ssthresh
        self._undo_retrans = self._undo_spurious = 0
        flight = self._snd_nxt - self._snd_una
        self._ssthresh = max(flight // 2, 2 * self._mss)
        self._cwnd = self._ssthresh
        self._ca_acc = 0
        self._force_rexmit = 1

    def _receive_data(self, seq: int, payload: bytes, now: float) -> None:
        old_nxt = self._rcv_nxt
        if self._user_closed:
            if seq + len(payload) > old_nxt:  # new data nobody will read: tell the peer (RFC 1122)
                self._stats["tcp_resets_data_after_close"] += 1
                self._terminate(ConnectionAborted("data arrived after close"), now, send_rst=True)
                return
            self._ack_now = True
            return
        rbuf = self._rbuf
        had_islands = bool(rbuf.islands)
        refused = rbuf.refused
        new_nxt = rbuf.add(seq, payload, old_nxt, self._rcv_adv)
        if new_nxt == old_nxt:
            self._ack_now = True
            if rbuf.refused != refused:
                self._stats["tcp_reassembly_drops"] += 1
            else:
                self._stats["tcp_out_of_order"] += 1
            return
        self._rcv_nxt = new_nxt
        self._wake = True
        if had_islands:
            self._ack_now = True
            return
        self._unacked += new_nxt - old_nxt
        if self._unacked >= 2 * self._rcv_mss or self._config.delayed_ack <= 0:
            self._ack_now = True
        elif self._delack_at == INF:
            self._delack_at = now + self._config.delayed_ack

    def _check_fin(self, now: float) -> None:
        if self._fin_received or self._rcv_fin_at != self._rcv_nxt:
            return
        self._fin_received = True
        self._rcv_nxt += 1
        self._ack_now = True
        self._wake = True
        state = self.state
        if state in (ESTABLISHED, SYN_RECEIVED):
            self.state = CLOSE_WAIT
        elif state == FIN_WAIT_1:
            self.state = CLOSING
        elif state == FIN_WAIT_2:
            self._enter_time_wait(now)

    def _on_reset(self, now: float) -> None:
        self._stats["tcp_resets_received"] += 1
        state = self.state
        error: NetstackError | None = None
        if state == SYN_RECEIVED:
            if self.listener is None:
                error = ConnectionRefused(f"{self.remote} refused the connection")
            else:  # seen only by an application that accepted a deferred request
                error = ConnectionReset(f"{self.remote} reset the connection during the handshake")
        elif state in (ESTABLISHED, FIN_WAIT_1, FIN_WAIT_2, CLOSE_WAIT):
            error = ConnectionReset(f"{self.remote} reset the connection")
        self._terminate(error, now, send_rst=False)

    def _out_of_window_ack(self, now: float) -> None:
        """Answer an unacceptable pure ACK at most every 0.5 s: two ends that disagree about
        the sequence space would otherwise bounce ACKs forever (as Linux's tcp_invalid_ratelimit)."""
        if now - self._oow_ack_at < _OUT_OF_WINDOW_ACK_INTERVAL:
            self._stats["tcp_out_of_window_acks_suppressed"] += 1
            return
        self._oow_ack_at = now
        self._send_ack(now)

    def _challenge_ack(self, now: float) -> None:
        """RFC 5961 challenge ACK, rate limited per connection."""
        if now - self._challenge_start >= 1.0:
            self._challenge_start = now
            self._challenge_count = 0
        if self._challenge_count >= self._config.challenge_ack_limit:
            self._stats["tcp_challenge_acks_suppressed"] += 1
            return
        self._challenge_count += 1
        self._stats["tcp_challenge_acks"] += 1
        self._send_ack(now)

    # ------------------------------------------------------------------ ICMP feedback

    def _in_flight_seq(self, seq_wire: int) -> bool:
        seq = self._ack_abs(seq_wire)
        return self._snd_una <= seq < self._snd_nxt

    def on_icmp_error(self, seq_wire: int, error: NetstackError, now: float) -> bool:
        """A destination-unreachable quoting our segment ``seq_wire``; False if not credible."""
        if self.state == CLOSED or not self._in_flight_seq(seq_wire):
            return False
        if self.state == SYN_SENT:
            self._terminate(error, now, send_rst=False)
        else:
            self._soft_error = error
        self._finish()
        return True

    def on_packet_too_big(self, seq_wire: int, mtu: int, now: float) -> bool:
        """ICMP fragmentation-needed / packet-too-big quoting ``seq_wire``; False if not credible."""
        if self.state == CLOSED or not self._in_flight_seq(seq_wire):
            return False
        ipv6 = len(self.local_ip) == 16
        mtu = max(mtu, 1280 if ipv6 else self._config.min_ipv4_mtu)
        path_mss = max_segment_size(mtu, ipv6)
        if path_mss >= self._path_mss:
            return True
        self._stats["tcp_pmtu_reductions"] += 1
        self._path_mss = path_mss
        self._update_mss()
        if self.established and self._sb.mark_oversized_lost(self._mss):
            self._force_rexmit = 1
            if self.state in _SENDING_STATES:
                self._output(now)
        self._finish()
        return True

    # ------------------------------------------------------------------ timers

    def on_timer(self, now: float) -> None:
        """Run every timer of this connection that is due at ``now``."""
        if self.state == CLOSED:
            return
        if self._close_at <= now:
            self._close_at = INF
            if self.state == TIME_WAIT:
                self._terminate(None, now, send_rst=False)
            else:
                self._stats["tcp_fin_wait2_timeouts"] += 1
                self._terminate(None, now, send_rst=True)
            self._finish()
            return
        if self._rack_at <= now:
            self._rack_at = INF
            self._arm_rack(now)
            if self.state in _SENDING_STATES:
                self._output(now)
        if self._tlp_at <= now:
            self._on_tlp(now)
        if self._rto_at <= now:
            self._on_rto(now)
        if self.state != CLOSED and self._persist_at <= now:
            self._on_persist(now)
        if self.state != CLOSED and self._keepalive_at <= now:
            self._on_keepalive(now)
        if self._delack_at <= now:
            self._delack_at = INF
            if self.state not in (CLOSED, SYN_SENT, SYN_RECEIVED) and self._last_ack_sent != self._rcv_nxt:
                self._send_ack(now)
        self._finish()

    def _on_rto(self, now: float) -> None:
        self._rto_at = self._tlp_at = self._rack_at = INF
        state = self.state
        stats = self._stats
        if state in (SYN_SENT, SYN_RECEIVED):
            self._syn_rexmits += 1
            passive = self.listener is not None
            limit = self._config.synack_retries if passive else self._config.syn_retries
            if self._syn_rexmits > limit:
                if passive:
                    stats["tcp_syn_received_timeouts"] += 1
                    lost = ConnectionTimedOut(f"{self.remote} never completed the handshake")
                    self._terminate(lost, now, send_rst=False)
                else:
                    error = self._soft_error or ConnectionTimedOut(f"no answer from {self.remote}")
                    self._terminate(error, now, send_rst=False)
                return
            self._rtt.on_timeout()
            stats["tcp_retransmits"] += 1
            stats["tcp_syn_retransmits"] += 1
            self._send_syn(now, with_ack=state == SYN_RECEIVED)
            self._rto_at = now + self._rtt.rto
            return
        sb = self._sb
        if not sb or state not in _SENDING_STATES:
            return
        self._rto_count += 1
        if self._rto_count > self._config.max_retries:
            error = self._soft_error or ConnectionTimedOut(f"{self.remote} stopped acknowledging")
            self._terminate(error, now, send_rst=True)
            return
        stats["tcp_rto_timeouts"] += 1
        mss = self._mss
        if self._rto_count == 1:
            self._ssthresh = max((self._snd_nxt - self._snd_una) // 2, 2 * mss)
        self._cwnd = mss
        self._ca_acc = 0
        self._in_recovery = False
        self._recover = self._snd_nxt
        self._dupacks = 0
        sb.mark_all_lost(forget_sacks=self._rto_count > 1)
        self._rtt.on_timeout()
        self._force_rexmit = 1
        self._output(now)
        self._rto_at = now + self._rtt.rto

    def _on_persist(self, now: float) -> None:
        self._persist_at = INF
        if self.state not in _SENDING_STATES or self._sb:
            return
        if self._snd_una + self._snd_wnd > self._snd_nxt:
            self._output(now)
            return
        pending = self._sbuf_seq + len(self._sbuf) > self._snd_nxt or (
            self._fin_seq is not None and self._snd_nxt <= self._fin_seq
        )
        if not pending:
            return
        self._persist_probes += 1
        if self._persist_probes > self._config.max_retries:
            error = self._soft_error or ConnectionTimedOut(f"{self.remote} never reopened its window")
            self._terminate(error, now, send_rst=True)
            return
        self._stats["tcp_window_probes"] += 1
        self._emit(ACK, self._snd_una - 1, b"", now)
        self._persist_backoff += 1
        self._persist_at = now + self._persist_interval()

    def _persist_interval(self) -> float:
        base = max(self._rtt.rto, self._config.min_rto)
        return min(base * (1 << min(self._persist_backoff, 16)), self._config.max_rto)

    def _on_keepalive(self, now: float) -> None:
        self._keepalive_at = INF
        if not self._keepalive or self.state not in _KEEPALIVE_STATES:
            return
        idle = self._keepalive_idle
        if self._sb or now - self._last_rx < idle:
            self._keepalive_at = max(self._last_rx + idle, now + 1e-3)
            return
        if self._ka_probes >= self._config.keepalive_count:
            error = self._soft_error or ConnectionTimedOut(f"{self.remote} stopped answering keepalives")
            self._terminate(error, now, send_rst=True)
            return
        self._ka_probes += 1
        self._stats["tcp_keepalive_probes"] += 1
        self._emit(ACK, self._snd_una - 1, b"", now)
        self._keepalive_at = now + self._config.keepalive_interval

    # ------------------------------------------------------------------ sending

    def _queue_fin(self) -> None:
        if self._fin_seq is None:
            self._fin_seq = self._sbuf_seq + len(self._sbuf)
        self._write_closed = True
        self._wake = True

    def _output(self, now: float) -> None:
        if self.state in _SENDING_STATES:
            self._send_data(now)
        if self._ack_now:  # still owed: nothing was sent, or no room for the SACK blocks
            self._ack_or_defer(now)

    def _ack_or_defer(self, now: float) -> None:
        """Send the ACK we owe, or, while the stack digests a batch of packets and SACK lets
        the peer do without every duplicate ACK, leave it for one ACK at the end of the batch."""
        if self._sack_ok and self._host.deferring_acks and self._unacked < _MAX_STRETCH * self._rcv_mss:
            if not self._ack_deferred:
                self._ack_deferred = True
                self._host.tcp_defer_ack(self)
        else:
            self._send_ack(now)

    def flush_deferred_ack(self, now: float) -> None:
        """End of a batch: send the ACK deferred by ``_ack_or_defer`` if it is still owed."""
        self._ack_deferred = False
        if self._ack_now and self.state not in (CLOSED, SYN_SENT):
            self._send_ack(now)
            self._finish()

    def _send_data(self, now: float) -> bool:
        sb = self._sb
        mss = self._mss
        cwnd = self._cwnd
        sent = False
        stats = self._stats
        lost = sb.peek_lost()
        while lost is not None:
            if self._force_rexmit <= 0 and cwnd - sb.pipe < min(mss, lost.end - lost.start):
                break
            self._force_rexmit -= 1
            if lost.end - lost.start > mss:
                sb.split(lost, mss)
            self._transmit_range(lost.start, lost.end, now)
            sb.retransmitted(lost, now)
            stats["tcp_retransmits"] += 1
            if self._in_recovery:
                stats["tcp_fast_retransmits"] += 1
                self._undo_retrans += 1
            sent = True
            lost = sb.peek_lost()
        self._force_rexmit = 0

        data_end = self._sbuf_seq + len(self._sbuf)
        fin_seq = self._fin_seq
        right = self._snd_una + self._snd_wnd
        nxt = self._snd_nxt
        while True:
            avail = data_end - nxt
            if avail <= 0:
                if fin_seq is not None and nxt == fin_seq and right > nxt and cwnd > sb.pipe:
                    self._transmit_range(nxt, nxt + 1, now)
                    sb.record(nxt, nxt + 1, now)
                    nxt += 1
                    sent = True
                break
            usable = right - nxt
            room = cwnd - sb.pipe
            if room < usable:
                usable = room
            if usable <= 0:
                break
            size = mss if avail > mss else avail
            if size > usable:
                if sb:
                    break
                size = usable
            elif size < mss and self._nagle and sb:
                break
            end = nxt + size
            if end == fin_seq and right > end:
                end += 1
            self._transmit_range(nxt, end, now)
            sb.record(nxt, end, now)
            nxt = end
            sent = True
        self._snd_nxt = nxt
        if sb:
            if self._rto_at == INF:
                self._rto_at = now + self._rtt.rto
            if self._tlp_at == INF and sent:
                self._arm_tlp(now)
        elif self._persist_at == INF and (nxt < data_end or (fin_seq is not None and nxt == fin_seq)):
            self._persist_at = now + self._persist_interval()
        return sent

    def _transmit_range(self, start: int, end: int, now: float) -> None:
        fin_seq = self._fin_seq
        flags = ACK
        stop = end
        if fin_seq is not None and start <= fin_seq < end:
            flags |= FIN
            stop = fin_seq
        sbuf_seq = self._sbuf_seq
        if stop > start:
            payload = bytes(self._sbuf[start - sbuf_seq : stop - sbuf_seq])
            if stop == sbuf_seq + len(self._sbuf):
                flags |= PSH
        else:
            payload = b""
        self._emit(flags, start, payload, now)

    def _send_ack(self, now: float) -> None:
        self._emit(ACK, self._snd_nxt, b"", now)

    def _emit(self, flags: int, seq: int, payload: bytes, now: float) -> None:
        options = TcpOptions()
        if self._ts_ok:
            options.timestamp = (self._tsval(now), self._ts_recent)
        rcv_nxt = self._rcv_nxt
        sack_complete = True
        if self._sack_ok and self._rbuf.islands:
            irs = self._irs
            fin = self._rcv_fin_at
            # RFC 6691: options and data together stay within the MSS (hence the MTU); a pure
            # ACK carries as many blocks as fit, a data segment that fits fewer leaves one owed
            segment = min(self._path_mss, self._peer_mss)
            options_room = TCP_MAX_OPTIONS
            if self._ts_ok:
                segment -= _TS_OPTION
                options_room -= _TS_OPTION
            limit = sack_blocks_fitting(min(segment, options_room))
            if payload:
                fit = sack_blocks_fitting(min(segment - len(payload), options_room))
                if fit < min(limit, len(self._rbuf.islands)):
                    sack_complete = False
                    limit = fit
            # an island that ends where the peer's FIN sits reports the FIN too (as Linux does),
            # so a sender counts its last segment, FIN included, as delivered
            options.sack_blocks = tuple(
                ((irs + lo) & _M32, (irs + hi + (hi == fin)) & _M32)
                for lo, hi in self._rbuf.sack_blocks(limit)
            )
        header = TcpHeader(
            self.local[1],
            self.remote[1],
            (self._iss + seq) & _M32,
            (self._irs + rcv_nxt) & _M32,
            flags,
            self._window_field(),
            0,
            options,
        )
        self._last_ack_sent = rcv_nxt
        self._delack_at = INF
        self._unacked = 0
        self._ack_now = not sack_complete  # a pure ACK must still carry the SACK blocks
        self._host.tcp_transmit(self, header, payload)

    def _emit_raw(self, flags: int, seq_wire: int, ack_wire: int) -> None:
        """A segment outside the connection's sequence space (RST replies to bad ACKs)."""
        header = TcpHeader(self.local[1], self.remote[1], seq_wire & _M32, ack_wire & _M32, flags, 0)
        self._stats["tcp_resets_sent"] += 1
        self._host.tcp_transmit(self, header, b"")

    def _window_field(self) -> int:
        """The window to advertise: free buffer, never shrinking the right edge, with receiver
        silly-window avoidance (the edge only moves by at least min(buffer/2, MSS))."""
        shift = self._rcv_wscale
        free = self._rcv_buf_size - len(self._rbuf.data)
        if free < 0:
            free = 0
        field = free >> shift
        if field > 0xFFFF:
            field = 0xFFFF
        rcv_nxt = self._rcv_nxt
        right = rcv_nxt + (field << shift)
        adv = self._rcv_adv
        threshold = self._rcv_mss if self._rcv_mss < self._rcv_buf_size // 2 else self._rcv_buf_size // 2
        if right - adv < threshold:
            field = (adv - rcv_nxt + (1 << shift) - 1) >> shift
            if field > 0xFFFF:
                field = 0xFFFF
            elif field < 0:
                field = 0
            right = rcv_nxt + (field << shift)
        if right > adv:
            self._rcv_adv = right
        return field

    def _maybe_window_update(self) -> None:
        free = self._rcv_buf_size - len(self._rbuf.data)
        shift = self._rcv_wscale
        right = self._rcv_nxt + (min(free >> shift, 0xFFFF) << shift)
        open_now = self._rcv_adv - self._rcv_nxt
        gained = right - self._rcv_adv
        if open_now < self._rcv_buf_size // 2 and gained >= min(2 * self._rcv_mss, self._rcv_buf_size // 2):
            self._stats["tcp_window_updates"] += 1
            self._send_ack(self._host.last_now)
            self._finish()

    def _tsval(self, now: float) -> int:
        return (self._ts_offset + int(now * 1000.0)) & _M32

    # ------------------------------------------------------------------ endings

    def _enter_time_wait(self, now: float) -> None:
        self.state = TIME_WAIT
        self._rto_at = self._persist_at = self._keepalive_at = self._rack_at = self._tlp_at = INF
        self._close_at = now + self._config.time_wait
        self._sbuf = bytearray()
        self._sb.clear()
        self._wake = True

    def _terminate(self, error: NetstackError | None, now: float, send_rst: bool) -> None:
        if self.state == CLOSED:
            return
        if send_rst and self.state not in (SYN_SENT, CLOSED):
            self._emit_raw(RST | ACK, self._iss + self._snd_nxt, self._irs + self._rcv_nxt)
        if error is not None and self.error is None:
            self.error = error
            self._rbuf.clear()
        self.state = CLOSED
        self._rto_at = self._delack_at = self._persist_at = self._keepalive_at = self._close_at = INF
        self._rack_at = self._tlp_at = INF
        self._sbuf = bytearray()
        self._sb.clear()
        self._wake = True
        self._host.tcp_finished(self)

    def _finish(self) -> None:
        if self._wake:
            self._wake = False
            self._host.tcp_wake(self)
        deadline = min(
            self._rto_at,
            self._delack_at,
            self._persist_at,
            self._keepalive_at,
            self._close_at,
            self._rack_at,
            self._tlp_at,
        )
        if deadline != self._deadline:
            self._deadline = deadline
            if deadline != INF:
                self._host.tcp_timer_changed(self)


def _window_shift(buffer: int) -> int:
    """The smallest RFC 7323 shift that lets a 16-bit field express ``buffer`` bytes."""
    shift = 0
    while shift < 14 and (0xFFFF << shift) < buffer:
        shift += 1
    return shift
