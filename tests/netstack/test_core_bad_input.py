"""Bad input is dropped and counted, never raised, and never disturbs another connection's data."""

from __future__ import annotations

import gc
import random
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tcp_harness import ACK, FIN, RST, SYN, ScriptedPeer, make_core, open_connection, packed

from smolmix_core.netstack.config import StackConfig, TcpConfig
from smolmix_core.netstack.core import NetCore
from smolmix_core.wire import PROTO_TCP, PROTO_UDP, TcpHeader, emit_ip, emit_tcp

CORE = packed("10.0.0.1")
PEER = packed("10.0.0.2")


def a_segment(dst: bytes = CORE, port: int = 80) -> bytes:
    header = TcpHeader(40000, port, 1, 0, SYN, 65535)
    return emit_ip(PEER, dst, PROTO_TCP, emit_tcp(header, b"", PEER, dst))


def test_bad_ip_header_checksum_is_counted() -> None:
    core = make_core()
    packet = bytearray(a_segment())
    packet[10] ^= 0xFF
    core.receive_packet(bytes(packet), 0.0)
    assert core.stats()["bad_checksum"] == 1
    assert core.drain_transmit() == []


def test_bad_tcp_checksum_is_counted() -> None:
    core = make_core()
    packet = bytearray(a_segment())
    packet[-1] ^= 0x01  # last byte of the TCP header: urgent pointer
    core.receive_packet(bytes(packet), 0.0)
    assert core.stats()["bad_checksum"] == 1
    assert core.stats()["tcp_no_socket"] == 0


def test_truncated_and_absurd_lengths_are_counted_as_malformed() -> None:
    core = make_core()
    good = a_segment()
    samples = [
        b"",
        b"\x45",
        good[:19],  # shorter than an IPv4 header
        good[:30],  # total length says 40
        b"\x60" + bytes(39),  # IPv6 header with payload length 0 and next header 0 ...
        b"\x70" + bytes(40),  # IP version 7
    ]
    absurd = bytearray(good)
    absurd[32] = 0xF0  # TCP data offset of 60 bytes in a 20-byte segment
    absurd[36:38] = b"\x00\x00"  # checksum is checked after the offset, so it need not match
    samples.append(bytes(absurd))
    for sample in samples:
        core.receive_packet(sample, 0.0)
    stats = core.stats()
    assert stats["malformed"] + stats["unknown_protocol"] == len(samples)
    assert stats["malformed"] >= len(samples) - 1
    assert stats["internal_errors"] == 0


def test_fragments_are_dropped_and_counted() -> None:
    core = make_core()
    packet = bytearray(a_segment())
    packet[6] |= 0x20  # more fragments
    packet[10:12] = b"\x00\x00"
    total = sum(int.from_bytes(packet[i : i + 2], "big") for i in range(0, 20, 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    packet[10:12] = (0xFFFF - total).to_bytes(2, "big")
    core.receive_packet(bytes(packet), 0.0)
    assert core.stats()["fragments"] == 1
    assert core.drain_transmit() == []


def test_packets_for_other_addresses_and_unknown_protocols_are_counted() -> None:
    core = make_core()
    core.receive_packet(a_segment(dst=packed("10.9.9.9")), 0.0)
    core.receive_packet(emit_ip(PEER, CORE, 47, b"gre payload"), 0.0)
    stats = core.stats()
    assert stats["not_for_us"] == 1
    assert stats["unknown_protocol"] == 1
    assert core.drain_transmit() == []


def test_segments_to_closed_ports_get_rate_limited_resets() -> None:
    core = NetCore(StackConfig(seed=1, reply_rate_limit=5))
    peer = ScriptedPeer(core, core_port=81)
    for _ in range(8):
        peer.inject(SYN, 1000)
    resets = peer.out()
    assert len(resets) == 5
    assert resets[0].flags == RST | ACK
    assert resets[0].header.ack == 1001
    assert core.stats()["tcp_no_socket"] == 8
    assert core.stats()["replies_rate_limited"] == 3
    peer.now = 1.0
    peer.inject(ACK, 1000, 777)
    (rst,) = peer.out()
    assert rst.flags == RST
    assert rst.header.seq == 777
    peer.inject(RST, 1000)
    assert peer.out() == []  # never answer a RST


def test_junk_blind_resets_and_out_of_window_data_leave_the_stream_intact() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    rng = random.Random(5)
    stream = rng.randbytes(20_000)
    received = bytearray()
    for offset in range(0, len(stream), 1000):
        chunk = stream[offset : offset + 1000]
        bad = bytearray(peer.packet(ACK, peer.seq(offset), peer.ack_of(0), bytes(1000)))
        bad[-1] ^= 0x55  # right place, zeroed data, broken checksum
        core.receive_packet(bytes(bad), peer.now)
        peer.inject(ACK, peer.seq(offset + 700_000), peer.ack_of(0), b"X" * 1000)  # out of window
        peer.inject(ACK, peer.seq(offset - 70_000), peer.ack_of(0), b"Y" * 1000)  # long past
        peer.inject(RST, peer.seq(offset + 5000))  # blind, in window
        peer.inject(SYN, peer.seq(offset + 5000))  # blind SYN
        peer.inject(ACK, peer.seq(offset), peer.ack_of(0), b"Z" * 10, src_port=40001)  # other flow
        core.receive_packet(rng.randbytes(rng.randrange(1, 80)), peer.now)
        peer.inject(ACK, peer.seq(offset), peer.ack_of(0), chunk)
        received += sock.recv(1 << 16)
        peer.out()
        peer.now += 1.0
    assert bytes(received) == stream
    assert sock.state == "ESTABLISHED"
    assert sock.error is None
    stats = core.stats()
    assert stats["bad_checksum"] == 20
    assert stats["tcp_out_of_window"] >= 40
    assert stats["tcp_blind_rst"] == 20
    assert stats["tcp_blind_syn"] == 20
    assert stats["internal_errors"] == 0


def test_syn_flood_beyond_the_backlog_is_dropped_and_memory_stays_bounded() -> None:
    core = NetCore(StackConfig(seed=1, syn_backlog=16, reply_rate_limit=1e9, tcp=TcpConfig(synack_retries=1)))
    listener = core.tcp_listen(("0.0.0.0", 80))
    peer = ScriptedPeer(core)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for port in range(1, 2001):
        peer.inject(SYN, port * 7919, src_port=port)
    core.drain_transmit()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    stats = core.stats()
    assert stats["tcp_syn_backlog_drops"] == 2000 - 16
    assert stats["tcp_sockets"] == 16
    assert grown < 16 * 20 * 1024
    peer.advance(1.0)
    assert len(peer.out()) == 16  # one SYN-ACK retransmission each
    peer.advance(2.0)
    assert peer.out() == []
    assert core.stats()["tcp_sockets"] == 0  # half-open entries time out
    assert core.stats()["tcp_syn_received_timeouts"] == 16
    peer.inject(SYN, 1, src_port=5)  # the listener works again
    assert [s.flags for s in peer.out()] == [SYN | ACK]
    assert listener.accept() is None


def test_accept_backlog_full_drops_syns_and_leaves_handshakes_pending() -> None:
    core = NetCore(StackConfig(seed=1, accept_backlog=2))
    listener = core.tcp_listen(("0.0.0.0", 80))
    for port in (1, 2, 3):
        peer = ScriptedPeer(core, port=port)
        peer.inject(SYN, 100)
        segments = peer.out()
        if port < 3:
            (synack,) = segments
            peer.inject(ACK, 101, synack.header.seq + 1)
        else:
            assert segments == []
    assert core.stats()["tcp_accept_backlog_drops"] == 1
    assert listener.accept() is not None
    assert listener.accept() is not None
    assert listener.accept() is None


def test_idle_connections_cost_well_under_20_kib_each() -> None:
    core = make_core(timestamps=True)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sockets = []
    for index in range(200):
        sock = core.tcp_connect(("10.0.0.2", 80), 0.0)
        peer = ScriptedPeer(core, port=80, core_port=sock.local[1])
        (syn,) = peer.out()
        peer.inject(SYN | ACK, 1000, syn.header.seq + 1)
        peer.out()
        sock.send(b"GET / HTTP/1.1\r\n\r\n", 0.0)
        peer.inject(ACK, 1001, syn.header.seq + 19, b"HTTP/1.1 200 OK\r\n\r\n")
        sock.recv(100)
        peer.out()
        sockets.append(sock)
        assert sock.state == "ESTABLISHED", index
    gc.collect()
    per_connection = (tracemalloc.get_traced_memory()[0] - before) / len(sockets)
    tracemalloc.stop()
    assert per_connection < 20 * 1024
    assert per_connection < 8 * 1024  # what we actually expect: no buffers held while idle


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120), st.integers(0, 3))
def test_arbitrary_bytes_never_raise(data: bytes, prefix: int) -> None:
    core = make_core()
    core.tcp_listen(("0.0.0.0", 80))
    core.udp_bind(("0.0.0.0", 53))
    headers = [b"", b"\x45\x00", b"\x60\x00\x00\x00", a_segment()[:20]]
    core.receive_packet(headers[prefix] + data, 0.0)
    core.handle_timeouts(100.0)
    core.drain_transmit()
    assert core.stats()["internal_errors"] == 0


def _mutation(packet: bytes, rng: random.Random) -> bytes:
    """One corrupted byte: the Internet checksum always catches that (two bytes can cancel out)."""
    data = bytearray(packet)
    data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    return bytes(data)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_mutated_valid_packets_never_raise_or_corrupt_a_live_stream(seed: int) -> None:
    rng = random.Random(seed)
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    originals = [
        peer.packet(ACK, peer.seq(0), peer.ack_of(0), b"data" * 10),
        peer.packet(ACK | FIN, peer.seq(0), peer.ack_of(0)),
        peer.packet(RST, peer.seq(0)),
        emit_ip(PEER, CORE, PROTO_UDP, bytes(12)),
    ]
    for _ in range(10):
        core.receive_packet(_mutation(rng.choice(originals), rng), peer.now)
    received = sock.recv(100)
    if sock.error is None:
        assert received in (b"", b"data" * 10)
    assert core.stats()["internal_errors"] == 0
