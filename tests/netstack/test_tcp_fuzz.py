"""Random scripted exchanges: a peer that sends any mix of valid, stale, overlapping, future and
absurd segments (random ACKs, windows, timestamps, SACK blocks, RSTs, SYNs, ICMP "fragmentation
needed" with any MTU) while our side sends, reads, half-closes and lets time pass.

Whatever arrives, three things must hold after every step: the bytes the application reads are
exactly the peer's stream (the peer's payloads are always true slices of it, so any difference
is corruption by the stack), every byte we put on the wire is exactly our stream at that
sequence number, and every per-connection structure stays within its bound.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from tcp_harness import ACK, FIN, M32, PSH, RST, SYN, ScriptedPeer, make_core, open_connection

from smolmix_core.netstack.tcp import TcpSocket
from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_FRAGMENTATION_NEEDED,
    PROTO_ICMP,
    Icmpv4Message,
    TcpOptions,
    emit_icmpv4,
    emit_ip,
)

STATES = {
    "ESTABLISHED",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "CLOSE-WAIT",
    "CLOSING",
    "LAST-ACK",
    "TIME-WAIT",
    "CLOSED",
}
RECV_BUFFER = 24_000
SEND_BUFFER = 30_000
ISLANDS = 6


class _Exchange:
    def __init__(self, rng: random.Random, sock: TcpSocket, peer: ScriptedPeer) -> None:
        self.rng = rng
        self.sock = sock
        self.peer = peer
        self.theirs = rng.randbytes(60_000)
        self.ours = rng.randbytes(80_000)
        self.handed = 0  # bytes of ours given to send()
        self.read = bytearray()
        self.peer_acked = 0  # how far the peer has (claimed to have) received ours
        self.peer_sent = 0  # how far the peer has sent its stream (in order, for plausibility)
        self.ts = 1
        self.closed = False  # the application gave the socket up (unread data is dropped)
        self.last_sent = b""

    def _ack(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:  # plausible: anything between the last claim and what was sent (FIN too)
            sent = max(self.peer_acked, self.sock._snd_nxt - 1)
            self.peer_acked = rng.randrange(self.peer_acked, sent + 1)
            return self.peer.ack_of(self.peer_acked)
        if roll < 0.9:
            return self.peer.ack_of(rng.randrange(-70_000, self.handed + 70_000))
        return rng.getrandbits(32)

    def _options(self) -> TcpOptions:
        rng = self.rng
        options = TcpOptions()
        if self.peer.timestamps and rng.random() < 0.97:
            self.ts = (self.ts + rng.randrange(0, 50)) & M32
            tsval = self.ts if rng.random() < 0.9 else rng.getrandbits(32)
            options.timestamp = (tsval, self.peer.last_tsval if rng.random() < 0.9 else rng.getrandbits(32))
        if rng.random() < 0.3:
            blocks = []
            for _ in range(rng.randrange(1, 4)):
                if rng.random() < 0.8:
                    left = rng.randrange(0, self.handed + 1)
                    right = left + rng.randrange(1, 6000)
                    blocks.append((self.peer.ack_of(left), self.peer.ack_of(right)))
                else:
                    blocks.append((rng.getrandbits(32), rng.getrandbits(32)))
            options.sack_blocks = tuple(blocks)
        return options

    def _inject(self, flags: int, seq: int, payload: bytes = b"") -> None:
        self.peer.inject(
            flags, seq, self._ack(), payload, window=self.rng.randrange(0, 65536), options=self._options()
        )

    def step(self) -> None:
        rng = self.rng
        peer = self.peer
        roll = rng.random()
        if roll < 0.40:  # a slice of their stream: mostly the next bytes, else near the window
            base = len(self.read) + len(self.sock._rbuf.data)
            start = base if rng.random() < 0.6 else base + rng.randrange(-3000, RECV_BUFFER + 3000)
            start = max(0, min(len(self.theirs) - 1, start))
            end = min(len(self.theirs), start + rng.choice([1, 10, 536, 1460, 1460, 3000]))
            self.peer_sent = max(self.peer_sent, end)
            flags = ACK | (PSH if rng.random() < 0.3 else 0) | (FIN if end == len(self.theirs) else 0)
            self._inject(flags, peer.seq(start), self.theirs[start:end])
        elif roll < 0.55:
            self._inject(ACK, peer.seq(self.peer_sent))
        elif roll < 0.58:
            offset = self.peer_sent if rng.random() < 0.2 else rng.randrange(-5000, 70_000)
            self._inject(RST | (ACK if rng.random() < 0.5 else 0), peer.seq(offset))
        elif roll < 0.60:
            self._inject(SYN | (ACK if rng.random() < 0.5 else 0), rng.getrandbits(32))
        elif roll < 0.62 and self.last_sent:  # "fragmentation needed" quoting one of our segments
            mtu = rng.choice([0, 68, 576, 1000, 1280, 1400, 1600])
            error = Icmpv4Message(
                ICMPV4_DEST_UNREACHABLE, ICMPV4_FRAGMENTATION_NEEDED, mtu=mtu, data=self.last_sent[:28]
            )
            peer.core.receive_packet(emit_ip(peer.ip, peer.core_ip, PROTO_ICMP, emit_icmpv4(error)), peer.now)
        elif roll < 0.72:
            if self.sock.send_space and self.handed < len(self.ours):
                chunk = self.ours[self.handed : self.handed + rng.randrange(1, 8000)]
                self.handed += self.sock.send(chunk, peer.now)
        elif roll < 0.84:
            self.read += self.sock.recv(rng.randrange(1, 20_000))
        elif roll < 0.995:
            peer.at(peer.now + rng.choice([0.001, 0.05, 0.3, 1.0, 5.0]))
        elif rng.random() < 0.7:
            self.sock.shutdown_write(peer.now)
        else:
            self.sock.close(peer.now)
            self.closed = True

    def check(self) -> None:
        sock = self.sock
        for segment in self.peer.out():
            self.last_sent = segment.raw
            if segment.payload:
                offset = self.peer.rel(segment.header.seq)
                assert segment.payload == self.ours[offset : offset + len(segment.payload)]
                assert offset + len(segment.payload) <= self.handed
        assert self.read == self.theirs[: len(self.read)]
        if sock.at_eof and not self.closed:
            assert self.read == self.theirs
        assert sock.state in STATES
        assert len(sock._rbuf.data) <= RECV_BUFFER + (1 << sock._rcv_wscale)
        assert len(sock._rbuf.islands) <= ISLANDS
        assert sum(len(island.buf) for island in sock._rbuf.islands) <= RECV_BUFFER + (1 << sock._rcv_wscale)
        assert len(sock._sbuf) <= SEND_BUFFER
        scoreboard = sock._sb
        assert len(scoreboard.sacked_ranges) <= max(1, len(scoreboard.segs))
        assert scoreboard.pipe >= 0
        assert self.peer.core.stats()["internal_errors"] == 0


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    timestamps=st.booleans(),
    sack=st.booleans(),
    window_scale=st.sampled_from([None, 0, 7, 14]),
    mss=st.sampled_from([88, 536, 1460]),
)
def test_a_hostile_peer_never_corrupts_data_or_breaks_bounds(
    seed: int, timestamps: bool, sack: bool, window_scale: int | None, mss: int
) -> None:
    rng = random.Random(seed)
    core = make_core(
        timestamps=timestamps,
        recv_buffer=RECV_BUFFER,
        send_buffer=SEND_BUFFER,
        reassembly_ranges=ISLANDS,
        keepalive_idle=20.0,
        seed=seed % 1000,
    )
    sock, peer = open_connection(
        core,
        mss=mss,
        window=rng.randrange(1, 65536),
        window_scale=window_scale,
        sack=sack,
        timestamps=timestamps,
        peer_iss=rng.getrandbits(32),
    )
    exchange = _Exchange(rng, sock, peer)
    for _ in range(400):
        exchange.step()
        exchange.check()
        if sock.state == "CLOSED":
            break
