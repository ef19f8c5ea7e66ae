"""The exit's DNS server: answers queries from a static map, else from the host's resolver.

``await responder.answer(query_bytes)`` is the whole service (reply bytes, or None to drop);
``serve_udp(sock)`` runs it on a forwarder UDP socket (each reply sent from the address its
query went to), ``serve_udp_port(sock)`` on a socket bound to port 53, and ``serve_tcp(stream)``
on one TCP connection (RFC 7766: a 2-byte length before each message, several queries per
connection, closed after ``tcp_idle_timeout`` without one).

* Static names (``hosts``) answer first: A with the map's IPv4 entries, AAAA with its IPv6 ones,
  NODATA for a family the entry lacks. Without the host's resolver, other names are NXDOMAIN.
* Other names go to the host's resolver (``anyio.getaddrinfo``, as the host itself would look
  them up, /etc/hosts and search domains included) and the result, positive or negative, is
  kept ``system_ttl`` / ``negative_ttl`` seconds; lookups of one name in flight share one call.
  A name that is not a plain host name (escapes, an IP literal) gets REFUSED or NXDOMAIN and
  never reaches ``getaddrinfo``. A lookup that fails or takes longer than ``lookup_timeout``
  (wall-clock seconds: it is a real OS call) is SERVFAIL.
* At most ``max_pending`` queries wait for the host's resolver at once; beyond, queries are
  dropped and counted (the client retries), so a flood cannot grow tasks or threads.
* Bad input never raises: no header → dropped; a header but a bad body → FORMERR; other opcodes
  → NOTIMP; other classes and zone transfers → REFUSED; EDNS version > 0 → BADVERS. ``stats()``
  counts each.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import anyio
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream

from smolmix_core.clock import Clock, RealClock
from smolmix_core.dns._deadline import DeadlineExpired, call_before
from smolmix_core.dns.answer import Answer
from smolmix_core.dns.cache import DnsCache
from smolmix_core.dns.message import DEFAULT_EDNS_PAYLOAD, HEADER_SIZE, Flag, Rcode, decode_header
from smolmix_core.dns.reply import (
    Drop,
    HostAddresses,
    Immediate,
    Lookup,
    StaticHosts,
    make_reply,
    triage,
    truncate,
)
from smolmix_core.dns.transport import Address, DatagramSocket, ForwardedDatagramSocket
from smolmix_core.errors import MessageTooLarge, NetstackError, StackClosed

__all__ = ["DnsResponder"]

logger = logging.getLogger("smolmix.dns")


_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NOT_FOUND = frozenset({socket.EAI_NONAME})
_NO_DATA = frozenset(
    code for code in (getattr(socket, "EAI_NODATA", None), getattr(socket, "EAI_ADDRFAMILY", None)) if code
)
_STREAM_ENDED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


@dataclass(eq=False)
class _Flight:
    """A host-resolver lookup in progress that queries for the same name wait for."""

    done: anyio.Event = field(default_factory=anyio.Event)
    result: tuple[Lookup, int] | None = None


class DnsResponder:
    def __init__(
        self,
        hosts: Mapping[str, str | Sequence[str]] | None = None,
        *,
        use_system_resolver: bool = True,
        static_ttl: int = 60,
        system_ttl: float = 30.0,
        negative_ttl: float = 5.0,
        lookup_timeout: float = 5.0,
        max_pending: int = 128,
        cache_size: int = 4096,
        max_udp_payload: int = DEFAULT_EDNS_PAYLOAD,
        tcp_idle_timeout: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        """``hosts`` maps names to an address or a list of them (``ValueError`` for anything
        else); TTLs and timeouts are seconds, the TCP idle timeout on ``clock``.
        ``max_udp_payload`` caps UDP replies (an EDNS client may ask for less, a plain one gets
        512); a reply the path's MTU cannot carry goes out truncated, and the client uses TCP."""
        self.hosts = StaticHosts(hosts)
        self.use_system_resolver = use_system_resolver
        self.static_ttl = static_ttl
        self.lookup_timeout = lookup_timeout
        self.max_pending = max_pending
        self.max_udp_payload = max_udp_payload
        self.tcp_idle_timeout = tcp_idle_timeout
        self.clock: Clock = clock if clock is not None else RealClock()
        self._cache = DnsCache(cache_size, min_ttl=0.0, max_ttl=system_ttl, max_negative_ttl=negative_ttl)
        self._system_ttl = system_ttl
        self._negative_ttl = negative_ttl
        self._in_flight: dict[str, _Flight] = {}
        self._pending = 0
        self._counts = dict.fromkeys(
            (
                "queries_udp",
                "queries_tcp",
                "answered_static",
                "answered_system",
                "system_lookups",
                "system_lookup_failures",
                "system_lookup_timeouts",
                "noerror",
                "nxdomain",
                "servfail",
                "formerr",
                "notimp",
                "refused",
                "badvers",
                "truncated",
                "truncated_for_path",
                "dropped_malformed",
                "dropped_responses",
                "dropped_overload",
                "send_errors",
                "tcp_connections",
                "tcp_idle_closed",
                "internal_errors",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<DnsResponder static={len(self.hosts)} system={self.use_system_resolver}>"

    def stats(self) -> dict[str, int]:
        snapshot = dict(self._counts)
        snapshot["pending"] = self._pending
        snapshot["cache_entries"] = len(self._cache)
        return snapshot

    # ------------------------------------------------------------------ the service

    async def answer(self, query: bytes, *, tcp: bool = False) -> bytes | None:
        """The reply to ``query`` (sized for UDP unless ``tcp``), or None to drop it. Never raises
        for any input."""
        counts = self._counts
        counts["queries_tcp" if tcp else "queries_udp"] += 1
        try:
            verdict = triage(query, tcp=tcp, max_udp_payload=self.max_udp_payload)
            if isinstance(verdict, Drop):
                counts[verdict.reason] += 1
                return None
            if isinstance(verdict, Immediate):
                self._count_rcode(verdict.rcode)
                return verdict.reply
            name = verdict.question.name
            lookup: Lookup
            static = self.hosts.get(name)
            if static is not None:
                lookup, ttl = static, self.static_ttl
                counts["answered_static"] += 1
            elif not self.use_system_resolver:
                lookup, ttl = Rcode.NXDOMAIN, 0
            else:
                found = await self._system_lookup(name)
                if found is None:
                    counts["dropped_overload"] += 1
                    return None
                lookup, ttl = found
                counts["answered_system"] += 1
            reply = make_reply(verdict, lookup, ttl=ttl)
        except Exception:  # a bug must not take the exit's DNS down; say so loudly
            counts["internal_errors"] += 1
            logger.exception("dns: answering a query failed")
            return None
        header = decode_header(reply)
        self._count_rcode(header.rcode)
        if header.flags & Flag.TC:
            counts["truncated"] += 1
        return reply

    async def serve_udp(self, sock: ForwardedDatagramSocket) -> None:
        """Answer every datagram arriving on a forwarder socket, each from the address it was sent
        to, until the socket closes. Queries are answered concurrently."""

        async def reply(data: bytes, source: Address, destination: Address) -> None:
            await sock.send_from(data, destination, source)

        await self._serve_datagrams(sock.recv_from_any, reply)

    async def serve_udp_port(self, sock: DatagramSocket) -> None:
        """``serve_udp`` for a socket bound to one port (``await stack.udp_socket(53)``)."""

        async def receive() -> tuple[bytes, Address, Address]:
            data, source = await sock.recv_from()
            return data, source, source

        async def reply(data: bytes, source: Address, destination: Address) -> None:
            await sock.send_to(data, source)

        await self._serve_datagrams(receive, reply)

    async def serve_tcp(self, stream: ByteStream) -> None:
        """Answer length-prefixed queries on one connection until the client closes it, it stays
        idle for ``tcp_idle_timeout``, or it sends something unanswerable; then close it."""
        self._counts["tcp_connections"] += 1
        reader = BufferedByteReceiveStream(stream)
        try:
            while True:
                try:
                    prefix = await self._read(reader, 2)
                    length = int.from_bytes(prefix, "big")
                    if length < HEADER_SIZE:
                        self._counts["dropped_malformed"] += 1
                        return
                    query = await self._read(reader, length)
                except DeadlineExpired:
                    self._counts["tcp_idle_closed"] += 1
                    return
                reply = await self.answer(query, tcp=True)
                if reply is None:
                    return
                await stream.send(len(reply).to_bytes(2, "big") + reply)
        except _STREAM_ENDED:
            return
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    # ------------------------------------------------------------------ helpers

    async def _read(self, reader: BufferedByteReceiveStream, size: int) -> bytes:
        deadline = self.clock.now() + self.tcp_idle_timeout
        return await call_before(self.clock, deadline, lambda: reader.receive_exactly(size))

    async def _serve_datagrams(
        self,
        receive: Callable[[], Awaitable[tuple[bytes, Address, Address]]],
        reply: Callable[[bytes, Address, Address], Awaitable[None]],
    ) -> None:
        async with anyio.create_task_group() as group:
            while True:
                try:
                    data, source, destination = await receive()
                except (anyio.ClosedResourceError, anyio.EndOfStream, StackClosed):
                    break
                except NetstackError:  # an ICMP error about a reply we sent
                    self._counts["send_errors"] += 1
                    continue
                group.start_soon(self._answer_datagram, reply, data, source, destination)
            group.cancel_scope.cancel()

    async def _answer_datagram(
        self,
        reply: Callable[[bytes, Address, Address], Awaitable[None]],
        data: bytes,
        source: Address,
        destination: Address,
    ) -> None:
        answer = await self.answer(data)
        if answer is None:
            return
        try:
            try:
                await reply(answer, source, destination)
            except MessageTooLarge:  # the path is narrower than max_udp_payload: send TC instead
                self._counts["truncated_for_path"] += 1
                await reply(truncate(answer), source, destination)
        except (NetstackError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            self._counts["send_errors"] += 1
            logger.debug("dns: could not send a reply to %s: %s", source, exc)

    def _count_rcode(self, rcode: int) -> None:
        name = Rcode(rcode).name.lower() if rcode in Rcode._value2member_map_ else None
        if name is not None and name in self._counts:
            self._counts[name] += 1

    async def _system_lookup(self, name: str) -> tuple[Lookup, int] | None:
        """What the host's resolver says about ``name``, with the TTL to announce; None when
        ``max_pending`` queries already wait for it."""
        if not _HOST_NAME.fullmatch(name) or len(name) > 253:
            return Rcode.REFUSED, 0
        if _numeric(name):
            return Rcode.NXDOMAIN, 0
        key = name.lower()
        cached = self._cache.get((key, 0), self.clock.now())
        if cached is not None:
            return _lookup_of(cached), cached.ttl
        if self._pending >= self.max_pending:
            return None
        self._pending += 1
        try:
            flight = self._in_flight.get(key)
            if flight is not None:
                await flight.done.wait()
                return flight.result if flight.result is not None else (Rcode.SERVFAIL, 0)
            flight = self._in_flight[key] = _Flight()
            try:
                flight.result = self._remember(key, await self._getaddrinfo(name))
                return flight.result
            finally:
                del self._in_flight[key]
                flight.done.set()
        finally:
            self._pending -= 1

    def _remember(self, key: str, lookup: Lookup) -> tuple[Lookup, int]:
        """Cache a lookup's outcome (not a failure) and say what TTL to announce with it."""
        if isinstance(lookup, HostAddresses) and (lookup.ipv4 or lookup.ipv6):
            answer = Answer((*lookup.ipv4, *lookup.ipv6), int(self._system_ttl))
        elif isinstance(lookup, HostAddresses) or lookup == Rcode.NXDOMAIN:
            rcode = Rcode.NOERROR if isinstance(lookup, HostAddresses) else Rcode.NXDOMAIN
            answer = Answer((), int(self._negative_ttl), rcode)
        else:
            return lookup, 0
        self._cache.put((key, 0), answer, self.clock.now())
        return lookup, answer.ttl

    async def _getaddrinfo(self, name: str) -> Lookup:
        self._counts["system_lookups"] += 1
        try:
            with anyio.fail_after(self.lookup_timeout):
                infos = await anyio.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except TimeoutError:
            self._counts["system_lookup_timeouts"] += 1
            return Rcode.SERVFAIL
        except socket.gaierror as exc:
            if exc.errno in _NOT_FOUND:
                return Rcode.NXDOMAIN
            if exc.errno in _NO_DATA:
                return HostAddresses()
            self._counts["system_lookup_failures"] += 1
            return Rcode.SERVFAIL
        except (OSError, UnicodeError):
            self._counts["system_lookup_failures"] += 1
            return Rcode.SERVFAIL
        texts = (str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6))
        return HostAddresses.of(text.partition("%")[0] for text in texts)


def _numeric(name: str) -> bool:
    """An address written as a name (``getaddrinfo`` would hand it back, DNS would not)."""
    if name.rpartition(".")[2].isdigit():
        return True
    try:
        socket.inet_aton(name)
    except OSError:
        return False
    return True


def _lookup_of(answer: Answer) -> Lookup:
    if answer.rcode == Rcode.NXDOMAIN:
        return Rcode.NXDOMAIN
    return HostAddresses.of(answer.addresses)
