"""Tiny MTUs: no segment of any kind ever exceeds the MTU (RFC 9293 3.7.1, RFC 6691).

Options come out of the data: a SYN offers only what fits, timestamps shrink the MSS, SACK
blocks are cut to the room a segment has left, and ICMP errors quote only what fits. Checked
down to IPv4's 68-byte minimum, at IPv6's 1280 and below it, against a lossy, reordering link
(which makes the receivers SACK) and segment kind by segment kind.
"""

from __future__ import annotations

import hashlib
import random

import anyio
import pytest
from stack_pair import B4, read_all, stack_pair
from tcp_harness import ACK, RST, SYN, Link, ScriptedPeer, Transfer, make_core, open_connection

from smolmix_core.clock import VirtualClock
from smolmix_core.devices import Device
from smolmix_core.netstack import TcpConfig
from smolmix_core.netstack.core import NetCore
from smolmix_core.wire import (
    PROTO_ICMP,
    PROTO_TCP,
    TcpOptions,
    emit_ip,
    emit_udp,
    parse_icmpv4,
    parse_ip,
    parse_tcp,
)
from smolmix_core.wire.udp import UdpHeader


class _Watch:
    """A ``Link.drop`` hook that keeps the size of every packet and counts SACK-bearing ACKs."""

    def __init__(self) -> None:
        self.largest = 0
        self.sack_acks = 0
        self.timestamps = 0
        self.syns = 0

    def __call__(self, source: NetCore, packet: bytes) -> bool:
        self.largest = max(self.largest, len(packet))
        ip = parse_ip(packet)
        if ip.protocol == PROTO_TCP:
            header, _payload = parse_tcp(ip.payload, ip.src, ip.dst)
            self.sack_acks += bool(header.options.sack_blocks)
            self.timestamps += header.options.timestamp is not None
            self.syns += bool(header.flags & SYN)
        return False


@pytest.mark.parametrize(
    ("mtu", "server", "timestamps", "sack", "seed"),
    [
        (68, "10.0.0.2", True, True, 1),
        (68, "10.0.0.2", False, True, 2),
        (68, "10.0.0.2", True, False, 3),
        (69, "10.0.0.2", True, True, 4),
        (1280, "fd00::2", True, True, 5),
        (100, "fd00::2", True, True, 6),  # below IPv6's minimum: still no packet over it
    ],
)
def test_a_lossy_transfer_at_a_tiny_mtu_completes_and_never_exceeds_it(
    mtu: int, server: str, timestamps: bool, sack: bool, seed: int
) -> None:
    watch = _Watch()
    tcp = {"min_rto": 0.05, "timestamps": timestamps, "sack": sack}
    link = Link(
        make_core("10.0.0.1", "fd00::1", seed=seed, mtu=mtu, **tcp),
        make_core("10.0.0.2", "fd00::2", seed=seed + 100, mtu=mtu, **tcp),
        loss=0.03,
        reorder=0.1,
        duplicate=0.01,
        seed=seed,
        drop=watch,
    )
    size = 200_000 if mtu >= 1280 else 20_000
    rng = random.Random(seed)
    up, down = rng.randbytes(size), rng.randbytes(size // 2)
    transfer = Transfer(link, server, up, down, chunk=5000)
    assert link.run_until(transfer.done, limit=900)
    assert hashlib.sha256(transfer.got_up).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(transfer.got_down).digest() == hashlib.sha256(down).digest()
    assert watch.largest == mtu  # full segments fill the MTU exactly, and nothing exceeds it
    assert link.a.stats()["tcp_retransmits"] > 0
    assert link.a.stats()["packets_oversize"] == link.b.stats()["packets_oversize"] == 0
    if sack:
        assert watch.sack_acks > 0  # the receivers had islands to report and could report them
    assert bool(watch.timestamps) == timestamps  # 40 bytes of MSS leave room for them


def _syn_for(mtu: int, remote: str) -> tuple[bytes, TcpOptions]:
    core = make_core(mtu=mtu)
    core.tcp_connect((remote, 80), 0.0)
    (packet,) = core.drain_transmit()
    ip = parse_ip(packet)
    header, _ = parse_tcp(ip.payload, ip.src, ip.dst)
    return packet, header.options


@pytest.mark.parametrize(
    ("mtu", "remote", "mss", "sack", "window_scale", "timestamps"),
    [
        (68, "10.0.0.2", 28, True, True, True),  # 20 bytes of options fit IPv4's minimum
        (1280, "fd00::2", 1220, True, True, True),
        (80, "fd00::2", 20, True, True, False),  # timestamps would leave 8 data bytes of 20
        (72, "fd00::2", 12, True, True, False),
        (68, "fd00::2", 8, True, False, False),  # 8 bytes: MSS and SACK-permitted only
    ],
)
def test_a_syn_offers_only_the_options_that_fit(
    mtu: int, remote: str, mss: int, sack: bool, window_scale: bool, timestamps: bool
) -> None:
    packet, options = _syn_for(mtu, remote)
    assert len(packet) <= mtu
    assert options.mss == mss
    assert options.sack_permitted is sack
    assert (options.window_scale is not None) is window_scale
    assert (options.timestamp is not None) is timestamps


def test_a_syn_ack_at_a_tiny_mtu_answers_only_with_what_fits() -> None:
    core = make_core("10.0.0.1", "fd00::1", mtu=72)
    listener = core.tcp_listen(("::", 80))
    peer = ScriptedPeer(core, ip="fd00::2", core_port=80)
    full = TcpOptions(mss=1440, window_scale=7, sack_permitted=True, timestamp=(5, 0))
    peer.inject(SYN, peer.iss, options=full)
    (synack,) = peer.out()
    assert len(synack.raw) <= 72
    assert synack.options.mss == 12
    assert synack.options.timestamp is None  # not negotiated: later segments need not carry it
    peer.inject(ACK, peer.iss + 1, synack.header.seq + 1)
    sock = listener.accept()
    assert sock is not None
    assert sock.info()["timestamps"] is False
    assert sock.mss == 12


@pytest.mark.parametrize(("timestamps", "blocks"), [(True, 1), (False, 3)])
def test_a_pure_ack_at_mtu_68_carries_as_many_sack_blocks_as_fit(timestamps: bool, blocks: int) -> None:
    core = make_core(mtu=68)
    sock, peer = open_connection(core, mss=28, timestamps=timestamps, sack=True)
    for offset in (100, 200, 300, 400):  # four islands above a hole at 0
        peer.inject(ACK, peer.seq(offset), peer.ack_of(0), b"i" * 10)
    segments = peer.out()
    assert segments
    for segment in segments:
        assert len(segment.raw) <= 68
    last = segments[-1]
    assert len(last.options.sack_blocks) == blocks
    assert last.options.sack_blocks[0] == (peer.seq(400), peer.seq(410))  # the newest first (RFC 2018)
    assert (last.options.timestamp is not None) is timestamps
    assert sock.mss == (16 if timestamps else 28)
    peer.advance(1.0)  # nothing owed keeps the connection sending ACKs
    assert peer.out() == []


def test_data_segments_at_mtu_68_fill_it_and_owe_an_ack_for_the_sack_blocks() -> None:
    core = make_core(mtu=68)
    sock, peer = open_connection(core, mss=28, timestamps=True)
    peer.inject(ACK, peer.seq(100), peer.ack_of(0), b"i" * 10)  # an island: SACK owed
    peer.out()
    sock.send(b"d" * 40, 0.0)
    segments = peer.out()
    assert [len(s.payload) for s in segments if s.payload] == [16, 16, 8]
    assert max(len(s.raw) for s in segments) == 68
    assert all(len(s.raw) <= 68 for s in segments)
    with_blocks = [s for s in segments if s.options.sack_blocks]
    assert with_blocks  # the 8-byte tail has room for one block (or a pure ACK carried it)


def test_probes_keepalives_fins_and_resets_at_mtu_68_fit() -> None:
    core = make_core(mtu=68, keepalive_idle=10.0, keepalive_interval=1.0)
    sock, peer = open_connection(core, mss=28, timestamps=True, window=0)
    peer.inject(ACK, peer.seq(100), peer.ack_of(0), b"i" * 10, window=0)
    sock.send(b"z" * 100, 0.0)
    sizes = [len(s.raw) for s in peer.out()]
    for _ in range(6):
        peer.advance(2.0)  # zero-window probes, then keepalives once idle
        sizes += [len(s.raw) for s in peer.out()]
    stats = core.stats()
    assert stats["tcp_window_probes"] > 0
    sock.close(peer.now)
    sock.abort(peer.now)
    resets = peer.out()
    assert any(s.flags & RST for s in resets)
    sizes += [len(s.raw) for s in resets]
    assert max(sizes) <= 68


def test_a_peer_mss_below_ipv4s_minimum_is_held_to_28() -> None:
    core = make_core()
    sock, peer = open_connection(core, mss=5, sack=False)
    assert sock.mss == 28
    sock.send(b"x" * 60, 0.0)
    assert [len(s.payload) for s in peer.out()] == [28, 28, 4]


@pytest.mark.parametrize(("mtu", "family"), [(68, 4), (1280, 6)])
def test_port_unreachable_quotes_only_what_fits_the_mtu(mtu: int, family: int) -> None:
    core = make_core(mtu=mtu)
    src, dst = (
        (bytes([10, 0, 0, 2]), bytes([10, 0, 0, 1]))
        if family == 4
        else (
            bytes.fromhex("fd00" + "0" * 26 + "02"),
            bytes.fromhex("fd00" + "0" * 26 + "01"),
        )
    )
    overhead = 28 if family == 4 else 48
    datagram = emit_udp(UdpHeader(5000, 9), b"q" * (mtu - overhead), src, dst)
    core.receive_packet(emit_ip(src, dst, 17, datagram), 0.0)
    (reply,) = core.drain_transmit()
    assert len(reply) <= mtu
    ip = parse_ip(reply)
    if family == 4:
        assert ip.protocol == PROTO_ICMP
        message = parse_icmpv4(ip.payload)
        assert len(message.data) >= 28  # RFC 792: the IP header and 64 bits of the datagram


# --- the driver: two Stacks on a memory link that drops what exceeds its MTU -------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mtu", [68, 96])
async def test_two_stacks_on_a_68_byte_link_move_data_through_reordering(mtu: int) -> None:
    """The bug of issue 11: at MTU 68 ACKs with SACK blocks and timestamps were 72-80 bytes,
    the link dropped them, and the sender backed off for ever."""
    clock = VirtualClock()
    faults = {"reorder": 0.05, "delay": 0.005, "jitter": 0.004}
    payload = random.Random(mtu).randbytes(60_000)
    links: list[Device] = []

    def keep(device: Device, _side: str) -> Device:
        links.append(device)
        return device

    tcp = TcpConfig(min_rto=0.05)
    async with (
        clock.running(),
        stack_pair(mtu=mtu, clock=clock, faults=faults, tcp=tcp, wrap=keep) as (a, b),
    ):
        listener = await b.tcp_listen((B4, 7))
        with anyio.fail_after(60):
            client = await a.tcp_connect((B4, 7))
            server = await listener.accept()
            async with anyio.create_task_group() as tg:

                async def upload() -> None:
                    await client.send(payload)
                    await client.send_eof()

                tg.start_soon(upload)
                received = await read_all(server)
            await client.aclose()
            await server.aclose()
        assert received == payload
        assert a.stats()["packets_oversize"] == b.stats()["packets_oversize"] == 0
        assert [device.stats()["dropped_oversize"] for device in links] == [0, 0]
        assert b.stats()["tcp_out_of_order"] > 0  # reordering made the receiver SACK
