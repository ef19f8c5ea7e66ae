"""The TCP core against the RFCs' edge cases and hostile peers, played by hand.

Each test names the rule it checks: RFC 1122 4.2.2.17 (a closed window may stay closed as long
as the peer answers), 4.2.2.13 (closing on unread data resets), RFC 5961 / RFC 9293 (no ACK
storms from unacceptable segments, keepalive measures acceptable segments only), RFC 2018 /
RFC 2883 (hostile and duplicate SACK blocks), RFC 6691 (tiny MSS), RFC 9293 window edges.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_harness import ACK, FIN, RST, SYN, Link, ScriptedPeer, make_core, open_connection, packed

from smolmix_core.errors import ConnectionAborted, ConnectionReset, ConnectionTimedOut
from smolmix_core.netstack.config import StackConfig, TcpConfig
from smolmix_core.netstack.core import NetCore, TcpListener, TcpSocket
from smolmix_core.wire import TcpOptions, emit_options, parse_ip, parse_tcp


def _payloads(peer: ScriptedPeer) -> list[tuple[int, int]]:
    return [(peer.rel(s.header.seq), len(s.payload)) for s in peer.out() if s.payload]


# ----------------------------------------------------------------------------- persist


def test_a_closed_window_stays_open_indefinitely_while_the_peer_answers_probes() -> None:
    """RFC 1122 4.2.2.17: as long as the receiver acknowledges the probes, the sender MUST
    allow the connection to stay open (a slow reader is not a dead peer)."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"a" * 1000, 0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=0)
    sock.send(b"b" * 5000, 0.0)
    probes = 0
    while peer.now < 3600.0:  # an hour of a reader that does not read
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
        segments = peer.out()
        assert [s.payload for s in segments] == [b""] * len(segments)
        probes += len(segments)
        peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=0)
        assert sock.error is None, f"gave up after {probes} answered probes at {peer.now:.0f} s"
    assert probes > TcpConfig().max_retries
    assert core.poll_deadline() - peer.now <= TcpConfig().max_rto  # type: ignore[operator]
    peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=65535)
    assert _payloads(peer) == [(1000, 1460), (2460, 1460), (3920, 1460), (5380, 620)]


def test_a_closed_window_nobody_answers_times_out() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"a" * 1000, 0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=0)
    sock.send(b"b" * 10, 0.0)
    while sock.error is None:
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
    assert isinstance(sock.error, ConnectionTimedOut)
    assert core.stats()["tcp_window_probes"] == TcpConfig().max_retries


def test_a_fin_waiting_on_a_closed_window_goes_out_when_it_opens() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"a" * 100, 0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(100), window=0)
    sock.close(0.0)
    assert sock.state == "FIN-WAIT-1"
    assert peer.out() == []  # a FIN needs a sequence number, which needs window
    when = core.poll_deadline()
    assert when is not None
    peer.at(when)
    (probe,) = peer.out()
    assert probe.flags == ACK
    assert peer.rel(probe.header.seq) == 99
    peer.inject(ACK, peer.seq(0), peer.ack_of(100), window=10)
    (fin,) = peer.out()
    assert fin.flags & FIN
    assert peer.rel(fin.header.seq) == 100
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(101))
    assert sock.state == "TIME-WAIT"


def test_a_shrinking_window_stops_new_data_without_losing_any() -> None:
    """RFC 9293 3.8.6.2.1: the peer may move its right edge left; we send nothing beyond it
    and retransmit (not forget) what it no longer has room for."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, window=8 * 1460)
    sock.send(b"s" * (12 * 1460), 0.0)
    assert len(_payloads(peer)) == 8
    peer.inject(ACK, peer.seq(0), peer.ack_of(1460), window=1460)  # right edge from 8 to 2 segments
    assert _payloads(peer) == []
    peer.inject(ACK, peer.seq(0), peer.ack_of(2 * 1460), window=2 * 1460)  # edge at segment 4
    assert _payloads(peer) == []
    sent: list[tuple[int, int]] = []
    while (2 * 1460, 1460) not in sent:  # a tail loss probe, then the RTO resends the first
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
        sent += _payloads(peer)
    assert max(offset for offset, _ in sent) < 8 * 1460  # nothing new beyond the edge
    peer.inject(ACK, peer.seq(0), peer.ack_of(8 * 1460), window=65535)
    assert (8 * 1460, 1460) in _payloads(peer)
    assert sock.error is None


# ----------------------------------------------------------------------------- timers


def test_the_retransmission_timer_restarts_on_each_new_ack_and_stops_when_all_is_acked() -> None:
    """RFC 6298 5.1-5.3: started by the first data, restarted by every ACK of new data (not
    left at the first segment's deadline), stopped once nothing is outstanding."""
    core = make_core(timestamps=False, tail_loss_probe=False)
    sock, peer = open_connection(core)
    sock.send(b"r" * 3 * 1460, 0.0)
    peer.out()
    assert core.poll_deadline() == pytest.approx(sock.rto)
    peer.now = 0.15
    peer.inject(ACK, peer.seq(0), peer.ack_of(1460))
    assert core.poll_deadline() == pytest.approx(0.15 + sock.rto)
    peer.now = 0.3
    peer.inject(ACK, peer.seq(0), peer.ack_of(3 * 1460))
    assert core.poll_deadline() is None


def test_a_syn_in_time_wait_with_an_old_timestamp_is_challenged_then_replaced() -> None:
    """The new SYN reuses the port with a lower sequence number and an older timestamp (a
    client whose clock offset changed): PAWS keeps TIME-WAIT, the challenge ACK makes the client
    reset it (exact sequence), and its next SYN opens the new connection (RFC 6191's outcome)."""
    core = make_core(time_wait=60.0)
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core)
    peer.timestamps = True
    peer.ts_clock = 50_000
    peer.inject(SYN, peer.iss, options=TcpOptions(mss=1460, sack_permitted=True, timestamp=(50_000, 0)))
    (synack,) = peer.out()
    peer.core_iss = synack.header.seq
    peer.inject(ACK, peer.seq(0), peer.ack_of(0))
    server = listener.accept()
    assert server is not None
    server.close(0.0)
    peer.out()
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(1))
    peer.out()
    assert server.state == "TIME-WAIT"
    peer.now = 1.0
    old_ts = TcpOptions(mss=1460, timestamp=(10, 0))
    peer.inject(SYN, peer.iss - 5000, options=old_ts)
    (challenge,) = peer.out()
    assert challenge.flags == ACK
    assert challenge.header.ack == peer.seq(1)
    peer.inject(RST, challenge.header.ack, options=TcpOptions())  # what a client in SYN-SENT answers
    assert server.state == "CLOSED"
    peer.inject(SYN, peer.iss - 5000, options=old_ts)
    (fresh,) = peer.out()
    assert fresh.flags == SYN | ACK
    assert fresh.header.ack == peer.iss - 4999


# ----------------------------------------------------------------------------- closing


def test_close_with_unread_data_resets_the_connection() -> None:
    """RFC 1122 4.2.2.13 (as Linux): data the application will never read is reported lost
    with RST at once, so the peer stops sending it (over a mixnet, it would cost minutes)."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"unread response")
    peer.out()
    sock.send(b"request", 0.0)
    peer.out()
    sock.close(0.0)
    (rst,) = peer.out()
    assert rst.flags & RST
    assert rst.header.seq == peer.ack_of(7)
    assert sock.state == "CLOSED"
    assert isinstance(sock.error, ConnectionAborted)
    assert core.stats()["tcp_resets_unread_on_close"] == 1
    assert core.stats()["tcp_sockets"] == 0


def test_data_arriving_after_close_resets_the_connection() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"read")
    assert sock.recv(100) == b"read"
    sock.close(0.0)
    (fin,) = peer.out()
    assert fin.flags & FIN
    peer.inject(ACK, peer.seq(4), peer.ack_of(1), b"late" * 100)
    (rst,) = peer.out()
    assert rst.flags & RST
    assert rst.header.seq == peer.ack_of(1)
    assert sock.state == "CLOSED"
    assert core.stats()["tcp_resets_data_after_close"] == 1
    peer.inject(ACK, peer.seq(4), peer.ack_of(1), b"late" * 100)
    assert core.stats()["tcp_no_socket"] == 1


def test_a_retransmission_of_data_read_before_close_does_not_reset() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"read")
    assert sock.recv(100) == b"read"
    sock.close(0.0)
    peer.out()
    peer.inject(ACK, peer.seq(4), peer.ack_of(1))
    assert sock.state == "FIN-WAIT-2"
    peer.inject(ACK, peer.seq(0), peer.ack_of(1), b"read")  # old bytes, our ACK was lost
    (ack,) = peer.out()
    assert not ack.flags & RST
    assert sock.state == "FIN-WAIT-2"
    peer.inject(ACK | FIN, peer.seq(4), peer.ack_of(1))
    assert sock.state == "TIME-WAIT"


def test_a_reset_after_the_fin_discarding_unread_data_is_not_a_clean_eof() -> None:
    """Data and FIN arrived but were not read yet when a RST came: the data is gone, and the
    application must hear ConnectionReset, not a normal end of stream."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(0), b"never read")
    assert sock.state == "CLOSE-WAIT"
    peer.inject(RST, peer.seq(11))
    assert sock.recv(100) == b""
    assert not sock.at_eof
    assert isinstance(sock.error, ConnectionReset)


def test_a_reset_after_everything_was_read_is_still_reported() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(0), b"read")
    assert sock.recv(100) == b"read"
    assert sock.at_eof
    peer.inject(RST, peer.seq(5))
    assert not sock.at_eof  # as Linux: a pending error is reported before end-of-file
    assert isinstance(sock.error, ConnectionReset)


# ----------------------------------------------------------------------------- ACK storms


def test_unacceptable_pure_acks_are_answered_at_most_twice_a_second() -> None:
    """Two ends that disagree about the sequence space must not ping-pong ACKs forever
    (RFC 5961 section 7's concern; Linux's tcp_invalid_ratelimit)."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    answered = 0
    for step in range(200):
        peer.now = step * 0.01
        peer.inject(ACK, peer.seq(-50_000), peer.ack_of(0))  # far left of the window
        answered += len(peer.out())
    assert answered == 4  # 2 s of a flood: one answer per 0.5 s
    assert core.stats()["tcp_out_of_window_acks_suppressed"] == 196
    peer.inject(ACK, peer.seq(-50_000), peer.ack_of(0), b"data")  # data is always answered
    assert len(peer.out()) == 1
    assert sock.error is None


def test_keepalive_counts_only_acceptable_segments_as_signs_of_life() -> None:
    core = make_core(timestamps=False, keepalive_idle=10.0, keepalive_interval=2.0, keepalive_count=3)
    sock, peer = open_connection(core)
    junk_at = 1.0
    while sock.error is None and peer.now < 60.0:
        when = core.poll_deadline()
        assert when is not None
        if junk_at < when:
            peer.now = junk_at
            peer.inject(ACK, peer.seq(-50_000), peer.ack_of(0))  # off-path junk, not the peer
            junk_at += 1.0
        else:
            peer.at(when)
        peer.out()
    assert isinstance(sock.error, ConnectionTimedOut)
    assert peer.now == pytest.approx(16.0)


# ----------------------------------------------------------------------------- SACK


def test_hostile_sack_blocks_leave_the_scoreboard_small_and_unchanged() -> None:
    """Thousands of one-byte SACK blocks between segment edges describe no segment: nothing is
    marked, and the memory of them cannot grow beyond the segments in flight."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, window=65535, window_scale=3)
    rng = random.Random(5)
    sock.send(b"h" * 200 * 1460, 0.0)
    in_flight = len(_payloads(peer))
    pipe = sock._sb.pipe
    for _ in range(3000):
        blocks = []
        for _ in range(4):
            start = rng.randrange(1, in_flight * 1460 - 2)
            if start % 1460 == 0:
                start += 1
            blocks.append((start, start + 1))
        peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=peer.sack(*blocks), window=65535)
    assert len(sock._sb.sacked_ranges) <= in_flight
    assert len(sock._sb.sacked_ranges) == 0
    assert sock._sb.pipe == pipe
    assert sock._sb.sacked_bytes == 0
    assert core.stats()["tcp_fast_recoveries"] == 0


def test_dsack_and_out_of_window_blocks_are_ignored_and_the_rest_used() -> None:
    """RFC 2883: a first block below the cumulative ACK reports a duplicate; it is skipped, as
    are blocks beyond what we sent, and the valid block after them still counts."""
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"d" * 6 * 1460, 0.0)
    assert len(_payloads(peer)) == 6
    dsack = (0, 1460)
    beyond = (6 * 1460, 9 * 1460)
    peer.inject(ACK, peer.seq(0), peer.ack_of(1460), options=peer.sack(dsack, (2 * 1460, 5 * 1460), beyond))
    assert core.stats()["tcp_sack_ignored"] == 2
    assert sock._sb.sacked_bytes == 3 * 1460


def test_a_peer_mss_of_88_keeps_every_segment_within_it_through_loss() -> None:
    """RFC 6691: data plus options never exceed the peer's MSS, also when SACK blocks and
    timestamps compete for the option space; a lossy transfer still completes."""
    small = NetCore(StackConfig(ipv4="10.0.0.2", ipv6="fd00::2", mtu=128, seed=2))
    big = NetCore(StackConfig(ipv4="10.0.0.1", ipv6="fd00::1", mtu=1500, seed=1))
    listener = small.tcp_listen(("0.0.0.0", 80))
    sizes: list[int] = []

    def lossy_and_measured(source: NetCore, packet: bytes) -> bool:
        if source is big:
            ip = parse_ip(packet)
            header, payload = parse_tcp(ip.payload, ip.src, ip.dst)
            if not header.flags & SYN:
                sizes.append(len(payload) + len(emit_options(header.options)))
        return False

    link = Link(big, small, loss=0.05, seed=3, drop=lossy_and_measured)
    client = big.tcp_connect(("10.0.0.2", 80), 0.0)
    app = _OneWay(client, listener, random.Random(1).randbytes(60_000))
    link.apps.append(app)
    assert link.run_until(app.done, limit=600.0)
    assert bytes(app.received) == app.payload
    assert client.info()["mss"] == 88 - 12
    assert max(sizes) <= 88
    assert big.stats()["tcp_retransmits"] > 0


class _OneWay:
    """An application pair on a ``Link``: the client writes ``payload``, the server reads it."""

    def __init__(self, client: TcpSocket, listener: TcpListener, payload: bytes) -> None:
        self.client = client
        self.listener = listener
        self.payload = payload
        self.sent = 0
        self.server: TcpSocket | None = None
        self.received = bytearray()

    def __call__(self, now: float) -> None:
        if self.client.established and self.sent < len(self.payload):
            self.sent += self.client.send(self.payload[self.sent :], now)
        if self.server is None:
            self.server = self.listener.accept()
        if self.server is not None:
            self.received.extend(self.server.recv(1 << 20))

    def done(self) -> bool:
        return len(self.received) == len(self.payload)


class _BothWays(_OneWay):
    """``_OneWay`` plus the server writing ``download`` back at the same time."""

    def __init__(self, client: TcpSocket, listener: TcpListener, payload: bytes, download: bytes) -> None:
        super().__init__(client, listener, payload)
        self.download = download
        self.down_sent = 0
        self.downloaded = bytearray()

    def __call__(self, now: float) -> None:
        super().__call__(now)
        self.downloaded.extend(self.client.recv(1 << 20))
        if self.server is not None and self.down_sent < len(self.download):
            self.down_sent += self.server.send(self.download[self.down_sent :], now)

    def done(self) -> bool:
        return super().done() and len(self.downloaded) == len(self.download)


# ----------------------------------------------------------------------------- wraparound


class _FixedTimestampOffset(random.Random):
    """Random as usual, except the 32-bit draws that become timestamp offsets."""

    def __init__(self, seed: int, offset: int) -> None:
        super().__init__(seed)
        self.offset = offset

    def getrandbits(self, k: int, /) -> int:
        return self.offset if k == 32 else super().getrandbits(k)


class _FixedIsn:
    def __init__(self, iss: int) -> None:
        self.iss = iss

    def isn(self, *_connection: object) -> int:
        return self.iss


@settings(max_examples=15, deadline=None)
@given(
    client_iss=st.integers(2**32 - 100_000, 2**32 - 1),
    server_iss=st.integers(2**32 - 100_000, 2**32 - 1),
    ts_offset=st.sampled_from([0, 2**31 - 5, 2**32 - 40]),
    seed=st.integers(0, 1000),
)
def test_a_lossy_transfer_across_the_32_bit_wrap_is_intact(
    client_iss: int, server_iss: int, ts_offset: int, seed: int
) -> None:
    """Both sequence spaces and the timestamp clock wrap in the middle of a lossy, reordering
    transfer both ways."""
    a = NetCore(StackConfig(ipv4="10.0.0.1", ipv6="fd00::1", seed=seed))
    b = NetCore(StackConfig(ipv4="10.0.0.2", ipv6="fd00::2", seed=seed + 1))
    for core, iss in ((a, client_iss), (b, server_iss)):
        core._isn = _FixedIsn(iss)  # type: ignore[assignment]
        core._rng = _FixedTimestampOffset(seed, ts_offset)
    listener = b.tcp_listen(("::", 443))
    link = Link(a, b, loss=0.03, reorder=0.05, duplicate=0.02, seed=seed)
    client = a.tcp_connect(("fd00::2", 443), 0.0)
    app = _BothWays(
        client, listener, random.Random(seed).randbytes(150_000), random.Random(~seed).randbytes(150_000)
    )
    link.apps.append(app)
    assert link.run_until(app.done, limit=900.0)
    assert bytes(app.received) == app.payload
    assert bytes(app.downloaded) == app.download
    assert a.stats()["tcp_paws_rejected"] == b.stats()["tcp_paws_rejected"] == 0


def test_shutting_the_stack_down_resets_live_connections_but_not_time_wait() -> None:
    """A connection in TIME-WAIT has finished both ways; a RST would only kill the peer's own
    TIME-WAIT (RFC 1337)."""
    core = make_core(timestamps=False)
    finished, peer = open_connection(core)
    finished.close(0.0)
    peer.out()
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(1))
    peer.out()
    assert finished.state == "TIME-WAIT"
    live, _other = open_connection(core, remote="10.0.0.3")
    core.shutdown(1.0)
    (rst,) = core.drain_transmit()
    ip = parse_ip(rst)
    header, _ = parse_tcp(ip.payload, ip.src, ip.dst)
    assert ip.dst == packed("10.0.0.3")
    assert header.flags & RST
    assert live.state == finished.state == "CLOSED"
