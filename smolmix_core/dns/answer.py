"""Reading a response, sans-I/O: is it the answer to our query, and what does it say?

``is_reply_to`` is the anti-spoofing check (id, QR, opcode and the one question, names compared
case-insensitively; only an error reply may leave the question out); ``read_answer`` follows the
CNAME chain from the question's name and returns an ``Answer``: the addresses with the smallest
TTL along the way, or a negative answer (NXDOMAIN, or NODATA when the name has no record of that
type) whose TTL comes from the SOA in the authority section (RFC 2308 5) or a default. Any other
rcode raises ``DnsServerFailure``.
"""

from __future__ import annotations

from dataclasses import dataclass

from smolmix_core.dns.message import Flag, Message, Opcode, Question, Rcode, RecordClass, RecordType, Soa
from smolmix_core.errors import DnsServerFailure

__all__ = ["MAX_CNAME_CHAIN", "Answer", "is_reply_to", "read_answer"]

MAX_CNAME_CHAIN = 16
_MAX_TTL = 0x7FFFFFFF  # a TTL with the top bit set means zero (RFC 2181 8)


@dataclass(frozen=True, slots=True)
class Answer:
    """The outcome for one (name, type): addresses, or none with the rcode saying why."""

    addresses: tuple[str, ...]
    ttl: int
    rcode: int = Rcode.NOERROR
    canonical_name: str | None = None  # the end of the CNAME chain, when there was one

    @property
    def negative(self) -> bool:
        return not self.addresses


def is_reply_to(message: Message, query_id: int, question: Question) -> bool:
    """True if ``message`` answers our query; a spoofer must guess the id and echo the question."""
    if message.id != query_id or not message.flags & Flag.QR or message.opcode != Opcode.QUERY:
        return False
    if not message.questions:  # some servers send FORMERR or NOTIMP without the question
        return message.rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN)
    if len(message.questions) != 1:
        return False
    echoed = message.questions[0]
    return (
        echoed.type == question.type
        and echoed.rclass == question.rclass
        and echoed.name.lower() == question.name.lower()
    )


def read_answer(response: Message, question: Question, *, negative_ttl: int) -> Answer:
    """The addresses of ``question`` in ``response`` (whose names are as the decoder prints them)."""
    rcode = response.rcode
    if rcode not in (Rcode.NOERROR, Rcode.NXDOMAIN):
        label = Rcode(rcode).name if rcode in Rcode._value2member_map_ else str(rcode)
        raise DnsServerFailure(f"{question.name}: the server answered {label}", question.name)
    target = question.name.lower()
    ttl = _MAX_TTL
    seen = {target}
    canonical: str | None = None
    for _ in range(MAX_CNAME_CHAIN + 1):
        addresses: list[str] = []
        alias: tuple[str, int] | None = None
        for record in response.answers:
            if record.rclass != RecordClass.IN or record.name.lower() != target:
                continue
            if record.type == question.type and isinstance(record.data, str):
                if record.data not in addresses:
                    addresses.append(record.data)
                ttl = min(ttl, _ttl(record.ttl))
            elif record.type == RecordType.CNAME and alias is None and isinstance(record.data, str):
                alias = (record.data, _ttl(record.ttl))
        if addresses:
            if rcode != Rcode.NOERROR:
                raise DnsServerFailure(f"{question.name}: addresses in an NXDOMAIN answer", question.name)
            return Answer(tuple(addresses), ttl, Rcode.NOERROR, canonical)
        if alias is None:
            return Answer((), min(ttl, _negative_ttl(response, negative_ttl)), rcode, canonical)
        canonical, alias_ttl = alias
        ttl = min(ttl, alias_ttl)
        target = canonical.lower()
        if target in seen:
            raise DnsServerFailure(f"{question.name}: the CNAME chain loops at {canonical}", question.name)
        seen.add(target)
    raise DnsServerFailure(f"{question.name}: CNAME chain longer than {MAX_CNAME_CHAIN} names", question.name)


def _ttl(value: int) -> int:
    return 0 if value > _MAX_TTL else value


def _negative_ttl(response: Message, default: int) -> int:
    for record in response.authorities:
        if record.type == RecordType.SOA and isinstance(record.data, Soa):
            return min(_ttl(record.ttl), _ttl(record.data.minimum))
    return default
