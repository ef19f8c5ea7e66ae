"""The sans-I/O stack: IP packets and a clock reading in; IP packets, deadlines and wake-ups out.

``NetCore`` owns every socket of one interface. It never sleeps, never awaits and never reads a
clock: the anyio driver (``smolmix_core.netstack.stack``) feeds it packets from the device and
timer expiries, sends what ``drain_transmit`` returns, and wakes the tasks of the sockets that
``drain_wakeups`` names. Every call is cheap and synchronous.

Contract between core and driver (both sides rely on it):

* After *any* call into the core (``receive_packet``, ``handle_timeouts``, or a socket method),
  the driver calls ``drain_transmit()`` and sends those packets in order, then
  ``drain_wakeups()`` and wakes every waiter on those sockets, then re-reads ``poll_deadline()``.
* Addresses at this API are ``(ip_text, port)`` tuples, like ``socket``. IPv4 and IPv6 are both
  supported; the family follows the address.
* Socket objects returned here are owned by the core. ``user_data`` on each is a free slot for the
  driver (for example its anyio events). A socket is forgotten by the core once it is closed and
  its connection has finished (after TIME-WAIT or RST).
* Errors the user must see (refused, reset, timed out) are stored on the socket as ``error`` (an
  instance from ``smolmix_core.errors``) and the socket is woken; the core never raises them into
  ``receive_packet`` or ``handle_timeouts``. Bad input is dropped and counted in ``stats()``.

Packets addressed to the interface's own addresses are delivered to its sockets; every packet
the stack sends goes to the device (there is no internal loopback). In forwarder mode
(``StackConfig.forward_all``) TCP and UDP to any address are accepted by ``tcp_listen_any`` /
``udp_bind_any``, and replies leave with the original destination as their source.
"""

from __future__ import annotations

import heapq
import ipaddress
import itertools
import logging
import random
from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from smolmix_core.errors import (
    AddressInUse,
    AddressNotAvailable,
    ChecksumError,
    ConnectionRefused,
    HostUnreachable,
    MalformedPacket,
    MessageTooLarge,
    NetstackError,
    StackClosed,
)
from smolmix_core.netstack.config import StackConfig
from smolmix_core.netstack.icmp_handling import classify_icmp_error
from smolmix_core.netstack.isn import IsnGenerator
from smolmix_core.netstack.listener import TcpListener
from smolmix_core.netstack.pmtu import PathMtuCache
from smolmix_core.netstack.ports import pick_ephemeral_port
from smolmix_core.netstack.tcp import ACK, FIN, INF, RST, SYN, Address, TcpSocket
from smolmix_core.netstack.tcp_request import (
    ANSWER_MEMORY,
    DEFAULT_REQUEST_TIMEOUT,
    RequestState,
    TcpRequest,
    Unreachable,
)
from smolmix_core.netstack.udp import UdpSocket
from smolmix_core.wire import (
    ICMPV4_ADMIN_PROHIBITED,
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_ECHO_REPLY,
    ICMPV4_ECHO_REQUEST,
    ICMPV4_HOST_UNREACHABLE,
    ICMPV4_NET_UNREACHABLE,
    ICMPV4_PORT_UNREACHABLE,
    ICMPV6_ADDRESS_UNREACHABLE,
    ICMPV6_ADMIN_PROHIBITED,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_NO_ROUTE,
    ICMPV6_PORT_UNREACHABLE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    IpPacket,
    TcpHeader,
    UdpHeader,
    emit_icmpv4,
    emit_icmpv6,
    emit_ip,
    emit_tcp,
    emit_udp,
    error_quote,
    parse_icmpv4,
    parse_icmpv6,
    parse_ip,
    parse_tcp,
    parse_udp,
    quoted_flow,
)

__all__ = ["Address", "NetCore", "TcpListener", "TcpRequest", "TcpSocket", "UdpSocket", "Unreachable"]

logger = logging.getLogger("smolmix.netstack")

_M32 = 0xFFFFFFFF
_MAX_TEXT_CACHE = 4096

COUNTERS = (
    "packets_in",
    "packets_out",
    "packets_oversize",
    "bad_checksum",
    "malformed",
    "fragments",
    "not_for_us",
    "unknown_protocol",
    "internal_errors",
    "replies_rate_limited",
    "tcp_no_socket",
    "tcp_resets_sent",
    "tcp_resets_received",
    "tcp_out_of_window",
    "tcp_out_of_window_acks_suppressed",
    "tcp_rst_out_of_window",
    "tcp_blind_rst",
    "tcp_blind_syn",
    "tcp_challenge_acks",
    "tcp_challenge_acks_suppressed",
    "tcp_paws_rejected",
    "tcp_missing_timestamp",
    "tcp_bad_ack",
    "tcp_ack_unsent",
    "tcp_ack_too_old",
    "tcp_no_ack",
    "tcp_syn_backlog_drops",
    "tcp_accept_backlog_drops",
    "tcp_accept_queue_full",
    "tcp_syn_received_timeouts",
    "tcp_retransmits",
    "tcp_syn_retransmits",
    "tcp_fast_retransmits",
    "tcp_fast_recoveries",
    "tcp_spurious_recoveries",
    "tcp_rto_timeouts",
    "tcp_rack_losses",
    "tcp_tail_loss_probes",
    "tcp_out_of_order",
    "tcp_reassembly_drops",
    "tcp_zero_window_drops",
    "tcp_window_probes",
    "tcp_window_updates",
    "tcp_keepalive_probes",
    "tcp_pmtu_reductions",
    "tcp_time_wait_reused",
    "tcp_fin_wait2_timeouts",
    "tcp_resets_unread_on_close",
    "tcp_resets_data_after_close",
    "tcp_sack_ignored",
    "tcp_connections_opened",
    "tcp_connections_accepted",
    "tcp_requests",
    "tcp_request_syn_retransmits",
    "tcp_request_answers_repeated",
    "tcp_requests_accepted",
    "tcp_requests_refused",
    "tcp_requests_rejected",
    "tcp_requests_expired",
    "udp_no_socket",
    "udp_queue_drops",
    "udp_sent",
    "udp_received",
    "icmp_echo_replies",
    "icmp_errors_received",
    "icmp_errors_ignored",
    "pmtu_learned",
    "icmp_unreachable_sent",
    "icmp_ignored",
)

_TcpKey = tuple[bytes, int, bytes, int]  # (remote ip, remote port, local ip, local port)
_ANSWERS_REMEMBERED = 4096  # answered requests kept for retransmitted SYNs; oldest forgotten first

# ICMP (v4 code, v6 code) of destination unreachable for each reason a request is rejected
_UNREACHABLE_CODES = {
    Unreachable.NETWORK: (ICMPV4_NET_UNREACHABLE, ICMPV6_NO_ROUTE),
    Unreachable.HOST: (ICMPV4_HOST_UNREACHABLE, ICMPV6_ADDRESS_UNREACHABLE),
    Unreachable.PROHIBITED: (ICMPV4_ADMIN_PROHIBITED, ICMPV6_ADMIN_PROHIBITED),
}


class NetCore:
    """One interface: demultiplexing, TCP/UDP sockets, ICMP, timers and counters."""

    def __init__(self, config: StackConfig, *, rng: random.Random | None = None) -> None:
        self.config = config
        self._rng = rng if rng is not None else random.Random(config.seed)
        self._ip4 = _packed(config.ipv4, 4) if config.ipv4 else None
        self._ip6 = _packed(config.ipv6, 6) if config.ipv6 else None
        self._text_cache: dict[bytes, str] = {}
        self.counters: dict[str, int] = defaultdict(int, dict.fromkeys(COUNTERS, 0))
        self.last_now = 0.0
        self.deferring_acks = False
        self._deferred_acks: list[TcpSocket] = []
        self._transmit: list[bytes] = []
        self._wakeups: list[TcpSocket | TcpListener | UdpSocket] = []
        self._timers: list[tuple[float, int, TcpSocket]] = []
        self._timer_seq = itertools.count()
        self._tcp: dict[_TcpKey, TcpSocket] = {}
        self._listeners: dict[tuple[int, int], TcpListener] = {}
        self._listen_any: TcpListener | None = None
        # deferred accept: requests waiting for an answer, and answers remembered for a while;
        # both in deadline order (one forwarder listener, one timeout), so the first expires first
        self._pending: OrderedDict[_TcpKey, TcpRequest] = OrderedDict()
        self._answered: OrderedDict[_TcpKey, TcpRequest] = OrderedDict()
        self._udp: dict[tuple[int, int], UdpSocket] = {}
        self._udp_any: UdpSocket | None = None
        self._isn = IsnGenerator(self._rng)
        self._pmtu = PathMtuCache()
        self._reply_tokens = float(config.reply_rate_limit)
        self._reply_at = -INF
        self._closed = False

    def __repr__(self) -> str:
        return f"<NetCore {self.config.ipv4} {self.config.ipv6} tcp={len(self._tcp)} udp={len(self._udp)}>"

    # ------------------------------------------------------------------ device side

    def receive_packet(self, packet: bytes, now: float) -> None:
        """Parse and dispatch one IP packet; bad input is dropped and counted, never raised."""
        self.last_now = now
        stats = self.counters
        stats["packets_in"] += 1
        if self._closed:
            return
        try:
            ip = parse_ip(packet)
        except ChecksumError:
            stats["bad_checksum"] += 1
            return
        except MalformedPacket:
            stats["malformed"] += 1
            return
        if ip.is_fragment:
            stats["fragments"] += 1
            return
        dst = ip.dst
        own = dst == self._ip4 or dst == self._ip6
        if not own and not self.config.forward_all:
            stats["not_for_us"] += 1
            return
        try:
            protocol = ip.protocol
            if protocol == PROTO_TCP:
                self._on_tcp(ip, own, packet, now)
            elif protocol == PROTO_UDP:
                self._on_udp(ip, own, packet, now)
            elif protocol == PROTO_ICMP and ip.version == 4:
                self._on_icmpv4(ip, own, now)
            elif protocol == PROTO_ICMPV6 and ip.version == 6:
                self._on_icmpv6(ip, own, now)
            else:
                stats["unknown_protocol"] += 1
        except ChecksumError:
            stats["bad_checksum"] += 1
        except MalformedPacket:
            stats["malformed"] += 1
        except Exception:
            stats["internal_errors"] += 1
            logger.exception("netstack: internal error while processing a packet (dropped)")

    def receive_packets(self, packets: Iterable[bytes], now: float) -> None:
        """``receive_packet`` for each packet of a batch the device had ready, with the ACKs
        they call for coalesced to one per connection at the end (when SACK is on), as a
        kernel's receive offload would: fewer packets for the same information."""
        self.deferring_acks = True
        try:
            for packet in packets:
                self.receive_packet(packet, now)
        finally:
            self.deferring_acks = False
            deferred = self._deferred_acks
            if deferred:
                self._deferred_acks = []
                for sock in deferred:
                    sock.flush_deferred_ack(now)

    def drain_transmit(self) -> list[bytes]:
        out = self._transmit
        if out:
            self._transmit = []
        return out

    def drain_wakeups(self) -> list[TcpSocket | TcpListener | UdpSocket]:
        woken = self._wakeups
        if not woken:
            return woken
        self._wakeups = []
        for sock in woken:
            sock._wake_queued = False
        return woken

    def poll_deadline(self) -> float | None:
        deadline = self._tcp_deadline()
        if self._pending or self._answered:
            for requests in (self._pending, self._answered):
                if requests:
                    when = next(iter(requests.values())).deadline
                    if deadline is None or when < deadline:
                        deadline = when
        return deadline

    def _tcp_deadline(self) -> float | None:
        timers = self._timers
        while timers:
            when, _, sock = timers[0]
            if when != sock._heap_at:
                heapq.heappop(timers)
                continue
            actual = sock.deadline
            if actual == when:
                return when
            heapq.heappop(timers)
            sock._heap_at = INF
            if actual != INF:
                self.tcp_timer_changed(sock)
        return None

    def handle_timeouts(self, now: float) -> None:
        self.last_now = now
        timers = self._timers
        fired: dict[int, int] = {}
        while timers and timers[0][0] <= now:
            when, _, sock = heapq.heappop(timers)
            if when != sock._heap_at:
                continue
            sock._heap_at = INF
            if sock.deadline <= now:
                runs = fired[id(sock)] = fired.get(id(sock), 0) + 1
                try:
                    if runs > 8:
                        raise RuntimeError(f"timer of {sock!r} keeps firing at {now}")
                    sock.on_timer(now)
                except Exception:
                    self.counters["internal_errors"] += 1
                    logger.exception("netstack: internal error in a TCP timer; connection aborted")
                    sock.fail(StackClosed("internal error in the TCP stack"), now)
            if sock.deadline != INF and sock.deadline < sock._heap_at:
                self.tcp_timer_changed(sock)
        if self._pending or self._answered:
            self._expire_requests(now)

    def stats(self) -> dict[str, int]:
        snapshot = dict(self.counters)
        snapshot["tcp_sockets"] = len(self._tcp)
        snapshot["tcp_requests_pending"] = len(self._pending)
        snapshot["pmtu_entries"] = len(self._pmtu)
        snapshot["tcp_listeners"] = len(self._listeners) + (self._listen_any is not None)
        snapshot["udp_sockets"] = len({id(s) for s in self._udp.values()}) + (self._udp_any is not None)
        return snapshot

    def shutdown(self, now: float) -> None:
        """Abort every connection (RST), close every socket; their errors become StackClosed."""
        self.last_now = now
        if self._closed:
            return
        self._closed = True
        for sock in list(self._tcp.values()):
            sock.fail(StackClosed("the network stack shut down"), now)
        listeners = [*self._listeners.values()]
        if self._listen_any is not None:
            listeners.append(self._listen_any)
        for listener in listeners:
            listener.error = StackClosed("the network stack shut down")
            for child in list(listener.queue):
                child.fail(StackClosed("the network stack shut down"), now)
            self._wake(listener)
        self._listeners.clear()
        self._listen_any = None
        for request in self._pending.values():
            request.state = RequestState.CLOSED
        self._pending.clear()
        self._answered.clear()
        udp_sockets = {id(s): s for s in self._udp.values()}
        if self._udp_any is not None:
            udp_sockets[id(self._udp_any)] = self._udp_any
        for udp in udp_sockets.values():
            udp.error = StackClosed("the network stack shut down")
            self._wake(udp)
        self._udp.clear()
        self._udp_any = None
        self._timers.clear()

    # ------------------------------------------------------------------ TCP API

    def tcp_connect(self, remote: Address, now: float, *, local_port: int | None = None) -> TcpSocket:
        """Open a connection (sends the SYN); the socket's ``established`` turns True later."""
        self.last_now = now
        self._check_open()
        remote_ip = _packed(remote[0])
        remote_port = _port(remote[1], allow_zero=False)
        local_ip = self._own_address(len(remote_ip))
        if local_port is None:
            local_port = pick_ephemeral_port(
                self._rng,
                self.config.ephemeral_ports,
                lambda port: (
                    (remote_ip, remote_port, local_ip, port) in self._tcp
                    or (len(local_ip), port) in self._listeners
                ),
            )
        else:
            local_port = _port(local_port, allow_zero=False)
            if (remote_ip, remote_port, local_ip, local_port) in self._tcp:
                raise AddressInUse(f"a connection from port {local_port} to {remote} exists")
        sock = self._new_tcp(local_ip, local_port, remote_ip, remote_port, now, None)
        self.counters["tcp_connections_opened"] += 1
        sock.connect(now)
        return sock

    def tcp_listen(self, local: Address, *, backlog: int | None = None) -> TcpListener:
        self._check_open()
        family, _ip = self._bind_address(local[0])
        port = _port(local[1], allow_zero=True)
        if port == 0:
            port = pick_ephemeral_port(
                self._rng, self.config.ephemeral_ports, lambda p: (family, p) in self._listeners
            )
        elif (family, port) in self._listeners:
            raise AddressInUse(f"port {port} is already listening")
        listener = TcpListener(
            self,
            (local[0] if _ip is None else self._text(_ip), port),
            family=family,
            syn_backlog=self.config.syn_backlog,
            accept_backlog=backlog if backlog is not None else self.config.accept_backlog,
        )
        self._listeners[(family, port)] = listener
        return listener

    def tcp_listen_any(
        self, *, deferred: bool = False, request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    ) -> TcpListener:
        """Forwarder mode: accept SYNs to any address and port not otherwise listened on.

        ``deferred``: each new SYN becomes a ``TcpRequest`` (``listener.next_request()``) that
        the application answers (accept, refuse, reject) before the client learns anything; one
        unanswered for ``request_timeout`` seconds is rejected as host unreachable. Requests
        and half-open connections together are bounded by ``syn_backlog``; SYNs beyond are
        dropped and counted (``tcp_syn_backlog_drops``), and the client retransmits them.
        """
        self._check_open()
        if not self.config.forward_all:
            raise AddressNotAvailable("tcp_listen_any needs StackConfig.forward_all")
        if self._listen_any is not None:
            raise AddressInUse("a forwarder listener exists")
        if deferred and not request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, not {request_timeout!r}")
        listener = TcpListener(
            self,
            ("*", 0),
            family=0,
            syn_backlog=self.config.syn_backlog,
            accept_backlog=self.config.accept_backlog,
            forward_all=True,
            deferred=deferred,
            request_timeout=request_timeout,
        )
        self._listen_any = listener
        return listener

    def close_listener(self, listener: TcpListener, now: float) -> None:
        self.last_now = now
        if listener.closed:
            return
        listener.closed = True
        if self._listen_any is listener:
            self._listen_any = None
        elif self._listeners.get((listener.family, listener.local[1])) is listener:
            del self._listeners[(listener.family, listener.local[1])]
        for child in [*listener.embryonic, *listener.queue]:
            child.fail(NetstackError("the listener was closed"), now)
        listener.embryonic.clear()
        listener.queue.clear()
        for request in [r for r in self._pending.values() if r.listener is listener]:
            self._forget_pending(request)
            request.state = RequestState.CLOSED
            self._send_reset_for(request.ip, request.syn, 0)  # the client hears at once
        listener.requests.clear()
        self._wake(listener)

    def _new_tcp(
        self,
        local_ip: bytes,
        local_port: int,
        remote_ip: bytes,
        remote_port: int,
        now: float,
        listener: TcpListener | None,
    ) -> TcpSocket:
        sock = TcpSocket(
            self,
            self.config.tcp,
            local=(self._text(local_ip), local_port),
            remote=(self._text(remote_ip), remote_port),
            local_ip=local_ip,
            remote_ip=remote_ip,
            iss=self._isn.isn(local_ip, local_port, remote_ip, remote_port, now),
            mtu=self.path_mtu(remote_ip, now),
            ts_offset=self._rng.getrandbits(32),
            parent=listener,
        )
        self._tcp[(remote_ip, remote_port, local_ip, local_port)] = sock
        return sock

    # --- TcpHost (called by connections)

    def tcp_transmit(self, sock: TcpSocket, header: TcpHeader, payload: bytes) -> None:
        """``_send_ip`` written out: this runs for every segment."""
        local_ip = sock.local_ip
        remote_ip = sock.remote_ip
        segment = emit_tcp(header, payload, local_ip, remote_ip)
        packet = emit_ip(local_ip, remote_ip, PROTO_TCP, segment, ttl=self.config.ttl)
        if len(packet) > self.config.mtu:
            self._oversize(packet)
            return
        self._transmit.append(packet)
        self.counters["packets_out"] += 1

    def tcp_defer_ack(self, sock: TcpSocket) -> None:
        self._deferred_acks.append(sock)

    def tcp_timer_changed(self, sock: TcpSocket) -> None:
        when = sock.deadline
        if when < sock._heap_at:
            sock._heap_at = when
            heapq.heappush(self._timers, (when, next(self._timer_seq), sock))

    def tcp_established(self, sock: TcpSocket) -> bool:
        listener = sock.listener
        if not isinstance(listener, TcpListener) or listener.closed:
            return False
        if listener.deferred:  # the application holds the socket since it accepted the request
            listener.embryonic.discard(sock)
            self.counters["tcp_connections_accepted"] += 1
            return True
        if len(listener.queue) >= listener.accept_backlog:
            return False
        listener.embryonic.discard(sock)
        listener.queue.append(sock)
        self.counters["tcp_connections_accepted"] += 1
        self._wake(listener)
        return True

    def tcp_finished(self, sock: TcpSocket) -> None:
        key = (sock.remote_ip, sock.remote[1], sock.local_ip, sock.local[1])
        if self._tcp.get(key) is sock:
            del self._tcp[key]
        listener = sock.listener
        if isinstance(listener, TcpListener):
            listener.embryonic.discard(sock)

    # --- segments in

    def _on_tcp(self, ip: IpPacket, own: bool, packet: bytes, now: float) -> None:
        header, payload = parse_tcp(ip.payload, ip.src, ip.dst)
        key = (ip.src, header.src_port, ip.dst, header.dst_port)
        sock = self._tcp.get(key)
        if sock is not None:
            try:
                reopen = sock.on_segment(header, payload, now)
            except Exception:
                self.counters["internal_errors"] += 1
                logger.exception("netstack: internal error in a TCP connection; connection aborted")
                sock.fail(StackClosed("internal error in the TCP stack"), now)
                return
            if not reopen:
                return
        flags = header.flags
        if (self._pending or self._answered) and self._on_request_segment(key, ip, header, packet, now):
            return
        if flags & SYN and not flags & (ACK | RST | FIN):
            listener = self._listeners.get((ip.version, header.dst_port)) if own else None
            if listener is None:
                listener = self._listen_any
            if listener is not None:
                if listener.deferred:
                    self._on_syn_deferred(listener, key, ip, header, packet, now)
                else:
                    self._on_syn(listener, ip, header, now)
                return
        self.counters["tcp_no_socket"] += 1
        if not flags & RST and (own or self._listen_any is not None):
            self._reset_reply(ip, header, len(payload), now)  # we speak for the address

    def _on_syn(self, listener: TcpListener, ip: IpPacket, header: TcpHeader, now: float) -> None:
        stats = self.counters
        if len(listener.embryonic) >= listener.syn_backlog:
            stats["tcp_syn_backlog_drops"] += 1
            return
        if len(listener.queue) >= listener.accept_backlog:
            stats["tcp_accept_backlog_drops"] += 1
            return
        sock = self._new_tcp(ip.dst, header.dst_port, ip.src, header.src_port, now, listener)
        listener.embryonic.add(sock)
        sock.accept_syn(header, now)

    # --- deferred accept (forwarder): requests

    def _on_syn_deferred(
        self, listener: TcpListener, key: _TcpKey, ip: IpPacket, header: TcpHeader, packet: bytes, now: float
    ) -> None:
        if len(listener.embryonic) + listener.pending >= listener.syn_backlog:
            self.counters["tcp_syn_backlog_drops"] += 1
            return
        request = TcpRequest(
            self,
            listener,
            key,
            (self._text(ip.src), header.src_port),
            (self._text(ip.dst), header.dst_port),
            ip,
            header,
            bytes(packet),
            now + listener.request_timeout,
        )
        self._pending[key] = request
        listener.pending += 1
        queued = listener.requests
        while queued and not queued[0].pending:  # expired before the application took them
            queued.popleft()
        queued.append(request)
        self.counters["tcp_requests"] += 1
        self._wake(listener)

    def _on_request_segment(
        self, key: _TcpKey, ip: IpPacket, header: TcpHeader, packet: bytes, now: float
    ) -> bool:
        """A segment for a 4-tuple with a request: True when it is dealt with here."""
        flags = header.flags
        is_syn = bool(flags & SYN) and not flags & (ACK | RST | FIN)
        request = self._pending.get(key)
        if request is not None:
            if is_syn:  # retransmitted, or a new attempt: the latest SYN is the one to answer
                request.ip = ip
                request.syn = header
                request.packet = bytes(packet)
                self.counters["tcp_request_syn_retransmits"] += 1
            return True  # nothing else belongs before our answer (RFC 9293 ignores RST in LISTEN)
        request = self._answered.get(key)
        if request is None or not is_syn:
            return False
        if header.seq != request.syn.seq:  # a new attempt on the same 4-tuple: a new request
            del self._answered[key]
            return False
        if self._reply_allowed(now):
            self.counters["tcp_request_answers_repeated"] += 1
            self._send_answer(request)
        return True

    def tcp_accept_request(self, request: TcpRequest, now: float) -> TcpSocket:
        self.last_now = now
        self._check_open()
        request.check_pending()
        self._forget_pending(request)
        request.state = RequestState.ACCEPTED
        ip = request.ip
        listener = request.listener
        sock = self._new_tcp(ip.dst, request.dst[1], ip.src, request.src[1], now, listener)
        listener.embryonic.add(sock)
        request.socket = sock
        self.counters["tcp_requests_accepted"] += 1
        sock.accept_syn(request.syn, now)
        return sock

    def tcp_refuse_request(self, request: TcpRequest, now: float) -> None:
        self.last_now = now
        self._check_open()
        request.check_pending()
        self._answer(request, RequestState.REFUSED, now)
        self.counters["tcp_requests_refused"] += 1

    def tcp_reject_request(self, request: TcpRequest, reason: Unreachable, now: float) -> None:
        self.last_now = now
        self._check_open()
        if not isinstance(reason, Unreachable):
            raise TypeError(f"reason must be an Unreachable member, not {reason!r}")
        request.check_pending()
        request.reason = reason
        self._answer(request, RequestState.REJECTED, now)
        self.counters["tcp_requests_rejected"] += 1

    def _forget_pending(self, request: TcpRequest) -> None:
        if self._pending.get(request.key) is request:
            del self._pending[request.key]
            request.listener.pending -= 1

    def _answer(self, request: TcpRequest, state: RequestState, now: float) -> None:
        """Answer a pending request for the application (or for it, on expiry) and remember the
        answer, so that a retransmission of the same SYN gets it again."""
        self._forget_pending(request)
        request.state = state
        self._send_answer(request)
        request.deadline = now + ANSWER_MEMORY
        answered = self._answered
        answered.pop(request.key, None)
        answered[request.key] = request
        while len(answered) > _ANSWERS_REMEMBERED:
            answered.popitem(last=False)

    def _send_answer(self, request: TcpRequest) -> None:
        ip = request.ip
        if request.state is RequestState.REFUSED:
            self._send_reset_for(ip, request.syn, 0)
            return
        v4_code, v6_code = _UNREACHABLE_CODES[request.reason or Unreachable.HOST]
        quote = error_quote(request.packet)
        message: Icmpv4Message | Icmpv6Message
        if ip.version == 4:
            message = Icmpv4Message(ICMPV4_DEST_UNREACHABLE, v4_code, data=quote)
        else:
            message = Icmpv6Message(ICMPV6_DEST_UNREACHABLE, v6_code, data=quote)
        self._send_icmp(ip, message)
        self.counters["icmp_unreachable_sent"] += 1

    def _expire_requests(self, now: float) -> None:
        answered = self._answered
        while answered:
            request = next(iter(answered.values()))
            if request.deadline > now:
                break
            answered.popitem(last=False)
        pending = self._pending
        while pending:
            request = next(iter(pending.values()))
            if request.deadline > now:
                break
            self.counters["tcp_requests_expired"] += 1
            request.reason = Unreachable.HOST
            if self._reply_allowed(now):
                self._answer(request, RequestState.EXPIRED, now)
            else:
                self._forget_pending(request)
                request.state = RequestState.EXPIRED

    def _reset_reply(self, ip: IpPacket, header: TcpHeader, payload_len: int, now: float) -> None:
        """RFC 9293 3.10.7.1: a RST for a segment that belongs to no connection (rate limited)."""
        if not self._reply_allowed(now):
            return
        self._send_reset_for(ip, header, payload_len)

    def _send_reset_for(self, ip: IpPacket, header: TcpHeader, payload_len: int) -> None:
        flags = header.flags
        if flags & ACK:
            reply = TcpHeader(header.dst_port, header.src_port, header.ack, 0, RST, 0)
        else:
            length = payload_len + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            reply = TcpHeader(header.dst_port, header.src_port, 0, (header.seq + length) & _M32, RST | ACK, 0)
        self._send_ip(ip.dst, ip.src, PROTO_TCP, emit_tcp(reply, b"", ip.dst, ip.src))
        self.counters["tcp_resets_sent"] += 1

    def _reply_allowed(self, now: float) -> bool:
        rate = self.config.reply_rate_limit
        tokens = min(rate, self._reply_tokens + (now - self._reply_at) * rate)
        self._reply_at = now
        if tokens < 1.0:
            self._reply_tokens = tokens
            self.counters["replies_rate_limited"] += 1
            return False
        self._reply_tokens = tokens - 1.0
        return True

    # ------------------------------------------------------------------ UDP

    def udp_bind(self, local: Address | None = None) -> UdpSocket:
        """Bind a UDP port: ``None`` or port 0 picks an ephemeral one; ``None`` binds both families."""
        self._check_open()
        if local is None:
            families = tuple(f for f, ip in ((4, self._ip4), (6, self._ip6)) if ip is not None)
            port = 0
            text = "::" if 6 in families else "0.0.0.0"
        else:
            family, _ip = self._bind_address(local[0])
            families = (family,)
            port = _port(local[1], allow_zero=True)
            text = local[0] if _ip is None else self._text(_ip)
        if not families:
            raise AddressNotAvailable("the interface has no address")
        if port == 0:
            port = pick_ephemeral_port(
                self._rng,
                self.config.ephemeral_ports,
                lambda p: any((f, p) in self._udp for f in families),
            )
        elif any((f, port) in self._udp for f in families):
            raise AddressInUse(f"UDP port {port} is already bound")
        sock = UdpSocket(self, (text, port), families=families, capacity=self.config.udp_queue)
        for family in families:
            self._udp[(family, port)] = sock
        return sock

    def udp_bind_any(self) -> UdpSocket:
        """Forwarder mode: a socket for datagrams to any address and port not otherwise bound."""
        self._check_open()
        if not self.config.forward_all:
            raise AddressNotAvailable("udp_bind_any needs StackConfig.forward_all")
        if self._udp_any is not None:
            raise AddressInUse("a forwarder UDP socket exists")
        sock = UdpSocket(self, ("*", 0), families=(4, 6), capacity=self.config.udp_queue, forward_all=True)
        self._udp_any = sock
        return sock

    def udp_send(self, sock: UdpSocket, data: bytes, src: Address | None, dst: Address, now: float) -> None:
        self.last_now = now
        if self._closed:
            raise StackClosed("the network stack shut down")
        remote_ip = _packed(dst[0])
        remote_port = _port(dst[1], allow_zero=False)
        family = 4 if len(remote_ip) == 4 else 6
        if src is None:
            if sock.forward_all:
                raise AddressNotAvailable("a forwarder socket sends with send_from")
            if family not in sock.families:
                raise AddressNotAvailable(f"the socket is not bound for IPv{family}")
            local_ip = self._own_address(len(remote_ip))
            local_port = sock.port
        else:
            if not sock.forward_all:
                raise AddressNotAvailable("send_from is for forwarder sockets")
            local_ip = _packed(src[0])
            local_port = _port(src[1], allow_zero=False)
            if len(local_ip) != len(remote_ip):
                raise AddressNotAvailable("source and destination are of different families")
        overhead = 28 if len(remote_ip) == 4 else 48
        mtu = self.path_mtu(remote_ip, now)
        if len(data) + overhead > mtu:
            what = "MTU" if mtu == self.config.mtu else "path MTU (learnt from ICMP)"
            raise MessageTooLarge(
                f"{len(data)} bytes of UDP payload exceed the {mtu - overhead} the {what} allows"
            )
        datagram = emit_udp(UdpHeader(local_port, remote_port), data, local_ip, remote_ip)
        self._send_ip(local_ip, remote_ip, PROTO_UDP, datagram)
        self.counters["udp_sent"] += 1

    def udp_close(self, sock: UdpSocket) -> None:
        if self._udp_any is sock:
            self._udp_any = None
        for family in sock.families:
            if self._udp.get((family, sock.port)) is sock:
                del self._udp[(family, sock.port)]

    def _on_udp(self, ip: IpPacket, own: bool, packet: bytes, now: float) -> None:
        header, data = parse_udp(ip.payload, ip.src, ip.dst)
        stats = self.counters
        sock = self._udp.get((ip.version, header.dst_port)) if own else None
        if sock is None:
            sock = self._udp_any
        if sock is None:
            stats["udp_no_socket"] += 1
            if own:
                self._port_unreachable(ip, packet, now)
            return
        if sock.deliver(data, (self._text(ip.src), header.src_port), (self._text(ip.dst), header.dst_port)):
            stats["udp_received"] += 1
        else:
            stats["udp_queue_drops"] += 1

    def _port_unreachable(self, ip: IpPacket, packet: bytes, now: float) -> None:
        if not self._reply_allowed(now):
            return
        quote = error_quote(packet)
        if ip.version == 4:
            self._send_icmp(ip, Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_PORT_UNREACHABLE, data=quote))
        else:
            self._send_icmp(ip, Icmpv6Message(ICMPV6_DEST_UNREACHABLE, ICMPV6_PORT_UNREACHABLE, data=quote))
        self.counters["icmp_unreachable_sent"] += 1

    # ------------------------------------------------------------------ ICMP

    def _on_icmpv4(self, ip: IpPacket, own: bool, now: float) -> None:
        message = parse_icmpv4(ip.payload)
        if message.type == ICMPV4_ECHO_REQUEST:
            if own:
                self._send_icmp(
                    ip, Icmpv4Message(ICMPV4_ECHO_REPLY, 0, message.ident, message.seq, data=message.data)
                )
                self.counters["icmp_echo_replies"] += 1
            return
        self._on_icmp_error(4, message.type, message.code, message.mtu, message.original, now)

    def _on_icmpv6(self, ip: IpPacket, own: bool, now: float) -> None:
        message = parse_icmpv6(ip.payload, ip.src, ip.dst)
        if message.type == ICMPV6_ECHO_REQUEST:
            if own:
                self._send_icmp(
                    ip, Icmpv6Message(ICMPV6_ECHO_REPLY, 0, message.ident, message.seq, data=message.data)
                )
                self.counters["icmp_echo_replies"] += 1
            return
        self._on_icmp_error(6, message.type, message.code, message.mtu, message.original, now)

    def _on_icmp_error(self, version: int, kind: int, code: int, mtu: int, quote: bytes, now: float) -> None:
        stats = self.counters
        verdict = classify_icmp_error(version, kind, code, mtu) if quote else None
        if verdict is None:
            stats["icmp_ignored"] += 1
            return
        stats["icmp_errors_received"] += 1
        flow = quoted_flow(quote)
        if verdict.error is not None:  # again, naming the destination in the error
            where = f"{self._text(flow.dst)}:{flow.dst_port}" if flow.dst_port else self._text(flow.dst)
            verdict = classify_icmp_error(version, kind, code, mtu, where) or verdict
        credible = False
        mtu = self._mtu_floor(version, verdict.mtu) if verdict.mtu else 0
        if mtu and _quoted_length(quote) <= mtu:
            stats["icmp_errors_ignored"] += 1  # a packet that fitted cannot have been too big
            return
        if flow.protocol == PROTO_TCP:
            sock = self._tcp.get((flow.dst, flow.dst_port, flow.src, flow.src_port))
            seq = flow.tcp_seq
            if sock is not None and seq is not None:
                if mtu:
                    credible = sock.on_packet_too_big(seq, mtu, now)
                elif verdict.error is not None:
                    credible = sock.on_icmp_error(seq, verdict.error, now)
        elif flow.protocol == PROTO_UDP:
            own = flow.src == self._ip4 or flow.src == self._ip6
            udp = self._udp.get((version, flow.src_port)) if own else self._udp_any
            if udp is not None and verdict.port_unreachable:
                udp.error = ConnectionRefused(f"{self._text(flow.dst)}:{flow.dst_port} is unreachable")
                self._wake(udp)
                credible = True
            elif udp is not None and mtu:
                credible = True  # a datagram of ours was too big: later sends of that size raise
        if credible and mtu and self._pmtu.learn(flow.dst, mtu, now):
            stats["pmtu_learned"] += 1
        if not credible:
            stats["icmp_errors_ignored"] += 1

    def path_mtu(self, destination: bytes, now: float) -> int:
        """The MTU towards ``destination``: the interface's, or less if ICMP said so lately."""
        learnt = self._pmtu.get(destination, now)
        return self.config.mtu if learnt is None or learnt > self.config.mtu else learnt

    def _mtu_floor(self, version: int, mtu: int) -> int:
        """Reported MTUs below the protocol minimum (IPv6) or a sane floor (IPv4) are raised to it."""
        return max(mtu, 1280 if version == 6 else self.config.tcp.min_ipv4_mtu)

    # ------------------------------------------------------------------ helpers

    def _wake(self, sock: TcpSocket | TcpListener | UdpSocket) -> None:
        if not sock._wake_queued:
            sock._wake_queued = True
            self._wakeups.append(sock)

    tcp_wake = _wake  # the TcpHost and UdpHost names for it: no extra call on the hot path
    udp_wake = _wake

    def _send_ip(self, src: bytes, dst: bytes, protocol: int, body: bytes) -> None:
        packet = emit_ip(src, dst, protocol, body, ttl=self.config.ttl)
        if len(packet) > self.config.mtu:
            self._oversize(packet)
            return
        self._transmit.append(packet)
        self.counters["packets_out"] += 1

    def _oversize(self, packet: bytes) -> None:
        """Never put a packet larger than the MTU on the device (it would vanish there)."""
        self.counters["packets_oversize"] += 1
        logger.debug("netstack: dropped a %d-byte packet over the %d-byte MTU", len(packet), self.config.mtu)

    def _send_icmp(self, ip: IpPacket, message: Icmpv4Message | Icmpv6Message) -> None:
        """``message`` back to the sender of ``ip``, in its family; an error's quote is cut so
        that the reply fits the MTU (RFC 1812 4.3.2.3, RFC 4443 2.4 (c))."""
        if message.is_error and message.data:
            room = self.config.mtu - (20 if ip.version == 4 else 40) - 8
            if len(message.data) > room:
                message.data = message.data[:room]
        if isinstance(message, Icmpv4Message):
            self._send_ip(ip.dst, ip.src, PROTO_ICMP, emit_icmpv4(message))
        else:
            self._send_ip(ip.dst, ip.src, PROTO_ICMPV6, emit_icmpv6(message, ip.dst, ip.src))

    def _check_open(self) -> None:
        if self._closed:
            raise StackClosed("the network stack shut down")

    def _own_address(self, size: int) -> bytes:
        own = self._ip4 if size == 4 else self._ip6
        if own is None:
            raise HostUnreachable(f"the interface has no IPv{4 if size == 4 else 6} address")
        return own

    def _bind_address(self, text: str) -> tuple[int, bytes | None]:
        """(family, own address or None for the wildcard) for a bind/listen address."""
        packed = _packed(text)
        family = 4 if len(packed) == 4 else 6
        if packed == bytes(len(packed)):
            self._own_address(len(packed))
            return family, None
        if packed != self._ip4 and packed != self._ip6:
            raise AddressNotAvailable(f"{text} is not an address of this interface")
        return family, packed

    def _text(self, packed: bytes) -> str:
        cache = self._text_cache
        text = cache.get(packed)
        if text is None:
            if len(cache) >= _MAX_TEXT_CACHE:
                cache.clear()
            text = cache[packed] = str(ipaddress.ip_address(packed))
        return text


def _quoted_length(quote: bytes) -> int:
    """The length the quoted IP packet had on the wire (its header says so; the quote is cut)."""
    if quote[0] >> 4 == 4:
        return int.from_bytes(quote[2:4], "big")
    return 40 + int.from_bytes(quote[4:6], "big")


def _packed(text: str, version: int | None = None) -> bytes:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise AddressNotAvailable(f"{text!r} is not an IP address") from None
    if version is not None and address.version != version:
        raise AddressNotAvailable(f"{text!r} is not an IPv{version} address")
    return address.packed


def _port(port: int, *, allow_zero: bool) -> int:
    if not isinstance(port, int) or not (0 if allow_zero else 1) <= port <= 0xFFFF:
        raise ValueError(f"bad port {port!r}")
    return port
