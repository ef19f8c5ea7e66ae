"""Properties of the pieces under the state machine: reassembly, scoreboard, RTT, wraparound."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_harness import ACK, ScriptedPeer, make_core

from smolmix_core.netstack.rtt import RttEstimator
from smolmix_core.netstack.scoreboard import Scoreboard
from smolmix_core.netstack.tcp_buffers import ReceiveBuffer
from smolmix_core.wire import TcpOptions

STREAM = bytes(random.Random(1).randbytes(4000))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3999), st.integers(1, 600)), min_size=1, max_size=60))
def test_reassembly_of_any_segment_order_yields_the_stream(pieces: list[tuple[int, int]]) -> None:
    buffer = ReceiveBuffer(max_ranges=1000)
    rcv_nxt = 0
    for start, length in [*pieces, (0, 4000)]:
        rcv_nxt = buffer.add(start, STREAM[start : start + length], rcv_nxt, 4000)
        assert bytes(buffer.data) == STREAM[:rcv_nxt]
        held = sum(island.end - island.start for island in buffer.islands)
        assert held == buffer.out_of_order_bytes
        ends = [(i.start, i.end) for i in buffer.islands]
        assert all(a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(ends))
        assert all(rcv_nxt < s for s, _ in ends)
        for island in buffer.islands:
            assert bytes(island.buf) == STREAM[island.start : island.end]
    assert rcv_nxt == 4000
    assert not buffer.islands


def test_reassembly_respects_the_window_and_the_island_limit() -> None:
    buffer = ReceiveBuffer(max_ranges=2)
    assert buffer.add(10, b"x" * 10, 0, 15) == 0
    assert buffer.out_of_order_bytes == 5  # clipped at the window's edge
    buffer.add(30, b"y", 0, 100)
    buffer.add(50, b"z", 0, 100)  # a third island: refused
    assert buffer.refused == 1
    assert [(i.start, i.end) for i in buffer.islands] == [(10, 15), (30, 31)]
    assert buffer.sack_blocks(4) == [(30, 31), (10, 15)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_scoreboard_pipe_always_matches_its_definition(data: st.DataObject) -> None:
    board = Scoreboard()
    size = 100
    sent = 0
    acked = 0
    for _ in range(data.draw(st.integers(1, 40))):
        action = data.draw(st.sampled_from(["send", "ack", "sack", "detect", "rexmit", "rto", "split"]))
        if action == "send":
            board.record(sent, sent + size, 0.0)
            sent += size
        elif action == "ack" and sent > acked:
            acked = data.draw(st.integers(acked, sent))
            board.ack(acked)
        elif action == "sack" and sent > acked:
            left = data.draw(st.integers(acked, sent - 1))
            right = data.draw(st.integers(left + 1, sent))
            board.begin_ack()
            board.sack([(left, right)])
        elif action == "detect":
            board.detect_losses(3)
        elif action == "rexmit":
            lost = board.peek_lost()
            if lost is not None:
                board.retransmitted(lost, 1.0)
        elif action == "rto":
            board.mark_all_lost(forget_sacks=data.draw(st.booleans()))
        elif action == "split":
            lost = board.peek_lost()
            if lost is not None and lost.end - lost.start > 30:
                board.split(lost, 30)
        live = board.segs[board._head :]
        assert board.pipe == sum(s.end - s.start for s in live if s.in_pipe)
        assert board.sacked_bytes == sum(s.end - s.start for s in live if s.sacked)
        assert all(not (s.in_pipe and (s.sacked or s.lost)) for s in live)
        assert [s.start for s in live] == sorted(s.start for s in live)
        assert all(a.end == b.start for a, b in itertools.pairwise(live))


def test_rto_estimator_follows_rfc_6298() -> None:
    rtt = RttEstimator(initial_rto=1.0, min_rto=0.2, max_rto=60.0)
    assert rtt.rto == 1.0
    rtt.on_timeout()
    rtt.on_timeout()
    assert rtt.rto == 4.0
    rtt.sample(0.5)
    assert rtt.srtt == 0.5
    assert rtt.rto == pytest.approx(0.5 + 4 * 0.25)  # backoff cleared by a sample
    rtt.sample(1.0)
    assert rtt.srtt == pytest.approx(0.5625)
    assert rtt.rttvar == pytest.approx(0.3125)
    for _ in range(20):
        rtt.on_timeout()
    assert rtt.rto == 60.0


def test_sequence_numbers_wrap_around_2_to_the_32() -> None:
    core = make_core(timestamps=False)

    class FixedIsn:
        def isn(self, *args: object) -> int:
            return 0xFFFF_FF00

    core._isn = FixedIsn()  # type: ignore[assignment]
    peer_iss = 0xFFFF_FFF0
    sock = core.tcp_connect(("10.0.0.2", 80), 0.0)
    peer = ScriptedPeer(core, port=80, core_port=sock.local[1], iss=peer_iss)
    (syn,) = peer.out()
    assert syn.header.seq == 0xFFFF_FF00
    peer.core_iss = syn.header.seq
    peer.inject(0x12, peer_iss, syn.header.seq + 1, options=TcpOptions(mss=1000))
    peer.out()
    sock.send(b"a" * 3000, 0.0)
    segments = peer.out()
    assert [s.header.seq for s in segments] == [0xFFFF_FF01, 745, 1745]  # across zero
    peer.inject(ACK, peer.seq(0), peer.ack_of(3000), b"b" * 100)  # peer data crosses zero too
    assert sock.recv(1000) == b"b" * 100
    assert sock.in_flight == 0
    assert sock.send_space == 512 * 1024
