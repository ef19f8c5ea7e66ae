"""Opening handshakes against a hand-played peer: options, retransmission, refusal, simultaneous open."""

from __future__ import annotations

import itertools

import pytest
from tcp_harness import ACK, FIN, M32, PSH, RST, SYN, ScriptedPeer, Segment, make_core

from smolmix_core.errors import ConnectionRefused, ConnectionTimedOut
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.tcp import TcpSocket
from smolmix_core.wire import TcpOptions

PEER_ISS = 5000


def connect(core: NetCore, remote: str = "10.0.0.2") -> tuple[TcpSocket, ScriptedPeer, Segment]:
    sock = core.tcp_connect((remote, 80), 0.0)
    peer = ScriptedPeer(core, ip=remote, port=80, core_port=sock.local[1], iss=PEER_ISS)
    (syn,) = peer.out()
    return sock, peer, syn


def full_options(tsval: int = 100, tsecr: int = 0) -> TcpOptions:
    return TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamp=(tsval, tsecr))


def test_active_open_sends_syn_with_all_options_and_completes() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    assert syn.flags == SYN
    assert syn.header.ack == 0
    assert syn.header.window == 65535
    assert syn.options.mss == 1460
    assert syn.options.window_scale == 4  # 65535 << 3 falls 8 bytes short of 512 KiB
    assert syn.options.sack_permitted
    assert syn.options.timestamp is not None
    assert syn.options.timestamp[1] == 0
    assert sock.state == "SYN-SENT"
    assert not sock.established
    iss = syn.header.seq
    tsval = syn.options.timestamp[0]
    peer.now = 0.05
    peer.inject(SYN | ACK, PEER_ISS, iss + 1, options=full_options(777, tsval), window=1000)
    (ack,) = peer.out()
    assert ack.flags == ACK
    assert ack.header.seq == iss + 1
    assert ack.header.ack == PEER_ISS + 1
    assert ack.options.timestamp is not None
    assert ack.options.timestamp[1] == 777
    assert ack.header.window == (512 * 1024) >> 4  # scaled window from now on
    assert sock.state == "ESTABLISHED"
    assert sock.established
    assert sock.mss == 1460 - 12  # timestamps take 12 bytes of every segment
    assert sock.srtt == pytest.approx(0.05, abs=0.002)
    sock.send(b"x" * 5000, peer.now)
    (first,) = peer.out()
    assert len(first.payload) == 1000  # the window of a SYN-ACK is never scaled
    assert first.header.seq == iss + 1
    peer.inject(ACK, PEER_ISS + 1, iss + 1, window=1000, options=TcpOptions(timestamp=(778, tsval)))
    assert [len(s.payload) for s in peer.out()] == [1448, 1448, 1104]  # now 1000 << 7


@pytest.mark.parametrize(
    ("wscale", "ts", "sack"), [(False, False, False), (True, False, True), (False, True, False)]
)
def test_options_are_negotiated_off_when_either_side_lacks_them(wscale: bool, ts: bool, sack: bool) -> None:
    core = make_core(window_scaling=wscale, timestamps=ts, sack=sack)
    sock, peer, syn = connect(core)
    assert (syn.options.window_scale is not None) == wscale
    assert (syn.options.timestamp is not None) == ts
    assert syn.options.sack_permitted == sack
    peer.inject(SYN | ACK, PEER_ISS, syn.header.seq + 1, options=TcpOptions(mss=1000), window=4000)
    (ack,) = peer.out()
    assert sock.established
    assert ack.options.timestamp is None
    assert not ack.options.sack_blocks
    assert sock.mss == 1000  # the peer's MSS, no timestamp overhead
    assert ack.header.window == 65535  # unscaled: the peer offered no window scale
    sock.send(b"y" * 4500, 0.0)
    assert [len(s.payload) for s in peer.out()] == [1000] * 4  # 4000-byte unscaled window


def test_passive_open_answers_syn_ack_mirroring_offered_options() -> None:
    core = make_core()
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core, iss=PEER_ISS)
    peer.inject(SYN, PEER_ISS, options=TcpOptions(mss=1400, window_scale=2, timestamp=(9, 0)))
    (synack,) = peer.out()
    assert synack.flags == SYN | ACK
    assert synack.header.ack == PEER_ISS + 1
    assert synack.options.mss == 1460
    assert synack.options.window_scale == 4
    assert not synack.options.sack_permitted  # the peer did not offer SACK
    assert synack.options.timestamp is not None
    assert synack.options.timestamp[1] == 9
    assert listener.accept() is None  # not before the handshake completes
    iss = synack.header.seq
    tsval = synack.options.timestamp[0]
    peer.inject(ACK, PEER_ISS + 1, iss + 1, window=100, options=TcpOptions(timestamp=(10, tsval)))
    assert peer.out() == []
    sock = listener.accept()
    assert sock is not None
    assert sock.state == "ESTABLISHED"
    assert sock.remote == ("10.0.0.2", 40000)
    assert sock.local == ("10.0.0.1", 80)
    assert sock.mss == 1400 - 12
    sock.send(b"z" * 1000, 0.0)
    (data,) = peer.out()
    assert len(data.payload) == 400  # window 100 << 2


def test_passive_open_over_ipv6() -> None:
    core = make_core()
    listener = core.tcp_listen(("::", 80))
    peer = ScriptedPeer(core, ip="fd00::2", iss=PEER_ISS)
    peer.inject(SYN, PEER_ISS, options=TcpOptions(mss=1440))
    (synack,) = peer.out()
    assert synack.options.mss == 1440  # 1500 - 40 - 20
    peer.inject(ACK, PEER_ISS + 1, synack.header.seq + 1)
    sock = listener.accept()
    assert sock is not None
    assert sock.local == ("fd00::1", 80)
    assert sock.remote == ("fd00::2", 40000)
    assert sock.mss == 1440


def test_syn_retransmissions_back_off_1_2_4_8_and_time_out() -> None:
    core = make_core(syn_retries=4)
    sock, peer, syn = connect(core)
    sent_at = [0.0]
    while sock.state == "SYN-SENT":
        deadline = core.poll_deadline()
        assert deadline is not None
        peer.now = deadline
        core.handle_timeouts(deadline)
        for segment in peer.out():
            assert segment.flags == SYN
            assert segment.header.seq == syn.header.seq
            sent_at.append(deadline)
        # nothing is re-sent early, even when the core is poked between deadlines
        core.handle_timeouts(deadline + 0.5)
        assert peer.out() == []
    assert [b - a for a, b in itertools.pairwise(sent_at)] == [1.0, 2.0, 4.0, 8.0]
    assert peer.now == pytest.approx(31.0)  # the last wait (16 s) ends in failure
    assert isinstance(sock.error, ConnectionTimedOut)
    assert sock.readable
    assert core.stats()["tcp_syn_retransmits"] == 4
    assert core.stats()["tcp_sockets"] == 0


def test_karn_no_rtt_sample_from_a_retransmitted_syn_and_rto_floor_of_3s() -> None:
    core = make_core(timestamps=False)
    sock, peer, syn = connect(core)
    peer.advance(1.0)
    assert [s.flags for s in peer.out()] == [SYN]
    peer.now = 1.2
    peer.inject(SYN | ACK, PEER_ISS, syn.header.seq + 1, options=TcpOptions(mss=1460))
    peer.out()
    assert sock.established
    assert sock.srtt is None  # ambiguous: which SYN did it answer?
    assert sock.rto == 3.0  # RFC 6298 5.7


def test_syn_ack_answer_to_a_retransmitted_syn_is_measured_with_timestamps() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    peer.advance(1.0)
    (again,) = peer.out()
    assert again.options.timestamp is not None
    peer.now = 1.3
    options = full_options(5, again.options.timestamp[0])
    peer.inject(SYN | ACK, PEER_ISS, syn.header.seq + 1, options=options)
    assert sock.established
    assert sock.srtt == pytest.approx(0.3, abs=0.002)  # the echoed TSval names the transmission


def test_rst_answering_syn_refuses_the_connection() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    peer.inject(RST | ACK, 0, syn.header.seq + 1)
    assert isinstance(sock.error, ConnectionRefused)
    assert sock.state == "CLOSED"
    assert sock.readable
    assert peer.out() == []
    with pytest.raises(ConnectionRefused):
        sock.send(b"x", 0.0)


def test_rst_without_acceptable_ack_in_syn_sent_is_ignored() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    peer.inject(RST | ACK, 0, syn.header.seq + 7)
    peer.inject(RST, 0)
    assert sock.state == "SYN-SENT"
    assert sock.error is None
    assert peer.out() == []


def test_syn_ack_with_unacceptable_ack_gets_a_reset() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    peer.inject(SYN | ACK, PEER_ISS, syn.header.seq + 99)
    (rst,) = peer.out()
    assert rst.flags == RST
    assert rst.header.seq == (syn.header.seq + 99) & M32
    assert sock.state == "SYN-SENT"


def test_simultaneous_open() -> None:
    core = make_core()
    sock, peer, syn = connect(core)
    iss = syn.header.seq
    peer.inject(SYN, PEER_ISS, options=full_options(50))
    (synack,) = peer.out()
    assert synack.flags == SYN | ACK
    assert synack.header.seq == iss
    assert synack.header.ack == PEER_ISS + 1
    assert sock.state == "SYN-RECEIVED"
    tsval = synack.options.timestamp[0] if synack.options.timestamp else 0
    peer.inject(SYN | ACK, PEER_ISS, iss + 1, options=full_options(51, tsval))
    assert sock.state == "ESTABLISHED"
    (ack,) = peer.out()
    assert ack.flags == ACK
    assert ack.header.ack == PEER_ISS + 1
    assert ack.header.seq == iss + 1
    sock.send(b"hello", 0.0)
    (data,) = peer.out()
    assert data.payload == b"hello"


def test_lost_syn_ack_is_resent_when_the_peer_repeats_its_syn() -> None:
    core = make_core()
    core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core, iss=PEER_ISS)
    peer.inject(SYN, PEER_ISS)
    (first,) = peer.out()
    peer.inject(SYN, PEER_ISS)
    (second,) = peer.out()
    assert second.flags == SYN | ACK
    assert second.header.seq == first.header.seq
    assert core.stats()["tcp_sockets"] == 1


def test_syn_ack_retransmission_and_half_open_timeout() -> None:
    core = make_core(synack_retries=2)
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core, iss=PEER_ISS)
    peer.inject(SYN, PEER_ISS)
    peer.out()
    peer.advance(1.0)
    assert [s.flags for s in peer.out()] == [SYN | ACK]
    peer.advance(2.0)
    assert [s.flags for s in peer.out()] == [SYN | ACK]
    peer.advance(4.0)
    assert peer.out() == []
    assert core.stats()["tcp_syn_received_timeouts"] == 1
    assert core.stats()["tcp_sockets"] == 0
    assert listener.accept() is None


def test_data_and_fin_on_the_syn_ack_are_delivered() -> None:
    core = make_core(timestamps=False)
    sock, peer, syn = connect(core)
    peer.inject(SYN | ACK | FIN, PEER_ISS, syn.header.seq + 1, b"early")
    (ack,) = peer.out()
    assert ack.header.ack == PEER_ISS + 1 + 5 + 1
    assert sock.recv(100) == b"early"
    assert sock.at_eof
    assert sock.state == "CLOSE-WAIT"


def test_listen_port_zero_and_address_checks() -> None:
    core = make_core()
    listener = core.tcp_listen(("10.0.0.1", 0))
    assert 49152 <= listener.local[1] <= 65535
    from smolmix_core.errors import AddressInUse, AddressNotAvailable

    with pytest.raises(AddressInUse):
        core.tcp_listen(("0.0.0.0", listener.local[1]))
    with pytest.raises(AddressNotAvailable):
        core.tcp_listen(("10.9.9.9", 80))
    with pytest.raises(AddressNotAvailable):
        core.tcp_listen_any()  # needs forward_all


def test_ephemeral_ports_are_random_distinct_and_reproducible() -> None:
    def ports(seed: int) -> list[int]:
        core = make_core(seed=seed)
        return [core.tcp_connect(("10.0.0.2", 80), 0.0).local[1] for _ in range(50)]

    first = ports(7)
    assert len(set(first)) == 50
    assert first == ports(7)
    assert first != ports(8)
    assert first != sorted(first)


def test_initial_sequence_numbers_differ_per_connection_and_advance_with_time() -> None:
    core = make_core()
    isns = []
    for now in (0.0, 0.0, 10.0):
        sock = core.tcp_connect(("10.0.0.2", 80), now)
        peer = ScriptedPeer(core, port=80, core_port=sock.local[1])
        isns.append(peer.out()[0].header.seq)
    assert len(set(isns)) == 3


def test_data_and_fin_queued_before_the_handshake_go_out_once_established() -> None:
    core = make_core(timestamps=False)
    sock, peer, syn = connect(core)
    assert sock.send(b"early request", 0.0) == 13
    sock.shutdown_write(0.0)
    assert peer.out() == []  # nothing but the SYN before the handshake
    peer.inject(SYN | ACK, PEER_ISS, syn.header.seq + 1, options=TcpOptions(mss=1460))
    (segment,) = peer.out()
    assert segment.payload == b"early request"
    assert segment.flags == ACK | PSH | FIN
    assert segment.header.ack == PEER_ISS + 1
    assert sock.state == "FIN-WAIT-1"
