"""The stub resolver: names to addresses by asking DNS servers over a ``DnsTransport``.

``DnsResolver(transport, servers).resolve(name)`` sends its queries through ``transport`` — in
smolmix the tunnel's userspace ``Stack``, so names are resolved at the exit and never by the OS.

* IP literals come back as they are, without a query.
* ``family=0`` asks for A and AAAA at once; the answer interleaves the families, IPv4 first
  (``prefer_ipv6=True`` for IPv6 first), keeping each family in the server's order. A caller
  that tries each address in turn thus alternates families, as Happy Eyeballs (RFC 8305 4) does.
* Each lookup uses a fresh UDP socket (a random source port) and a random query id; a datagram
  is taken as the answer only if it comes from a server we asked and echoes the id and the
  question (``answer.is_reply_to``): an off-path spoofer must guess the 16-bit id and the port
  (about 30 bits with the stack's 16384 ephemeral ports) and echo the name. Everything else is
  ignored and counted.
* Servers are asked in order, each waiting ``timeout`` seconds, for ``attempts`` rounds; an answer
  to an earlier send still counts when it arrives late. A server that answers SERVFAIL, REFUSED
  or NOTIMP, or whose port is unreachable, is not asked again for that lookup; FORMERR or NOTIMP
  to a query with EDNS is retried once without it (RFC 6891 7). A truncated answer (TC) is
  asked again over TCP (RFC 7766: a 2-byte length before each message).
* Answers follow CNAME chains within the response and are cached (``DnsCache``) for their TTL;
  negative answers too, for the SOA's negative TTL or ``negative_ttl`` without one. Lookups of
  the same name and type in flight at once share one query.
* Failures are ``ResolutionError``s (``socket.gaierror``): ``NameNotFound`` (NXDOMAIN, or no
  address of the family), ``DnsTimeout`` (no answer), ``DnsServerFailure`` (every server failed);
  a name DNS cannot carry raises ``InvalidDomainName``; a closed stack's ``StackClosed`` passes
  through.
"""

from __future__ import annotations

import copy
import ipaddress
import logging
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

import anyio
from anyio.lowlevel import checkpoint
from anyio.streams.buffered import BufferedByteReceiveStream

from smolmix_core.clock import Clock, RealClock
from smolmix_core.dns._deadline import DeadlineExpired, call_before
from smolmix_core.dns.answer import Answer, is_reply_to, read_answer
from smolmix_core.dns.cache import DnsCache
from smolmix_core.dns.message import (
    DEFAULT_EDNS_PAYLOAD,
    Flag,
    Message,
    Question,
    Rcode,
    RecordType,
    build_query,
    decode_header,
    decode_message,
)
from smolmix_core.dns.names import canonical_name
from smolmix_core.dns.transport import Address, DatagramSocket, DnsTransport
from smolmix_core.errors import (
    DnsServerFailure,
    DnsTimeout,
    MalformedDnsMessage,
    NameNotFound,
    NetstackError,
    ResolutionError,
    StackClosed,
)

__all__ = ["DnsResolver"]

logger = logging.getLogger("smolmix.dns")

DNS_PORT = 53

_TCP_FAILURES = (
    anyio.IncompleteRead,
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
    MalformedDnsMessage,
)


@dataclass(eq=False)
class _Flight:
    """A lookup in progress that later askers of the same name and type wait for."""

    done: anyio.Event = field(default_factory=anyio.Event)
    answer: Answer | None = None
    error: ResolutionError | None = None


class DnsResolver:
    def __init__(
        self,
        transport: DnsTransport,
        servers: Sequence[str | Address],
        *,
        timeout: float = 5.0,
        attempts: int = 2,
        cache_size: int = 1024,
        clock: Clock | None = None,
        prefer_ipv6: bool = False,
        negative_ttl: int = 15,
        edns_payload: int | None = DEFAULT_EDNS_PAYLOAD,
    ) -> None:
        """``servers`` are IP addresses (port 53) or ``(ip, port)`` pairs, asked in order;
        ``timeout`` is per server and attempt, in the clock's seconds; ``cache_size`` 0 disables
        the cache."""
        if isinstance(servers, str):
            servers = [servers]
        if not servers:
            raise ValueError("a resolver needs at least one server")
        if timeout <= 0 or attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        self._transport = transport
        self.servers = [_server_address(server) for server in servers]
        self._server_ips = {(ipaddress.ip_address(ip), port): (ip, port) for ip, port in self.servers}
        self.timeout = timeout
        self.attempts = attempts
        self.clock: Clock = clock if clock is not None else RealClock()
        self.prefer_ipv6 = prefer_ipv6
        self.negative_ttl = negative_ttl
        self.edns_payload = edns_payload
        self.cache = DnsCache(cache_size)
        self._flights: dict[tuple[str, int], _Flight] = {}
        self._counts = dict.fromkeys(
            (
                "lookups",
                "coalesced",
                "udp_sent",
                "tcp_queries",
                "truncated",
                "edns_fallbacks",
                "ignored_source",
                "ignored_malformed",
                "ignored_mismatch",
                "server_failures",
                "timeouts",
            ),
            0,
        )

    def __repr__(self) -> str:
        return f"<DnsResolver servers={self.servers}>"

    def _server_of(self, source: Address) -> Address | None:
        try:
            return self._server_ips.get((ipaddress.ip_address(source[0]), source[1]))
        except ValueError:
            return None

    def stats(self) -> dict[str, int]:
        """Query and spoofing counters, and the cache's (``cache_*``)."""
        snapshot = dict(self._counts)
        for key, value in self.cache.counters.items():
            snapshot[f"cache_{key}"] = value
        snapshot["cache_entries"] = len(self.cache)
        return snapshot

    # ------------------------------------------------------------------ public API

    async def resolve(self, name: str, family: int = 0) -> list[str]:
        """The addresses of ``name`` (``family``: 0, ``AF_INET`` or ``AF_INET6``), in the order
        a caller should try them; never empty (a lookup without addresses raises)."""
        await checkpoint()
        if family not in (0, socket.AF_UNSPEC, socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"family must be 0, AF_INET or AF_INET6, not {family!r}")
        literal = _ip_literal(name)
        if literal is not None:
            text, version = literal
            if family and version != (4 if family == socket.AF_INET else 6):
                raise NameNotFound(f"{name} is an IPv{version} address, not of the family asked for", name)
            return [text]
        qname = canonical_name(name)
        if qname == ".":
            raise NameNotFound("the root domain has no address", name)
        if family == socket.AF_INET:
            rtypes: tuple[int, ...] = (RecordType.A,)
        elif family == socket.AF_INET6:
            rtypes = (RecordType.AAAA,)
        else:
            rtypes = (RecordType.A, RecordType.AAAA)
        outcomes: dict[int, Answer | Exception] = {}
        now = self.clock.now()
        for rtype in rtypes:
            cached = self.cache.get((qname.lower(), rtype), now)
            if cached is not None:
                outcomes[rtype] = cached
        missing = [rtype for rtype in rtypes if rtype not in outcomes]
        if len(missing) == 1:
            outcomes[missing[0]] = await self._settle(qname, missing[0])
        elif missing:

            async def collect(rtype: int) -> None:
                outcomes[rtype] = await self._settle(qname, rtype)

            async with anyio.create_task_group() as group:
                for rtype in missing:
                    group.start_soon(collect, rtype)
        return self._addresses(name, outcomes)

    async def _settle(self, qname: str, rtype: int) -> Answer | Exception:
        """The lookup's answer or the exception it ended with (kept out of exception groups)."""
        try:
            return await self._lookup(qname, rtype)
        except Exception as exc:
            return exc

    def _addresses(self, name: str, outcomes: dict[int, Answer | Exception]) -> list[str]:
        found = {
            rtype: list(outcome.addresses)
            for rtype, outcome in outcomes.items()
            if isinstance(outcome, Answer) and outcome.addresses
        }
        if found:
            first, second = (
                (RecordType.AAAA, RecordType.A) if self.prefer_ipv6 else (RecordType.A, RecordType.AAAA)
            )
            return _interleave(found.get(first, []), found.get(second, []))
        errors = [outcome for outcome in outcomes.values() if isinstance(outcome, Exception)]
        for error in errors:
            if not isinstance(error, ResolutionError):
                raise error
        if any(isinstance(o, Answer) and o.rcode == Rcode.NXDOMAIN for o in outcomes.values()):
            raise NameNotFound(f"{name}: no such name (NXDOMAIN)", name)
        if errors:
            raise errors[0]
        kinds = " or ".join("IPv4" if rtype == RecordType.A else "IPv6" for rtype in outcomes)
        raise NameNotFound(f"{name}: the name has no {kinds} address", name)

    # ------------------------------------------------------------------ one (name, type)

    async def _lookup(self, qname: str, rtype: int) -> Answer:
        """The answer for a (name, type) the cache did not have: shared with a lookup already in
        flight, or asked for anew."""
        key = (qname.lower(), rtype)
        while (flight := self._flights.get(key)) is not None:
            self._counts["coalesced"] += 1
            await flight.done.wait()
            if flight.answer is not None:
                return flight.answer
            if flight.error is not None:
                raise copy.copy(flight.error) from flight.error.__cause__
            # the lookup we waited for was cancelled; another waiter may have finished since
            cached = self.cache.get(key, self.clock.now())
            if cached is not None:
                return cached
        flight = _Flight()
        self._flights[key] = flight
        try:
            answer = await self._query(Question(qname, rtype))
            self.cache.put(key, answer, self.clock.now())
            flight.answer = answer
            return answer
        except ResolutionError as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[key]
            flight.done.set()

    async def _query(self, question: Question) -> Answer:
        self._counts["lookups"] += 1
        sock = await self._transport.udp_socket()
        try:
            return await _Exchange(self, question, sock).run()
        finally:
            with anyio.CancelScope(shield=True):
                await sock.aclose()


class _Exchange:
    """One lookup's conversation with the servers: one socket, one query id, the servers' fates."""

    def __init__(self, resolver: DnsResolver, question: Question, sock: DatagramSocket) -> None:
        self.resolver = resolver
        self.counts = resolver._counts
        self.clock = resolver.clock
        self.question = question
        self.sock = sock
        self.query_id = secrets.randbelow(0x10000)
        self.asked: set[Address] = set()
        self.failed: dict[Address, str] = {}
        self.without_edns: set[Address] = set()

    async def run(self) -> Answer:
        resolver = self.resolver
        servers = resolver.servers
        for _ in range(resolver.attempts):
            for server in servers:
                if server not in self.failed:
                    answer = await self._ask(server)
                    if answer is not None:
                        return answer
            if len(self.failed) == len(servers):
                reasons = "; ".join(f"{ip}: {why}" for (ip, _port), why in self.failed.items())
                raise DnsServerFailure(
                    f"{self.question.name}: every DNS server failed ({reasons})", self.question.name
                )
        raise DnsTimeout(
            f"{self.question.name}: no DNS answer from {', '.join(ip for ip, _ in servers)} "
            f"in {resolver.attempts} attempt(s) of {resolver.timeout} s",
            self.question.name,
        )

    async def _ask(self, server: Address) -> Answer | None:
        """Send to ``server`` and wait its turn; a late answer from a server asked before counts."""
        if not await self._send(server):
            return None
        deadline = self.clock.now() + self.resolver.timeout
        while server not in self.failed:
            try:
                source, reply = await call_before(self.clock, deadline, self._receive)
            except DeadlineExpired:
                self.counts["timeouts"] += 1
                return None
            except StackClosed:
                raise
            except NetstackError as exc:  # e.g. ICMP port unreachable for what we sent
                self._fail(server, str(exc))
                return None
            if reply is None:
                self.counts["truncated"] += 1
                reply = await self._ask_tcp(source)
                if reply is None:
                    continue
            if reply.rcode in (Rcode.FORMERR, Rcode.NOTIMP) and self._uses_edns(source):
                self.counts["edns_fallbacks"] += 1
                self.without_edns.add(source)
                if source == server:
                    if not await self._send(server):
                        return None
                    deadline = self.clock.now() + self.resolver.timeout
                continue
            try:
                return read_answer(reply, self.question, negative_ttl=self.resolver.negative_ttl)
            except DnsServerFailure as exc:
                self._fail(source, exc.strerror or "failed")
        return None

    def _uses_edns(self, server: Address) -> bool:
        return self.resolver.edns_payload is not None and server not in self.without_edns

    def _query(self, server: Address, query_id: int) -> bytes:
        payload = self.resolver.edns_payload if self._uses_edns(server) else None
        return build_query(self.question.name, self.question.type, id=query_id, edns_payload=payload)

    def _fail(self, server: Address, reason: str) -> None:
        self.counts["server_failures"] += 1
        self.failed[server] = reason
        logger.debug("dns: %s failed for %s: %s", server[0], self.question.name, reason)

    async def _send(self, server: Address) -> bool:
        try:
            await self.sock.send_to(self._query(server, self.query_id), server)
        except StackClosed:
            raise
        except NetstackError as exc:
            self._fail(server, str(exc))
            return False
        self.counts["udp_sent"] += 1
        self.asked.add(server)
        return True

    async def _receive(self) -> tuple[Address, Message | None]:
        """The next datagram answering our query (None: truncated); others are counted and dropped."""
        counts = self.counts
        while True:
            data, source = await self.sock.recv_from()
            server = self.resolver._server_of(source)
            if server is None or server not in self.asked:
                counts["ignored_source"] += 1
                continue
            try:
                reply = decode_message(data)
            except MalformedDnsMessage:
                if _truncated_reply_header(data, self.query_id):
                    return server, None
                counts["ignored_malformed"] += 1
                continue
            if not is_reply_to(reply, self.query_id, self.question):
                counts["ignored_mismatch"] += 1
                continue
            return server, None if reply.truncated else reply

    async def _ask_tcp(self, server: Address) -> Message | None:
        """The same question over TCP (RFC 7766); None when the exchange fails."""
        self.counts["tcp_queries"] += 1
        query_id = secrets.randbelow(0x10000)
        query = self._query(server, query_id)
        transport = self.resolver._transport

        async def exchange() -> bytes:
            stream = await transport.tcp_connect(server)
            try:
                await stream.send(len(query).to_bytes(2, "big") + query)
                reader = BufferedByteReceiveStream(stream)
                length = int.from_bytes(await reader.receive_exactly(2), "big")
                return await reader.receive_exactly(length)
            finally:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

        try:
            data = await call_before(self.clock, self.clock.now() + self.resolver.timeout, exchange)
            reply = decode_message(data)
        except DeadlineExpired:
            self._fail(server, "no answer over TCP")
            return None
        except StackClosed:
            raise
        except _TCP_FAILURES as exc:
            self._fail(server, f"TCP exchange failed: {exc!r}")
            return None
        if not is_reply_to(reply, query_id, self.question):
            self._fail(server, "the TCP answer does not match the query")
            return None
        return reply


def _truncated_reply_header(data: bytes, query_id: int) -> bool:
    """A truncated answer may be cut anywhere; its header still says TC (RFC 2181 9)."""
    try:
        header = decode_header(data)
    except MalformedDnsMessage:
        return False
    return header.id == query_id and bool(header.flags & Flag.QR) and bool(header.flags & Flag.TC)


def _server_address(server: str | Address) -> Address:
    ip, port = (server, DNS_PORT) if isinstance(server, str) else server
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"a DNS server must be an IP address, not {ip!r}") from None
    if not 0 < port < 0x10000:
        raise ValueError(f"bad DNS server port {port}")
    return str(address), port


def _ip_literal(name: str) -> tuple[str, int] | None:
    text = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return text, ipaddress.ip_address(text).version
    except ValueError:
        return None


def _interleave(first: list[str], second: list[str]) -> list[str]:
    merged: list[str] = []
    for index in range(max(len(first), len(second))):
        merged.extend(family[index] for family in (first, second) if index < len(family))
    return merged
