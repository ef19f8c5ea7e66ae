"""Answering queries, sans-I/O: the part of the exit's DNS responder that makes no lookups.

``triage`` reads query bytes and decides: drop them (no header, or not a query at all), reply at
once with an error (FORMERR, NOTIMP, REFUSED, BADVERS), or ask for the addresses of the one
question's name. ``make_reply`` turns those addresses (a ``HostAddresses``) or a failure rcode
into the reply bytes, truncated to what the client can take over UDP. ``StaticHosts`` is the
fixed name → addresses map tests give the devnet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from smolmix_core.dns.message import (
    DEFAULT_EDNS_PAYLOAD,
    MAX_UDP_PLAIN,
    Flag,
    Message,
    Opcode,
    Question,
    Rcode,
    Record,
    RecordClass,
    RecordType,
    build_response,
    decode_header,
    decode_message,
)
from smolmix_core.dns.names import name_key
from smolmix_core.errors import MalformedDnsMessage

__all__ = [
    "Drop",
    "HostAddresses",
    "Immediate",
    "Lookup",
    "Query",
    "StaticHosts",
    "make_reply",
    "triage",
    "truncate",
]

MAX_TCP_MESSAGE = 0xFFFF
_ZONE_TRANSFERS = frozenset({251, 252})  # IXFR, AXFR


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """The addresses a name has, by family; both empty means the name exists without any."""

    ipv4: tuple[str, ...] = ()
    ipv6: tuple[str, ...] = ()

    @classmethod
    def of(cls, addresses: Iterable[str]) -> HostAddresses:
        """Split IP address texts by family, dropping repeats; ``ValueError`` for a non-address."""
        ipv4: list[str] = []
        ipv6: list[str] = []
        for text in addresses:
            address = ipaddress.ip_address(text)
            family = ipv4 if address.version == 4 else ipv6
            if str(address) not in family:
                family.append(str(address))
        return cls(tuple(ipv4), tuple(ipv6))


Lookup = HostAddresses | Rcode  # the addresses, or NXDOMAIN / SERVFAIL / REFUSED


class StaticHosts:
    """A fixed map of names (case-insensitive, IDNA) to one address or several."""

    def __init__(self, hosts: Mapping[str, str | Sequence[str]] | None = None) -> None:
        self._hosts: dict[str, HostAddresses] = {}
        for name, value in (hosts or {}).items():
            texts = [value] if isinstance(value, str) else list(value)
            try:
                addresses = HostAddresses.of(texts)
            except ValueError:
                raise ValueError(f"static host {name!r}: {value!r} is not a list of IP addresses") from None
            self._hosts[name_key(name)] = addresses

    def __len__(self) -> int:
        return len(self._hosts)

    def get(self, name: str) -> HostAddresses | None:
        """The addresses of ``name`` as the decoder prints it, or None when it is not in the map."""
        return self._hosts.get(name.lower())


@dataclass(frozen=True, slots=True)
class Query:
    """A well-formed query to answer: its message, its one question, and the reply size limit."""

    message: Message
    question: Question
    max_size: int


@dataclass(frozen=True, slots=True)
class Immediate:
    """A reply that needs no lookup (an error)."""

    reply: bytes
    rcode: int


@dataclass(frozen=True, slots=True)
class Drop:
    """Bytes not worth a reply: ``reason`` is the counter to bump."""

    reason: str


def triage(
    data: bytes, *, tcp: bool = False, max_udp_payload: int = DEFAULT_EDNS_PAYLOAD
) -> Query | Immediate | Drop:
    """Decide what ``data`` needs; never raises."""
    try:
        header = decode_header(data)
    except MalformedDnsMessage:
        return Drop("dropped_malformed")
    if header.flags & Flag.QR:
        return Drop("dropped_responses")  # never answer an answer: no reflection loops
    try:
        message = decode_message(data)
    except MalformedDnsMessage:
        flags = Flag.QR | (header.flags & Flag.RD)
        reply = Message(header.id, int(flags), header.opcode, Rcode.FORMERR)
        return Immediate(reply.encode(), Rcode.FORMERR)
    if message.opcode != Opcode.QUERY:
        return _refuse(message, Rcode.NOTIMP)
    if len(message.questions) != 1:
        return _refuse(message, Rcode.FORMERR)
    if message.edns is not None and message.edns.version != 0:
        return _refuse(message, Rcode.BADVERS)
    question = message.questions[0]
    if question.rclass not in (RecordClass.IN, RecordClass.ANY) or question.type in _ZONE_TRANSFERS:
        return _refuse(message, Rcode.REFUSED)
    if tcp:
        max_size = MAX_TCP_MESSAGE
    elif message.edns is not None:
        max_size = max(MAX_UDP_PLAIN, min(message.edns.payload_size, max_udp_payload))
    else:
        max_size = MAX_UDP_PLAIN
    return Query(message, question, max_size)


def make_reply(query: Query, lookup: Lookup, *, ttl: int) -> bytes:
    """The reply to ``query``: the records of its type among ``lookup``'s addresses (none: NODATA),
    or ``lookup``'s rcode; over the size limit it is truncated (TC) so the client retries on TCP."""
    if isinstance(lookup, HostAddresses):
        question = query.question
        records = tuple(
            Record(question.name, rtype, ttl, address)
            for rtype, addresses in (
                (RecordType.A, lookup.ipv4),
                (RecordType.AAAA, lookup.ipv6),
            )
            if question.type in (rtype, RecordType.ANY)
            for address in addresses
        )
        response = build_response(query.message, answers=records)
    else:
        response = build_response(query.message, rcode=lookup)
    return response.encode(max_size=query.max_size)


def truncate(reply: bytes) -> bytes:
    """``reply`` cut to its header and question with TC set: what to send when even the size the
    client allowed does not fit the path, so that it asks again over TCP."""
    message = decode_message(reply)
    return Message(
        message.id,
        message.flags | Flag.TC,
        message.opcode,
        message.rcode,
        message.questions,
        edns=message.edns,
    ).encode()


def _refuse(message: Message, rcode: int) -> Immediate:
    if len(message.questions) != 1:
        message = Message(message.id, message.flags, message.opcode, edns=message.edns)
    return Immediate(build_response(message, rcode=rcode).encode(max_size=MAX_UDP_PLAIN), rcode)
