"""Endings: RST in every state, RFC 5961 protections, simultaneous close, TIME-WAIT, lingering close."""

from __future__ import annotations

import pytest
from tcp_harness import ACK, FIN, RST, SYN, ScriptedPeer, make_core, open_connection

from smolmix_core.errors import ConnectionAborted, ConnectionReset, NetstackError
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.tcp import TcpSocket


def drive_to(state: str) -> tuple[NetCore, TcpSocket, ScriptedPeer, int]:
    """A client connection in ``state``; returns the peer's next data offset too."""
    core = make_core(timestamps=False, time_wait=10.0)
    sock, peer = open_connection(core)
    peer_next = 0
    if state in ("FIN-WAIT-1", "FIN-WAIT-2", "CLOSING", "TIME-WAIT"):
        sock.shutdown_write(0.0)
        if state in ("FIN-WAIT-2", "TIME-WAIT"):
            peer.inject(ACK, peer.seq(0), peer.ack_of(1))
        if state in ("CLOSING", "TIME-WAIT"):
            peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(1 if state == "TIME-WAIT" else 0))
            peer_next = 1
    elif state in ("CLOSE-WAIT", "LAST-ACK"):
        peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(0))
        peer_next = 1
        if state == "LAST-ACK":
            sock.close(0.0)
    peer.out()
    assert sock.state == state
    return core, sock, peer, peer_next


STATES = ["ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"]


@pytest.mark.parametrize("state", STATES)
def test_exact_rst_closes_in_every_synchronized_state(state: str) -> None:
    core, sock, peer, peer_next = drive_to(state)
    peer.inject(RST, peer.seq(peer_next))
    assert peer.out() == []
    assert sock.state == "CLOSED"
    if state in ("ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2", "CLOSE-WAIT"):
        assert isinstance(sock.error, ConnectionReset)
    else:
        assert sock.error is None
    assert core.stats()["tcp_sockets"] == 0
    assert core.stats()["tcp_resets_received"] == 1


@pytest.mark.parametrize("state", STATES)
def test_in_window_rst_off_the_exact_sequence_gets_a_challenge_ack(state: str) -> None:
    core, sock, peer, peer_next = drive_to(state)
    peer.inject(RST, peer.seq(peer_next + 1000))
    (challenge,) = peer.out()
    assert challenge.flags == ACK
    assert challenge.header.ack == peer.seq(peer_next)
    assert sock.state == state
    assert sock.error is None
    assert core.stats()["tcp_blind_rst"] == 1
    assert core.stats()["tcp_challenge_acks"] == 1


def test_rst_outside_the_window_is_ignored_silently() -> None:
    core, sock, peer, _ = drive_to("ESTABLISHED")
    peer.inject(RST, peer.seq(10_000_000))
    peer.inject(RST, peer.seq(-5))
    assert peer.out() == []
    assert sock.state == "ESTABLISHED"
    assert core.stats()["tcp_rst_out_of_window"] == 2


@pytest.mark.parametrize("offset", [0, 500, -1])
def test_syn_on_an_established_connection_gets_a_challenge_ack(offset: int) -> None:
    _core, sock, peer, _ = drive_to("ESTABLISHED")
    peer.inject(SYN, peer.seq(offset))
    (reply,) = peer.out()
    assert reply.flags == ACK
    assert reply.header.ack == peer.seq(0)
    assert sock.state == "ESTABLISHED"
    assert sock.error is None


def test_challenge_acks_are_rate_limited_per_connection() -> None:
    core, sock, peer, _ = drive_to("ESTABLISHED")
    for _ in range(12):
        peer.inject(RST, peer.seq(100))
    assert len(peer.out()) == 10
    assert core.stats()["tcp_challenge_acks_suppressed"] == 2
    peer.now = 1.0
    peer.inject(RST, peer.seq(100))
    assert len(peer.out()) == 1
    assert sock.state == "ESTABLISHED"


def test_ack_of_unsent_data_is_answered_and_dropped() -> None:
    core, sock, peer, _ = drive_to("ESTABLISHED")
    sock.send(b"x" * 100, 0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(5000), b"payload")
    (reply,) = peer.out()
    assert reply.header.ack == peer.seq(0)  # the payload was not taken
    assert sock.recv(100) == b""
    assert core.stats()["tcp_ack_unsent"] == 1


def test_ack_far_below_the_window_gets_a_challenge_ack() -> None:
    core, sock, peer, _ = drive_to("ESTABLISHED")
    sock.send(b"x" * 80_000, 0.0)
    for acked in range(0, 80_001, 10_000):
        peer.inject(ACK, peer.seq(0), peer.ack_of(acked))
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(80_000 - 70_000), b"data")
    (reply,) = peer.out()
    assert reply.header.ack == peer.seq(0)
    assert core.stats()["tcp_ack_too_old"] == 1


def test_rst_on_a_half_open_passive_connection_leaves_the_listener_working() -> None:
    core = make_core(timestamps=False)
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core)
    peer.inject(SYN, peer.iss)
    (synack,) = peer.out()
    peer.inject(RST, peer.seq(0))
    assert core.stats()["tcp_sockets"] == 0
    assert listener.accept() is None
    peer.inject(SYN, peer.iss)
    (again,) = peer.out()
    assert again.flags == SYN | ACK
    peer.inject(ACK, peer.seq(0), again.header.seq + 1)
    assert listener.accept() is not None
    assert synack.flags == SYN | ACK


def test_simultaneous_close_goes_through_closing_to_time_wait() -> None:
    _core, sock, peer, _ = drive_to("ESTABLISHED")
    sock.shutdown_write(0.0)
    (fin,) = peer.out()
    assert fin.flags == ACK | FIN
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(0))  # crosses ours
    (ack,) = peer.out()
    assert ack.flags == ACK
    assert ack.header.ack == peer.seq(1)
    assert sock.state == "CLOSING"
    peer.inject(ACK, peer.seq(1), peer.ack_of(1))
    assert sock.state == "TIME-WAIT"
    assert sock.at_eof


def test_time_wait_lasts_2msl_re_acks_a_retransmitted_fin_and_expires() -> None:
    core, sock, peer, _ = drive_to("TIME-WAIT")
    assert core.poll_deadline() == pytest.approx(10.0)
    peer.at(5.0)
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(1))  # our last ACK was lost
    (ack,) = peer.out()
    assert ack.flags == ACK
    assert ack.header.ack == peer.seq(1)
    assert core.poll_deadline() == pytest.approx(15.0)  # restarted
    peer.at(14.9)
    assert sock.state == "TIME-WAIT"
    peer.at(15.0)
    assert sock.state == "CLOSED"
    assert sock.error is None
    assert core.stats()["tcp_sockets"] == 0
    peer.inject(ACK, peer.seq(1), peer.ack_of(1))
    (rst,) = peer.out()  # the connection is gone: answered like any unknown segment
    assert rst.flags == RST


def test_new_syn_may_reuse_a_time_wait_connection() -> None:
    core = make_core(timestamps=False)
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core)
    peer.inject(SYN, peer.iss)
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
    peer.inject(SYN, peer.iss + 100_000)
    (fresh,) = peer.out()
    assert fresh.flags == SYN | ACK
    assert fresh.header.ack == peer.iss + 100_001
    assert core.stats()["tcp_time_wait_reused"] == 1


def test_orphaned_fin_wait_2_times_out() -> None:
    core = make_core(timestamps=False, fin_wait2_timeout=30.0)
    sock, peer = open_connection(core)
    sock.close(0.0)
    peer.out()
    peer.inject(ACK, peer.seq(0), peer.ack_of(1))
    assert sock.state == "FIN-WAIT-2"
    peer.at(29.0)
    assert peer.out() == []
    peer.at(30.0)
    (rst,) = peer.out()
    assert rst.flags & RST
    assert core.stats()["tcp_fin_wait2_timeouts"] == 1
    assert core.stats()["tcp_sockets"] == 0


def test_close_lingers_until_queued_data_and_fin_are_delivered() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    payload = bytes(range(256)) * 200
    assert sock.send(payload, 0.0) == len(payload)
    sock.close(0.0)
    received = bytearray()
    fin_seen = False
    for _ in range(100):
        segments = peer.out()
        for segment in segments:
            received += segment.payload
            fin_seen = fin_seen or bool(segment.flags & FIN)
        if fin_seen:
            break
        peer.inject(ACK, peer.seq(0), peer.ack_of(len(received)))
    assert bytes(received) == payload
    assert fin_seen
    peer.inject(ACK | FIN, peer.seq(0), peer.ack_of(len(payload) + 1))
    assert sock.state == "TIME-WAIT"


def test_abort_sends_rst_and_reports_connection_aborted() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"abc", 0.0)
    peer.out()
    sock.abort(0.0)
    (rst,) = peer.out()
    assert rst.flags & RST
    assert peer.rel(rst.header.seq) == 3
    assert isinstance(sock.error, ConnectionAborted)
    assert core.stats()["tcp_sockets"] == 0
    with pytest.raises(ConnectionAborted):
        sock.send(b"more", 0.0)


def test_shutdown_resets_everything_and_reports_stack_closed() -> None:
    from smolmix_core.errors import StackClosed

    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    listener = core.tcp_listen(("0.0.0.0", 8080))
    udp = core.udp_bind()
    core.shutdown(1.0)
    assert [s.flags & RST for s in peer.out()] == [RST]
    assert isinstance(sock.error, StackClosed)
    assert isinstance(listener.error, StackClosed)
    assert isinstance(udp.error, StackClosed)
    with pytest.raises(StackClosed):
        core.tcp_connect(("10.0.0.2", 80), 1.0)
    with pytest.raises(NetstackError):
        udp.send_to(b"x", ("10.0.0.2", 53), 1.0)
    assert core.poll_deadline() is None
