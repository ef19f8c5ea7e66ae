"""Test helpers for the sans-I/O core: a hand-played TCP peer and a simulated link (no anyio)."""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from smolmix_core.netstack.config import StackConfig, TcpConfig
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.tcp import TcpSocket
from smolmix_core.wire import (
    PROTO_TCP,
    TcpHeader,
    TcpOptions,
    emit_ip,
    emit_tcp,
    parse_ip,
    parse_tcp,
)

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
M32 = 0xFFFFFFFF


def packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


@dataclass
class Segment:
    """A TCP segment the core emitted, parsed back, with sequence numbers relative to ISNs."""

    header: TcpHeader
    payload: bytes
    raw: bytes = b""  # the IP packet as the core sent it

    @property
    def flags(self) -> int:
        return self.header.flags

    @property
    def options(self) -> TcpOptions:
        return self.header.options


class ScriptedPeer:
    """The remote end of one TCP connection, played by hand against a ``NetCore``.

    ``seq``/``ack`` arguments are absolute wire values; ``iss`` helps keep them readable.
    """

    def __init__(
        self,
        core: NetCore,
        *,
        ip: str = "10.0.0.2",
        port: int = 40000,
        core_ip: str | None = None,
        core_port: int = 80,
        iss: int = 1_000_000,
    ) -> None:
        self.core = core
        self.ip = packed(ip)
        self.port = port
        self.core_ip = packed(core_ip or (core.config.ipv4 if len(self.ip) == 4 else core.config.ipv6) or "")
        self.core_port = core_port
        self.iss = iss
        self.now = 0.0
        self.timestamps = False  # add (ts_clock, last TSval seen) to every segment
        self.ts_clock = 1
        self.last_tsval = 0
        self.core_iss = 0

    def packet(
        self,
        flags: int,
        seq: int,
        ack: int = 0,
        payload: bytes = b"",
        *,
        window: int = 65535,
        options: TcpOptions | None = None,
        src_port: int | None = None,
    ) -> bytes:
        if options is None and self.timestamps:
            options = TcpOptions(timestamp=(self.ts_clock, self.last_tsval))
        header = TcpHeader(
            self.port if src_port is None else src_port,
            self.core_port,
            seq & M32,
            ack & M32,
            flags,
            window,
            0,
            options or TcpOptions(),
        )
        return emit_ip(self.ip, self.core_ip, PROTO_TCP, emit_tcp(header, payload, self.ip, self.core_ip))

    def inject(self, flags: int, seq: int, ack: int = 0, payload: bytes = b"", **kwargs: object) -> None:
        self.core.receive_packet(self.packet(flags, seq, ack, payload, **kwargs), self.now)  # type: ignore[arg-type]

    def out(self) -> list[Segment]:
        """TCP segments the core sent to this peer since the last call (others are dropped)."""
        segments = []
        for raw in self.core.drain_transmit():
            ip = parse_ip(raw)
            if ip.protocol != PROTO_TCP or ip.dst != self.ip:
                continue
            header, payload = parse_tcp(ip.payload, ip.src, ip.dst)
            if header.options.timestamp is not None:
                self.last_tsval = header.options.timestamp[0]
            segments.append(Segment(header, payload, raw))
        self.core.drain_wakeups()
        return segments

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.core.handle_timeouts(self.now)

    def at(self, when: float) -> None:
        self.now = when
        self.core.handle_timeouts(when)

    def rel(self, seq: int) -> int:
        """A sequence number of the core's, as an offset into its data (0 = first data byte)."""
        return (seq - self.core_iss - 1) & M32

    def seq(self, offset: int) -> int:
        """The wire sequence number of the peer's data byte ``offset``."""
        return (self.iss + 1 + offset) & M32

    def ack_of(self, offset: int) -> int:
        """The wire ACK number acknowledging the core's data up to ``offset`` (exclusive)."""
        return (self.core_iss + 1 + offset) & M32

    def sack(self, *blocks: tuple[int, int]) -> TcpOptions:
        """A SACK option for the core's data ranges given as offsets."""
        wire = tuple((self.ack_of(lo), self.ack_of(hi)) for lo, hi in blocks)
        timestamp = (self.ts_clock, self.last_tsval) if self.timestamps else None
        return TcpOptions(sack_blocks=wire, timestamp=timestamp)


def open_connection(
    core: NetCore,
    *,
    remote: str = "10.0.0.2",
    mss: int = 1460,
    window: int = 65535,
    window_scale: int | None = None,
    sack: bool = True,
    timestamps: bool = False,
    peer_iss: int = 5000,
) -> tuple[TcpSocket, ScriptedPeer]:
    """An established client connection from ``core`` to a scripted peer at ``remote``:80."""
    sock = core.tcp_connect((remote, 80), 0.0)
    peer = ScriptedPeer(core, ip=remote, port=80, core_port=sock.local[1], iss=peer_iss)
    (syn,) = peer.out()
    peer.core_iss = syn.header.seq
    options = TcpOptions(
        mss=mss,
        window_scale=window_scale,
        sack_permitted=sack,
        timestamp=(peer.ts_clock, peer.last_tsval) if timestamps else None,
    )
    peer.inject(SYN | ACK, peer_iss, syn.header.seq + 1, options=options, window=window)
    peer.timestamps = timestamps and syn.options.timestamp is not None
    acks = peer.out()
    assert sock.established
    assert len(acks) == 1
    return sock, peer


def make_core(
    ip4: str = "10.0.0.1", ip6: str = "fd00::1", seed: int = 1, mtu: int = 1500, **tcp: object
) -> NetCore:
    return NetCore(StackConfig(ipv4=ip4, ipv6=ip6, seed=seed, mtu=mtu, tcp=TcpConfig(**tcp)))  # type: ignore[arg-type]


@dataclass(order=True)
class _InFlight:
    arrival: float
    order: int
    target: NetCore = field(compare=False)
    packet: bytes = field(compare=False)


class Link:
    """Two cores joined by a simulated wire in virtual time: delay, loss, reordering, duplicates.

    Deterministic for a seed. ``step`` delivers the next event (a packet or a timer) and lets
    the ``apps`` callbacks act after every event, as a driver would after waking tasks.
    """

    def __init__(
        self,
        a: NetCore,
        b: NetCore,
        *,
        delay: float = 0.005,
        loss: float = 0.0,
        reorder: float = 0.0,
        duplicate: float = 0.0,
        corrupt: float = 0.0,
        seed: int = 0,
        drop: Callable[[NetCore, bytes], bool] | None = None,
        batch: bool = False,
    ) -> None:
        self.a = a
        self.b = b
        self.delay = delay
        self.loss = loss
        self.reorder = reorder
        self.duplicate = duplicate
        self.corrupt = corrupt
        self.rng = random.Random(seed)
        self.now = 0.0
        self.queue: list[_InFlight] = []
        self.order = itertools.count()
        self.apps: list[Callable[[float], None]] = []
        self.drop = drop
        self.batch = batch  # deliver the packets due together through receive_packets
        self.delivered = 0
        self.dropped = 0

    def _collect(self) -> None:
        for source, target in ((self.a, self.b), (self.b, self.a)):
            for packet in source.drain_transmit():
                if self.drop is not None and self.drop(source, packet):
                    self.dropped += 1
                    continue
                if self.rng.random() < self.loss:
                    self.dropped += 1
                    continue
                copies = 2 if self.rng.random() < self.duplicate else 1
                for _ in range(copies):
                    arrival = self.now + self.delay
                    if self.rng.random() < self.reorder:
                        arrival += self.rng.uniform(0, 3 * self.delay)
                    data = packet
                    if self.rng.random() < self.corrupt:
                        flip = bytearray(packet)
                        flip[self.rng.randrange(len(flip))] ^= 1 << self.rng.randrange(8)
                        data = bytes(flip)
                    heapq.heappush(self.queue, _InFlight(arrival, next(self.order), target, data))
            source.drain_wakeups()

    def settle(self) -> None:
        """Let the apps act and collect what they sent, until nothing new is sent."""
        for _ in range(1000):
            for app in self.apps:
                app(self.now)
            before = len(self.queue)
            self._collect()
            if len(self.queue) == before and not self.a._transmit and not self.b._transmit:
                return

    def step(self) -> bool:
        self.settle()
        deadlines = [d for d in (self.a.poll_deadline(), self.b.poll_deadline()) if d is not None]
        next_packet = self.queue[0].arrival if self.queue else None
        candidates = [*deadlines, *([next_packet] if next_packet is not None else [])]
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        if self.batch:
            due: dict[int, list[bytes]] = {id(self.a): [], id(self.b): []}
            while self.queue and self.queue[0].arrival <= self.now:
                item = heapq.heappop(self.queue)
                due[id(item.target)].append(item.packet)
            for core in (self.a, self.b):
                self.delivered += len(due[id(core)])
                core.receive_packets(due[id(core)], self.now)
            self._collect()
        while self.queue and self.queue[0].arrival <= self.now:
            item = heapq.heappop(self.queue)
            item.target.receive_packet(item.packet, self.now)
            self.delivered += 1
            self._collect()
        for core in (self.a, self.b):
            core.handle_timeouts(self.now)
        return True

    def run_until(self, condition: Callable[[], bool], limit: float = 600.0) -> bool:
        while not condition():
            if self.now > limit or not self.step():
                self.settle()
                return condition()
        return True


class Transfer:
    """Client sends ``up`` then half-closes; server sends ``down`` then closes after EOF."""

    def __init__(self, link: Link, server_ip: str, up: bytes, down: bytes, chunk: int = 70_000) -> None:
        self.link = link
        self.up = up
        self.down = down
        self.chunk = chunk
        self.listener = link.b.tcp_listen((server_ip, 443))
        self.client = link.a.tcp_connect((server_ip, 443), link.now)
        self.server: TcpSocket | None = None
        self.sent_up = self.sent_down = 0
        self.got_up = bytearray()
        self.got_down = bytearray()
        self.client_closed = self.server_closed = False
        link.apps.append(self.act)

    def act(self, now: float) -> None:
        client = self.client
        if client.established and self.sent_up < len(self.up):
            self.sent_up += client.send(self.up[self.sent_up : self.sent_up + self.chunk], now)
            if self.sent_up == len(self.up):
                client.shutdown_write(now)
        while data := client.recv(1 << 16):
            self.got_down += data
        if client.at_eof and not self.client_closed and self.sent_up == len(self.up):
            self.client_closed = True
            client.close(now)
        if self.server is None:
            self.server = self.listener.accept()
            if self.server is None:
                return
        server = self.server
        while data := server.recv(1 << 16):
            self.got_up += data
        if self.sent_down < len(self.down) and server.send_space:
            self.sent_down += server.send(self.down[self.sent_down : self.sent_down + self.chunk], now)
        if server.at_eof and self.sent_down == len(self.down) and not self.server_closed:
            self.server_closed = True
            server.close(now)

    def done(self) -> bool:
        return (
            self.client_closed
            and self.server_closed
            and self.client.state in ("TIME-WAIT", "CLOSED")
            and self.server is not None
            and self.server.state == "CLOSED"
        )
