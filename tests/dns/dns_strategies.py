"""Hypothesis strategies for DNS names, records and messages (valid by construction)."""

from __future__ import annotations

import ipaddress

from hypothesis import strategies as st

from smolmix_core.dns import Edns, Message, Question, Record, RecordType, Soa
from smolmix_core.dns.names import label_text

_HOSTNAME_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"


@st.composite
def names(draw: st.DrawFn, *, any_bytes: bool = True, max_wire: int = 255) -> str:
    """A name in the decoder's text form; labels of arbitrary bytes when ``any_bytes``."""
    if any_bytes:
        label = st.binary(min_size=1, max_size=63)
    else:
        label = st.text(_HOSTNAME_ALPHABET, min_size=1, max_size=63).map(str.encode)
    labels = draw(st.lists(label, min_size=0, max_size=8))
    kept: list[bytes] = []
    size = 1
    for raw in labels:
        if size + 1 + len(raw) > max_wire:
            break
        kept.append(raw)
        size += 1 + len(raw)
    return ".".join(label_text(raw) for raw in kept) if kept else "."


_ttls = st.integers(0, 2**32 - 1)
_u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 2**32 - 1)
ipv4 = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
_OPAQUE_TYPES = st.integers(0, 0xFFFF).filter(
    lambda t: (
        t not in (RecordType.A, RecordType.AAAA, RecordType.CNAME, RecordType.NS)
        and t not in (RecordType.PTR, RecordType.SOA, RecordType.MX, RecordType.OPT)
    )
)
_PRIVATE_TYPES = st.integers(65280, 65534)  # RFC 6895: no other codec gives these a format


@st.composite
def records(draw: st.DrawFn, *, plain: bool = False) -> Record:
    """Any record; ``plain`` keeps to class IN and opaque types of the private range, whose
    data another codec (dnspython) takes as it is."""
    if plain:
        u16 = st.just(1)
        opaque_types = _PRIVATE_TYPES
        ttls = st.integers(0, 2**31 - 1)  # larger ones mean 0 (RFC 2181 8), as dnspython reads them
    else:
        u16 = _u16
        opaque_types = _OPAQUE_TYPES
        ttls = _ttls
    owner = draw(names())
    kind = draw(st.sampled_from(["a", "aaaa", "name", "soa", "opaque"]))
    if kind == "a":
        return Record(owner, RecordType.A, draw(ttls), draw(ipv4), draw(u16))
    if kind == "aaaa":
        return Record(owner, RecordType.AAAA, draw(ttls), draw(ipv6), draw(u16))
    if kind == "name":
        rtype = draw(st.sampled_from([RecordType.CNAME, RecordType.NS, RecordType.PTR]))
        return Record(owner, rtype, draw(ttls), draw(names()), draw(u16))
    if kind == "soa":
        soa = Soa(draw(names()), draw(names()), draw(u32), draw(u32), draw(u32), draw(u32), draw(u32))
        return Record(owner, RecordType.SOA, draw(ttls), soa, draw(u16))
    return Record(owner, draw(opaque_types), draw(ttls), draw(st.binary(max_size=300)), draw(u16))


@st.composite
def messages(draw: st.DrawFn, *, plain: bool = False) -> Message:
    """Any message; ``plain``: a standard query or response (opcode QUERY, class IN, EDNS
    version 0 without options, ``plain`` records), as another codec would build."""
    if plain:
        edns_options = st.just(b"")
        versions = st.just(0)
        opcodes = st.just(0)
        question_u16 = st.just(1)
    else:
        edns_options = st.binary(max_size=40)
        versions = st.integers(0, 255)
        opcodes = st.integers(0, 15)
        question_u16 = _u16
    edns = draw(st.none() | st.builds(Edns, st.integers(512, 0xFFFF), versions, st.booleans(), edns_options))
    rcode = draw(st.integers(0, 0xFFF if edns is not None else 0xF))
    flags = draw(st.integers(0, 0xFFFF)) & 0x87F0
    section = st.lists(records(plain=plain), max_size=4).map(tuple)
    return Message(
        id=draw(_u16),
        flags=flags,
        opcode=draw(opcodes),
        rcode=rcode,
        questions=tuple(draw(st.lists(st.builds(Question, names(), question_u16, question_u16), max_size=3))),
        answers=draw(section),
        authorities=draw(section),
        additionals=draw(section),
        edns=edns,
    )
