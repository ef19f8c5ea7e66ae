"""DNS messages (RFC 1035 4), sans-I/O: ``decode_message`` and ``Message.encode``.

A, AAAA, CNAME, NS, PTR and SOA data are decoded; every other type keeps its rdata as the bytes
on the wire (RFC 3597), except that the name in MX rdata is decompressed so the bytes stand
alone. Names in the question and in rdata of the RFC 1035 types are compressed on encode and
decompressed on decode; every compression pointer must point before the one that
led to it, so loops are impossible, and names stay within 255 bytes and labels within 63. An
EDNS0 OPT record (RFC 6891) in the additional section becomes ``Message.edns`` and its extended
rcode bits join ``Message.rcode``.

Decoding bad bytes raises ``MalformedDnsMessage`` and nothing else. Encoding raises
``InvalidDomainName`` for a name DNS cannot carry and ``ValueError`` for a field out of range.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from dataclasses import dataclass, replace
from enum import IntEnum, IntFlag

from smolmix_core.dns.names import MAX_LABEL, MAX_NAME, encode_name, label_text
from smolmix_core.errors import MalformedDnsMessage

__all__ = [
    "DEFAULT_EDNS_PAYLOAD",
    "Edns",
    "Flag",
    "Header",
    "Message",
    "Opcode",
    "Question",
    "Rcode",
    "Record",
    "RecordClass",
    "RecordType",
    "Soa",
    "build_query",
    "build_response",
    "decode_header",
    "decode_message",
]

DEFAULT_EDNS_PAYLOAD = 1232  # the DNS flag day 2020 size: fits a 1280-byte IPv6 path unfragmented
HEADER_SIZE = 12
MAX_UDP_PLAIN = 512  # a UDP response to a query without EDNS (RFC 1035 4.2.1)


class Opcode(IntEnum):
    QUERY = 0
    IQUERY = 1
    STATUS = 2
    NOTIFY = 4
    UPDATE = 5


class Rcode(IntEnum):
    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    BADVERS = 16  # needs EDNS: the high 8 bits travel in the OPT record


class RecordType(IntEnum):
    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28
    SRV = 33
    OPT = 41
    ANY = 255


class RecordClass(IntEnum):
    IN = 1
    CH = 3
    ANY = 255


class Flag(IntFlag):
    """Header flag bits (opcode and rcode live in their own fields)."""

    QR = 0x8000  # a response
    AA = 0x0400  # authoritative answer
    TC = 0x0200  # truncated: ask again over TCP
    RD = 0x0100  # recursion desired
    RA = 0x0080  # recursion available
    Z = 0x0040
    AD = 0x0020  # authentic data (DNSSEC)
    CD = 0x0010  # checking disabled (DNSSEC)


_FLAG_BITS = 0x87F0
_NAME_TYPES = frozenset({RecordType.CNAME, RecordType.NS, RecordType.PTR})
_MAX_POINTER = 0x3FFF


@dataclass(frozen=True, slots=True)
class Header:
    """The fixed 12 bytes: enough to answer FORMERR or notice truncation when the rest is bad."""

    id: int
    flags: int
    opcode: int
    rcode: int
    qdcount: int
    ancount: int
    nscount: int
    arcount: int


@dataclass(frozen=True, slots=True)
class Question:
    name: str
    type: int
    rclass: int = RecordClass.IN


@dataclass(frozen=True, slots=True)
class Soa:
    """SOA rdata; ``minimum`` bounds how long a negative answer may be cached (RFC 2308 5)."""

    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


RecordData = str | Soa | bytes


@dataclass(frozen=True, slots=True)
class Record:
    """A resource record. ``data`` is the address text for A/AAAA, the target name for
    CNAME/NS/PTR, a ``Soa`` for SOA, and the raw rdata bytes for every other type."""

    name: str
    type: int
    ttl: int
    data: RecordData
    rclass: int = RecordClass.IN


@dataclass(frozen=True, slots=True)
class Edns:
    """The EDNS0 OPT pseudo-record: the sender's UDP payload size, version, DO bit, options."""

    payload_size: int = DEFAULT_EDNS_PAYLOAD
    version: int = 0
    dnssec_ok: bool = False
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    flags: int = 0
    opcode: int = Opcode.QUERY
    rcode: int = Rcode.NOERROR
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authorities: tuple[Record, ...] = ()
    additionals: tuple[Record, ...] = ()
    edns: Edns | None = None

    @property
    def is_response(self) -> bool:
        return bool(self.flags & Flag.QR)

    @property
    def truncated(self) -> bool:
        return bool(self.flags & Flag.TC)

    def encode(self, *, max_size: int | None = None) -> bytes:
        """Wire bytes; over ``max_size``, the additional records go first (TC stays clear, RFC
        2181 9), then every record goes and TC is set so the client asks again over TCP."""
        wire = _encode(self)
        if max_size is None or len(wire) <= max_size:
            return wire
        if self.additionals:
            wire = _encode(replace(self, additionals=()))
            if len(wire) <= max_size:
                return wire
        return _encode(replace(self, flags=self.flags | Flag.TC, answers=(), authorities=(), additionals=()))


def build_query(
    name: str,
    rtype: int,
    *,
    id: int,
    recursion_desired: bool = True,
    edns_payload: int | None = DEFAULT_EDNS_PAYLOAD,
) -> bytes:
    """A standard query for one question; ``edns_payload=None`` leaves out the OPT record."""
    edns = None if edns_payload is None else Edns(payload_size=edns_payload)
    flags = Flag.RD if recursion_desired else 0
    return Message(id, int(flags), questions=(Question(name, rtype),), edns=edns).encode()


def build_response(
    query: Message,
    *,
    rcode: int = Rcode.NOERROR,
    answers: tuple[Record, ...] = (),
    authorities: tuple[Record, ...] = (),
    authoritative: bool = False,
    recursion_available: bool = True,
    edns_payload: int = DEFAULT_EDNS_PAYLOAD,
) -> Message:
    """The response to ``query``: same id, opcode, question and RD/CD bits; an OPT record only if
    the query had one (RFC 6891 7). ``encode(max_size=...)`` it to truncate for UDP."""
    flags = Flag.QR | (query.flags & (Flag.RD | Flag.CD))
    if authoritative:
        flags |= Flag.AA
    if recursion_available:
        flags |= Flag.RA
    edns = Edns(payload_size=edns_payload) if query.edns is not None else None
    return Message(
        query.id,
        int(flags),
        query.opcode,
        rcode,
        query.questions,
        answers,
        authorities,
        (),
        edns,
    )


# ---------------------------------------------------------------------- decoding


def decode_header(data: bytes) -> Header:
    """The header alone; raises ``MalformedDnsMessage`` when there are fewer than 12 bytes."""
    if len(data) < HEADER_SIZE:
        raise MalformedDnsMessage(f"a DNS message is at least 12 bytes, got {len(data)}")
    ident, word, qd, an, ns, ar = struct.unpack_from("!6H", data)
    return Header(ident, word & _FLAG_BITS, (word >> 11) & 0xF, word & 0xF, qd, an, ns, ar)


def decode_message(data: bytes) -> Message:
    """Parse a whole message; trailing bytes or any inconsistency raise ``MalformedDnsMessage``."""
    data = bytes(data)
    header = decode_header(data)
    reader = _Reader(data)
    questions = tuple(reader.question() for _ in range(header.qdcount))
    answers = tuple(reader.record() for _ in range(header.ancount))
    authorities = tuple(reader.record() for _ in range(header.nscount))
    additionals: list[Record] = []
    edns: Edns | None = None
    rcode = header.rcode
    for _ in range(header.arcount):
        record = reader.record()
        if record.type != RecordType.OPT:
            additionals.append(record)
            continue
        if edns is not None:
            raise MalformedDnsMessage("more than one OPT record (RFC 6891 6.1.1)")
        if record.name != ".":
            raise MalformedDnsMessage("the OPT record's owner must be the root")
        assert isinstance(record.data, bytes)
        ttl = record.ttl
        edns = Edns(record.rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000), record.data)
        rcode |= (ttl >> 24) << 4
    if reader.offset != len(data):
        raise MalformedDnsMessage(f"{len(data) - reader.offset} bytes after the last record")
    return Message(
        header.id,
        header.flags,
        header.opcode,
        rcode,
        questions,
        answers,
        authorities,
        tuple(additionals),
        edns,
    )


class _Reader:
    __slots__ = ("data", "offset")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = HEADER_SIZE

    def _take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise MalformedDnsMessage(f"truncated at byte {self.offset}: {size} more needed")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def question(self) -> Question:
        name = self.name()
        rtype, rclass = struct.unpack("!HH", self._take(4))
        return Question(name, rtype, rclass)

    def record(self) -> Record:
        name = self.name()
        rtype, rclass, ttl, length = struct.unpack("!HHIH", self._take(10))
        end = self.offset + length
        if end > len(self.data):
            raise MalformedDnsMessage(f"rdata of {length} bytes runs past the end of the message")
        data = self._rdata(rtype, length, end)
        if self.offset != end:
            raise MalformedDnsMessage(f"rdata of type {rtype} does not fill its {length} bytes")
        return Record(name, rtype, ttl, data, rclass)

    def _rdata(self, rtype: int, length: int, end: int) -> RecordData:
        if rtype == RecordType.A or rtype == RecordType.AAAA:
            size = 4 if rtype == RecordType.A else 16
            if length != size:
                raise MalformedDnsMessage(f"type {rtype} rdata must be {size} bytes, got {length}")
            return _address_text(self._take(size))
        if rtype in _NAME_TYPES:
            return self.name(end)
        if rtype == RecordType.MX:  # kept as bytes, with its name decompressed so they stand alone
            preference = self._take(2)
            return preference + encode_name(self.name(end))
        if rtype == RecordType.SOA:
            mname = self.name(end)
            rname = self.name(end)
            if end - self.offset != 20:
                raise MalformedDnsMessage("SOA rdata must end with five 32-bit fields")
            return Soa(mname, rname, *struct.unpack("!5I", self._take(20)))
        return self._take(length)

    def name(self, end: int | None = None) -> str:
        """A possibly compressed name at the cursor; ``end`` bounds where it may end in place."""
        data = self.data
        limit = len(data) if end is None else end
        labels: list[str] = []
        wire_size = 1
        position = lowest = self.offset  # a pointer must point below the last target (no loops)
        resume: int | None = None
        while True:
            if position >= limit:
                raise MalformedDnsMessage(f"name at byte {self.offset} runs past its end")
            length = data[position]
            if length >= 0xC0:
                if position + 1 >= limit:
                    raise MalformedDnsMessage("truncated compression pointer")
                target = ((length & 0x3F) << 8) | data[position + 1]
                if target >= lowest:
                    raise MalformedDnsMessage(f"compression pointer to {target} does not point back")
                if resume is None:
                    resume = position + 2
                    limit = len(data)
                lowest = position = target
                continue
            if length > MAX_LABEL:
                raise MalformedDnsMessage(f"label type 0x{length & 0xC0:02x} is not supported")
            if length == 0:
                break
            stop = position + 1 + length
            if stop > limit:
                raise MalformedDnsMessage("label runs past the end of its space")
            wire_size += 1 + length
            if wire_size > MAX_NAME:
                raise MalformedDnsMessage("name longer than 255 bytes")
            labels.append(label_text(data[position + 1 : stop]))
            position = stop
        self.offset = resume if resume is not None else position + 1
        return ".".join(labels) if labels else "."


# ---------------------------------------------------------------------- encoding


class _Writer:
    __slots__ = ("buffer", "suffixes")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.suffixes: dict[bytes, int] = {}

    def name(self, name: str) -> None:
        wire = encode_name(name)
        buffer = self.buffer
        offset = 0
        while wire[offset]:
            suffix = wire[offset:]
            target = self.suffixes.get(suffix)
            if target is not None:
                buffer += struct.pack("!H", 0xC000 | target)
                return
            if len(buffer) <= _MAX_POINTER:
                self.suffixes[suffix] = len(buffer)
            length = wire[offset]
            buffer += wire[offset : offset + 1 + length]
            offset += 1 + length
        buffer.append(0)

    def record(self, record: Record) -> None:
        self.name(record.name)
        self.buffer += struct.pack("!HHI", record.type, record.rclass, record.ttl)
        length_at = len(self.buffer)
        self.buffer += b"\x00\x00"
        self._rdata(record)
        length = len(self.buffer) - length_at - 2
        if length > 0xFFFF:
            raise ValueError(f"rdata of {length} bytes does not fit a record")
        struct.pack_into("!H", self.buffer, length_at, length)

    def _rdata(self, record: Record) -> None:
        rtype, data = record.type, record.data
        if rtype == RecordType.A or rtype == RecordType.AAAA:
            if not isinstance(data, str):
                raise ValueError(f"type {rtype} data must be an address string")
            packed = _packed_address(data)
            if len(packed) != (4 if rtype == RecordType.A else 16):
                raise ValueError(f"{data} is not an address for a type {rtype} record")
            self.buffer += packed
        elif rtype in _NAME_TYPES:
            if not isinstance(data, str):
                raise ValueError(f"type {rtype} data must be a name")
            self.name(data)
        elif rtype == RecordType.SOA:
            if not isinstance(data, Soa):
                raise ValueError("SOA data must be a Soa")
            self.name(data.mname)
            self.name(data.rname)
            self.buffer += struct.pack(
                "!5I", data.serial, data.refresh, data.retry, data.expire, data.minimum
            )
        else:
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ValueError(f"type {rtype} data must be the raw rdata bytes")
            self.buffer += data


@functools.lru_cache(maxsize=4096)
def _address_text(packed: bytes) -> str:
    return str(ipaddress.IPv4Address(packed) if len(packed) == 4 else ipaddress.IPv6Address(packed))


@functools.lru_cache(maxsize=4096)
def _packed_address(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


def _encode(message: Message) -> bytes:
    try:
        return _encode_fields(message)
    except struct.error as exc:
        raise ValueError(f"a field of the message is out of range: {exc}") from None


def _encode_fields(message: Message) -> bytes:
    rcode = message.rcode
    if not 0 <= rcode <= 0xFFF or (rcode > 0xF and message.edns is None):
        raise ValueError(f"rcode {rcode} needs EDNS (or is out of range)")
    if message.flags & ~_FLAG_BITS or not 0 <= message.opcode <= 0xF:
        raise ValueError("flags or opcode out of range")
    writer = _Writer()
    additionals = list(message.additionals)
    if message.edns is not None:
        edns = message.edns
        if not 0 <= edns.version <= 0xFF:
            raise ValueError(f"EDNS version {edns.version} is out of range")
        ttl = ((rcode >> 4) << 24) | (edns.version << 16) | (0x8000 if edns.dnssec_ok else 0)
        additionals.append(Record(".", RecordType.OPT, ttl, edns.options, edns.payload_size))
    writer.buffer += struct.pack(
        "!6H",
        message.id,
        message.flags | (message.opcode << 11) | (rcode & 0xF),
        len(message.questions),
        len(message.answers),
        len(message.authorities),
        len(additionals),
    )
    for question in message.questions:
        writer.name(question.name)
        writer.buffer += struct.pack("!HH", question.type, question.rclass)
    for record in (*message.answers, *message.authorities, *additionals):
        writer.record(record)
    return bytes(writer.buffer)
