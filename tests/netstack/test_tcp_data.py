"""The data path against a hand-played peer: ACK timing, Nagle, loss recovery, windows, probes."""

from __future__ import annotations

import pytest
from tcp_harness import ACK, FIN, PSH, RST, ScriptedPeer, Segment, make_core, open_connection, packed

from smolmix_core.errors import ConnectionTimedOut
from smolmix_core.netstack.core import NetCore
from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV6_PACKET_TOO_BIG,
    PROTO_ICMP,
    PROTO_ICMPV6,
    Icmpv4Message,
    Icmpv6Message,
    TcpOptions,
    emit_icmpv4,
    emit_icmpv6,
    emit_ip,
)

MSS = 1460


def data_offsets(peer: ScriptedPeer, segments: list[Segment]) -> list[tuple[int, int]]:
    return [(peer.rel(s.header.seq), len(s.payload)) for s in segments if s.payload]


def send_icmp_frag_needed(core: NetCore, peer: ScriptedPeer, quoted: bytes, mtu: int) -> None:
    body = emit_icmpv4(
        Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_FRAGMENTATION_NEEDED, mtu=mtu, data=quoted)
    )
    core.receive_packet(emit_ip(b"\x0a\x00\x00\xfe", peer.core_ip, PROTO_ICMP, body), peer.now)


# ----------------------------------------------------------------------------- receiving


def test_delayed_ack_waits_then_acks_every_second_full_segment() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    peer.inject(ACK | PSH, peer.seq(0), peer.ack_of(0), b"a" * 500)
    assert peer.out() == []
    assert core.poll_deadline() == pytest.approx(0.04)
    peer.at(0.039)
    assert peer.out() == []
    peer.at(0.04)
    (ack,) = peer.out()
    assert ack.flags == ACK
    assert ack.header.ack == peer.seq(500)
    peer.inject(ACK, peer.seq(500), peer.ack_of(0), b"b" * MSS)
    assert peer.out() == []
    peer.inject(ACK, peer.seq(500 + MSS), peer.ack_of(0), b"c" * MSS)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(500 + 2 * MSS)
    assert sock.recv(10_000) == b"a" * 500 + b"b" * MSS + b"c" * MSS


def test_delayed_ack_zero_acknowledges_every_segment() -> None:
    core = make_core(timestamps=False, delayed_ack=0)
    _sock, peer = open_connection(core)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"a" * 10)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(10)


def test_out_of_order_data_is_acked_at_once_with_sack_blocks_newest_first() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"A" * 100)
    assert peer.out() == []
    peer.inject(ACK, peer.seq(200), peer.ack_of(0), b"C" * 100)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(100)
    assert ack.options.sack_blocks == ((peer.seq(200), peer.seq(300)),)
    peer.inject(ACK, peer.seq(400), peer.ack_of(0), b"E" * 100)
    (ack,) = peer.out()
    assert ack.options.sack_blocks == ((peer.seq(400), peer.seq(500)), (peer.seq(200), peer.seq(300)))
    peer.inject(ACK, peer.seq(100), peer.ack_of(0), b"B" * 100)  # fills the first gap
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(300)
    assert ack.options.sack_blocks == ((peer.seq(400), peer.seq(500)),)
    peer.inject(ACK, peer.seq(250), peer.ack_of(0), b"C" * 50 + b"D" * 100)  # overlaps what we hold
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(500)
    assert ack.options.sack_blocks == ()
    assert sock.recv(1000) == b"A" * 100 + b"B" * 100 + b"C" * 100 + b"D" * 100 + b"E" * 100
    assert core.stats()["tcp_out_of_order"] == 2


@pytest.mark.parametrize(("count", "acks_at"), [(6, [6]), (20, [8, 16, 20])])
def test_a_batch_of_segments_is_acknowledged_with_few_coalesced_acks(count: int, acks_at: list[int]) -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    batch = [peer.packet(ACK, peer.seq(i * MSS), peer.ack_of(0), bytes([i]) * MSS) for i in range(count)]
    core.receive_packets(batch, 0.0)
    acks = peer.out()
    assert [(a.header.ack - peer.seq(0)) // MSS for a in acks] == acks_at
    assert sock.recv(1 << 20) == b"".join(bytes([i]) * MSS for i in range(count))


def test_out_of_order_segments_in_a_batch_share_one_ack_with_sack() -> None:
    core = make_core(timestamps=False)
    _sock, peer = open_connection(core, sack=True)
    batch = [peer.packet(ACK, peer.seq(i * 100), peer.ack_of(0), b"x" * 100) for i in (1, 3, 5)]
    core.receive_packets(batch, 0.0)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(0)
    assert len(ack.options.sack_blocks) == 3


def test_without_sack_a_batch_keeps_every_duplicate_ack() -> None:
    core = make_core(timestamps=False)
    _sock, peer = open_connection(core, sack=False)
    batch = [peer.packet(ACK, peer.seq(i * 100), peer.ack_of(0), b"x" * 100) for i in (1, 3, 5)]
    core.receive_packets(batch, 0.0)
    assert len(peer.out()) == 3  # a NewReno peer counts them


def test_a_sack_block_reaching_the_peers_fin_covers_the_fin() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    peer.inject(ACK | FIN, peer.seq(100), peer.ack_of(0), b"tail")
    (ack,) = peer.out()
    assert ack.options.sack_blocks == ((peer.seq(100), peer.seq(105)),)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"h" * 100)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(105)
    assert sock.state == "CLOSE-WAIT"


def test_full_data_segments_never_exceed_the_mtu_while_sack_blocks_are_owed() -> None:
    core = make_core()
    sock, peer = open_connection(core, sack=True, timestamps=True)
    peer.inject(ACK, peer.seq(1000), peer.ack_of(0), b"o" * 500)  # out of order
    (dupack,) = peer.out()
    assert len(dupack.options.sack_blocks) == 1
    sock.send(b"d" * (3 * sock.mss + 100), 0.0)
    segments = peer.out()
    assert all(len(s.raw) <= 1500 for s in segments)
    data = [s for s in segments if s.payload]
    assert [len(s.payload) for s in data] == [sock.mss] * 3 + [100]
    assert [len(s.options.sack_blocks) for s in data] == [0, 0, 0, 1]  # what fits
    assert len(segments) == 4  # the last one told the peer everything
    sock.send(b"e" * sock.mss, 0.0)
    full, pure = peer.out()
    assert len(full.payload) == sock.mss
    assert full.options.sack_blocks == ()
    assert pure.payload == b""  # so the peer still gets the SACK information
    assert pure.options.sack_blocks == ((peer.seq(1000), peer.seq(1500)),)


def test_no_sack_blocks_when_sack_was_not_negotiated() -> None:
    core = make_core(timestamps=False)
    _sock, peer = open_connection(core, sack=False)
    peer.inject(ACK, peer.seq(200), peer.ack_of(0), b"C" * 100)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(0)
    assert ack.options.sack_blocks == ()


def test_receive_window_closes_to_zero_and_reopens_on_read() -> None:
    core = make_core(timestamps=False, recv_buffer=4096)
    sock, peer = open_connection(core)
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"x" * MSS)
    peer.inject(ACK, peer.seq(MSS), peer.ack_of(0), b"x" * MSS)
    (ack,) = peer.out()
    assert ack.header.window == 4096 - 2 * MSS
    peer.inject(ACK, peer.seq(2 * MSS), peer.ack_of(0), b"x" * (4096 - 2 * MSS))
    peer.at(0.04)
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(4096)
    assert ack.header.window == 0
    peer.inject(ACK, peer.seq(4096), peer.ack_of(0), b"y" * 100)  # beyond a zero window
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(4096)
    assert ack.header.window == 0
    assert core.stats()["tcp_zero_window_drops"] == 1
    peer.inject(ACK | FIN, peer.seq(4096), peer.ack_of(0))  # a bare FIN needs no window
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(4097)
    assert sock.state == "CLOSE-WAIT"
    assert len(sock.recv(1000)) == 1000
    assert not sock.at_eof
    assert peer.out() == []  # no window update once the peer has finished sending
    assert len(sock.recv(10_000)) == 3096
    assert sock.at_eof


def test_reading_reopens_a_closed_window_with_one_update() -> None:
    core = make_core(timestamps=False, recv_buffer=4096)
    sock, peer = open_connection(core)
    for offset in (0, 2048):
        peer.inject(ACK, peer.seq(offset), peer.ack_of(0), b"z" * 2048)
    peer.at(0.04)
    assert [a.header.window for a in peer.out()] == [0]
    assert len(sock.recv(1000)) == 1000
    assert peer.out() == []  # 1000 bytes is below the silly-window threshold
    assert len(sock.recv(10_000)) == 3096
    (update,) = peer.out()
    assert update.header.ack == peer.seq(4096)
    assert update.header.window == 4096
    assert core.stats()["tcp_window_updates"] == 1


def test_scaled_window_admits_more_than_64k_in_flight() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, window_scale=7)
    payload = bytes(range(256)) * 400  # 102400 bytes
    for offset in range(0, len(payload), MSS):
        peer.inject(ACK, peer.seq(offset), peer.ack_of(0), payload[offset : offset + MSS])
    acks = peer.out()
    assert acks[-1].header.ack == peer.seq(len(payload) - len(payload) % (2 * MSS))
    assert all(a.header.window << 4 >= 512 * 1024 - len(payload) for a in acks)
    assert sock.recv(1 << 20) == payload


# ----------------------------------------------------------------------------- sending


def test_nagle_off_by_default_sends_small_writes_at_once() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    assert sock.nodelay
    sock.send(b"a", 0.0)
    sock.send(b"b", 0.0)
    assert data_offsets(peer, peer.out()) == [(0, 1), (1, 1)]


def test_nagle_on_holds_small_segments_while_data_is_unacknowledged() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.nodelay = False
    sock.send(b"a", 0.0)
    assert data_offsets(peer, peer.out()) == [(0, 1)]
    sock.send(b"b", 0.0)
    sock.send(b"c" * (MSS + 10), 0.0)
    assert data_offsets(peer, peer.out()) == [(1, MSS)]  # full segments still go
    peer.inject(ACK, peer.seq(0), peer.ack_of(1))
    assert data_offsets(peer, peer.out()) == []  # a full segment is still in flight
    peer.inject(ACK, peer.seq(0), peer.ack_of(1 + MSS))
    assert data_offsets(peer, peer.out()) == [(1 + MSS, 11)]


def test_send_is_bounded_by_the_send_buffer_and_space_returns_on_ack() -> None:
    core = make_core(timestamps=False, send_buffer=4096)
    sock, peer = open_connection(core)
    assert sock.send(b"q" * 10_000, 0.0) == 4096
    assert sock.send_space == 0
    assert sock.send(b"more", 0.0) == 0
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(2 * MSS))
    assert sock.send_space == 2 * MSS
    assert sock in core.drain_wakeups()


def test_retransmission_timeout_backs_off_and_keeps_backoff_without_a_sample() -> None:
    core = make_core(timestamps=False, tail_loss_probe=False)
    sock, peer = open_connection(core)
    sock.send(b"d" * 3000, 0.0)
    assert data_offsets(peer, peer.out()) == [(0, MSS), (MSS, MSS), (2 * MSS, 80)]
    times = []
    for _ in range(4):
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
        assert data_offsets(peer, peer.out()) == [(0, MSS)]  # one segment: cwnd is 1 MSS
        times.append(when)
    assert [round(b - a, 6) for a, b in zip([0.0, *times], times)] == [0.2, 0.4, 0.8, 1.6]
    assert core.stats()["tcp_rto_timeouts"] == 4
    peer.now = times[-1] + 0.1
    peer.inject(ACK, peer.seq(0), peer.ack_of(MSS))
    assert data_offsets(peer, peer.out()) == [(MSS, MSS), (2 * MSS, 80)]  # slow start resumes
    assert sock.srtt == 0.0  # Karn: the ACK of a retransmission is no sample
    assert core.poll_deadline() == pytest.approx(peer.now + 3.2)  # still backed off


def test_too_many_retransmissions_time_out_with_a_reset() -> None:
    core = make_core(timestamps=False, max_retries=3, tail_loss_probe=False)
    sock, peer = open_connection(core)
    sock.send(b"d" * 100, 0.0)
    peer.out()
    for expected in (0.2, 0.6, 1.4, 3.0):
        when = core.poll_deadline()
        assert when is not None
        assert when == pytest.approx(expected)
        peer.at(when)
        if expected < 3.0:
            assert data_offsets(peer, peer.out()) == [(0, 100)]
    (rst,) = peer.out()
    assert rst.flags & RST
    assert isinstance(sock.error, ConnectionTimedOut)
    assert core.stats()["tcp_sockets"] == 0


def test_fast_retransmit_on_three_dupacks_and_newreno_partial_acks() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=False)
    sock.send(b"r" * (20 * MSS), 0.0)
    assert len(peer.out()) == 10  # initial window
    peer.inject(ACK, peer.seq(0), peer.ack_of(MSS))
    sent = data_offsets(peer, peer.out())
    assert sent == [(10 * MSS, MSS), (11 * MSS, MSS)]
    for _ in range(2):
        peer.inject(ACK, peer.seq(0), peer.ack_of(MSS))
        assert data_offsets(peer, peer.out()) == []
    peer.inject(ACK, peer.seq(0), peer.ack_of(MSS))
    assert data_offsets(peer, peer.out()) == [(MSS, MSS)]  # the third dupack
    assert core.stats()["tcp_fast_retransmits"] == 1
    assert sock.cwnd == (11 * MSS) // 2 + 3 * MSS
    peer.inject(ACK, peer.seq(0), peer.ack_of(5 * MSS))  # partial: 5th segment also lost
    assert (5 * MSS, MSS) in data_offsets(peer, peer.out())
    assert core.stats()["tcp_fast_retransmits"] == 2
    peer.inject(ACK, peer.seq(0), peer.ack_of(12 * MSS))  # everything sent before recovery
    assert sock.cwnd == (11 * MSS) // 2
    assert core.stats()["tcp_rto_timeouts"] == 0


def test_sack_blocks_direct_retransmission_to_the_holes_only() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    sock.send(b"s" * (10 * MSS), 0.0)
    assert len(peer.out()) == 10
    peer.inject(ACK, peer.seq(0), peer.ack_of(MSS))
    assert peer.out() == []
    sack = peer.sack((2 * MSS, 4 * MSS), (5 * MSS, 10 * MSS))
    peer.inject(ACK, peer.seq(0), peer.ack_of(MSS), options=sack)
    assert data_offsets(peer, peer.out()) == [(MSS, MSS), (4 * MSS, MSS)]
    assert core.stats()["tcp_fast_retransmits"] == 2
    peer.inject(ACK, peer.seq(0), peer.ack_of(10 * MSS))
    assert peer.out() == []
    peer.at(5.0)
    assert peer.out() == []  # nothing left to retransmit
    assert core.stats()["tcp_rto_timeouts"] == 0


def test_a_lost_retransmission_is_detected_from_later_sacks_without_a_timeout() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    sock.send(b"s" * (30 * MSS), 0.0)
    assert len(peer.out()) == 10
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=peer.sack((MSS, 5 * MSS)))
    assert data_offsets(peer, peer.out()) == [(0, MSS)]  # segment 0 lost
    # the retransmission is lost too; the segments sent after it arrive and are SACKed
    resent_when = []
    new_data = []
    for last in range(6, 15):
        peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=peer.sack((MSS, last * MSS)))
        for offset, _ in data_offsets(peer, peer.out()):
            if offset == 0:
                resent_when.append(last)
            else:
                new_data.append(offset // MSS)
    assert new_data[:3] == [10, 11, 12]  # sent after the (lost) retransmission
    assert resent_when == [13]  # once the third of them (segment 12) is SACKed
    assert core.stats()["tcp_rto_timeouts"] == 0


def test_tail_loss_probe_then_time_based_loss_marking_beat_the_rto() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    sock.send(b"t" * 3000, 0.0)
    assert len(peer.out()) == 3  # all three are lost
    assert core.poll_deadline() == pytest.approx(0.01)  # 2 * SRTT, floored; the RTO is 0.2 s
    peer.at(0.01)
    assert data_offsets(peer, peer.out()) == [(2 * MSS, 80)]  # the probe: the last segment again
    peer.now = 0.012
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=peer.sack((2 * MSS, 3000)))
    assert data_offsets(peer, peer.out()) == [(0, MSS), (MSS, MSS)]  # overtaken, so lost
    stats = core.stats()
    assert stats["tcp_tail_loss_probes"] == 1
    assert stats["tcp_rack_losses"] == 1
    assert stats["tcp_rto_timeouts"] == 0


def test_reordering_within_the_time_window_is_not_mistaken_for_loss() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, sack=True)
    peer.now = 0.1
    sock.send(b"r" * 100, 0.1)
    peer.out()
    peer.now = 0.2
    peer.inject(ACK, peer.seq(0), peer.ack_of(100))
    assert sock.srtt == pytest.approx(0.0125)  # samples of 0 s (handshake) and 0.1 s
    sock.send(b"r" * (4 * MSS), 0.2)
    assert len(peer.out()) == 4
    peer.now = 0.205
    peer.inject(ACK, peer.seq(0), peer.ack_of(100), options=peer.sack((100 + MSS, 100 + 2 * MSS)))
    assert peer.out() == []  # one segment overtaken, but SRTT * 5/4 has not passed: maybe late
    assert core.poll_deadline() == pytest.approx(0.2 + 0.0125 * 1.25)
    peer.now = 0.21
    peer.inject(ACK, peer.seq(0), peer.ack_of(100 + 2 * MSS))  # and it was
    assert peer.out() == []
    assert core.stats()["tcp_retransmits"] == 0


def test_recovery_caused_by_reordering_is_undone_and_tolerance_raised() -> None:
    core = make_core()
    sock, peer = open_connection(core, sack=True, timestamps=True)
    mss = sock.mss
    sock.send(b"u" * (10 * mss), 0.0)
    sent = peer.out()
    assert len(sent) == 10
    original_tsval = sent[0].options.timestamp[0] if sent[0].options.timestamp else -1
    cwnd_before = sock.cwnd
    peer.now = 0.05
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=peer.sack((mss, 5 * mss)))
    assert data_offsets(peer, peer.out()) == [(0, mss)]  # looks lost: four later ones arrived
    assert sock.cwnd < cwnd_before
    peer.now = 0.06
    # ... but it was only late: the cumulative ACK echoes the original transmission's TSval
    peer.inject(ACK, peer.seq(0), peer.ack_of(10 * mss), options=TcpOptions(timestamp=(9, original_tsval)))
    assert core.stats()["tcp_spurious_recoveries"] == 1
    assert sock.cwnd >= cwnd_before
    sock.send(b"v" * (10 * mss), 0.06)
    assert len(peer.out()) == 10
    peer.now = 0.061  # within the (now widened) RACK window
    peer.inject(ACK, peer.seq(0), peer.ack_of(10 * mss), options=peer.sack((11 * mss, 15 * mss)))
    assert peer.out() == []  # four overtaking segments no longer condemn one
    assert core.stats()["tcp_fast_recoveries"] == 1


def test_zero_window_is_probed_with_backoff_until_it_opens() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"w" * 1000, 0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=0)
    sock.send(b"v" * 500, 0.0)
    assert peer.out() == []
    probes = []
    for _ in range(3):
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
        (probe,) = peer.out()
        assert probe.flags == ACK
        assert probe.payload == b""
        assert peer.rel(probe.header.seq) == 999  # SND.UNA - 1 elicits an ACK
        probes.append(when)
        peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=0)
        assert peer.out() == []
    assert [round(b - a, 6) for a, b in zip([0.0, *probes], probes)] == [0.2, 0.4, 0.8]
    assert core.stats()["tcp_window_probes"] == 3
    peer.inject(ACK, peer.seq(0), peer.ack_of(1000), window=300)
    assert data_offsets(peer, peer.out()) == [(1000, 300)]
    peer.inject(ACK, peer.seq(0), peer.ack_of(1300), window=5000)
    assert data_offsets(peer, peer.out()) == [(1300, 200)]
    assert sock.error is None


def test_keepalive_probes_then_times_out() -> None:
    core = make_core(timestamps=False, keepalive_idle=10.0, keepalive_interval=2.0, keepalive_count=3)
    sock, peer = open_connection(core)
    assert sock.keepalive
    peer.at(9.99)
    assert peer.out() == []
    peer.at(10.0)
    (probe,) = peer.out()
    assert probe.flags == ACK
    assert probe.header.seq == peer.core_iss
    assert probe.payload == b""
    peer.now = 10.5
    peer.inject(ACK, peer.seq(0), peer.ack_of(0))
    peer.at(12.0)
    assert peer.out() == []
    probes = []
    while sock.error is None:
        when = core.poll_deadline()
        assert when is not None
        peer.at(when)
        for segment in peer.out():
            probes.append((when, segment.flags))
    assert probes == [(20.5, ACK), (22.5, ACK), (24.5, ACK), (26.5, RST | ACK)]
    assert isinstance(sock.error, ConnectionTimedOut)
    assert core.stats()["tcp_keepalive_probes"] == 4


def test_keepalive_off_by_default() -> None:
    core = make_core(timestamps=False)
    sock, _peer = open_connection(core)
    assert not sock.keepalive
    assert core.poll_deadline() is None
    sock.keepalive = True
    assert core.poll_deadline() == pytest.approx(7200.0)


def test_path_mtu_reduction_resegments_data_in_flight() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"p" * (3 * MSS), 0.0)
    segments = peer.out()
    assert len(segments) == 3
    send_icmp_frag_needed(core, peer, segments[1].raw[:28], 1000)
    assert data_offsets(peer, peer.out()) == [
        (0, 960),
        (960, 500),
        (MSS, 960),
        (MSS + 960, 500),
        (2 * MSS, 960),
        (2 * MSS + 960, 500),
    ]
    assert sock.mss == 960
    assert core.stats()["tcp_pmtu_reductions"] == 1
    sock.send(b"q" * 2000, 0.0)
    assert [length for _, length in data_offsets(peer, peer.out())] == [960, 960, 80]


def test_ipv6_packet_too_big_lowers_the_mss_but_not_below_1280() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core, remote="fd00::2", mss=1440)
    sock.send(b"p" * (2 * 1440), 0.0)
    segments = peer.out()
    assert [len(s.payload) for s in segments] == [1440, 1440]
    message = Icmpv6Message(ICMPV6_PACKET_TOO_BIG, 0, mtu=1000, data=segments[0].raw[:80])
    body = emit_icmpv6(message, packed("fd00::fe"), peer.core_ip)
    core.receive_packet(emit_ip(packed("fd00::fe"), peer.core_ip, PROTO_ICMPV6, body), 0.0)
    assert sock.mss == 1280 - 60  # IPv6 links carry at least 1280 bytes (RFC 8201)
    assert [length for _, length in data_offsets(peer, peer.out())] == [1220, 220, 1220, 220]


def test_icmp_quoting_a_sequence_not_in_flight_is_ignored() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"p" * MSS, 0.0)
    (segment,) = peer.out()
    forged = bytearray(segment.raw[:28])
    forged[24:28] = (peer.ack_of(50_000)).to_bytes(4, "big")  # the quoted TCP sequence number
    send_icmp_frag_needed(core, peer, bytes(forged), 600)
    assert peer.out() == []
    assert sock.mss == MSS
    assert core.stats()["icmp_errors_ignored"] == 1


def test_half_close_keeps_receiving_after_our_fin() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"request", 0.0)
    sock.shutdown_write(0.0)
    segments = peer.out()
    assert segments[-1].flags & FIN
    assert sock.state == "FIN-WAIT-1"
    assert sock.send_space == 0
    peer.inject(ACK, peer.seq(0), peer.ack_of(8))
    assert sock.state == "FIN-WAIT-2"
    peer.inject(ACK, peer.seq(0), peer.ack_of(8), b"response " * 100)
    peer.inject(ACK | FIN, peer.seq(900), peer.ack_of(8), b"end")
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(904)
    assert sock.state == "TIME-WAIT"
    assert sock.recv(10_000) == b"response " * 100 + b"end"
    assert sock.at_eof


def test_timestamps_paws_rejects_old_segments_and_missing_timestamps() -> None:
    core = make_core()
    sock, peer = open_connection(core, timestamps=True)
    peer.ts_clock = 50_000
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"new")
    peer.ts_clock = 1_000  # an old duplicate, 49 s older
    peer.inject(ACK, peer.seq(3), peer.ack_of(0), b"old")
    (ack,) = peer.out()
    assert ack.header.ack == peer.seq(3)
    assert ack.options.timestamp is not None
    assert ack.options.timestamp[1] == 50_000
    assert core.stats()["tcp_paws_rejected"] == 1
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), options=TcpOptions(timestamp=(1_000, 0)))
    assert peer.out() == []  # a rejected pure ACK is not answered (no ACK ping-pong)
    assert core.stats()["tcp_paws_rejected"] == 2
    peer.inject(ACK, peer.seq(3), peer.ack_of(0), b"bare", options=TcpOptions())
    assert core.stats()["tcp_missing_timestamp"] == 1
    assert sock.recv(100) == b"new"


def test_data_overtaken_by_a_retransmission_is_not_rejected_by_paws() -> None:
    core = make_core()
    sock, peer = open_connection(core, timestamps=True)
    peer.ts_clock = 100
    peer.inject(ACK, peer.seq(1000), peer.ack_of(0), b"B" * 1000)  # the first segment is late
    peer.ts_clock = 400
    peer.inject(ACK, peer.seq(0), peer.ack_of(0), b"A" * 1000)  # its retransmission: TS.Recent = 400
    peer.ts_clock = 101
    peer.inject(ACK, peer.seq(2000), peer.ack_of(0), b"C" * 1000)  # sent before that retransmission
    assert sock.recv(5000) == b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    assert core.stats()["tcp_paws_rejected"] == 0


def test_rtt_is_measured_from_echoed_timestamps() -> None:
    core = make_core()
    sock, peer = open_connection(core, timestamps=True)
    sock.send(b"t" * 100, 0.0)
    peer.out()
    peer.now = 0.25
    peer.inject(ACK, peer.seq(0), peer.ack_of(100))
    assert sock.srtt == pytest.approx(0.125 * 0.25, abs=0.002)
