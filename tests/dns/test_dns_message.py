"""The DNS message codec: captured and RFC vectors, dnspython as an oracle, round trips, bounds."""

from __future__ import annotations

import struct
from dataclasses import replace

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dns_strategies import messages
from hypothesis import given, settings

from smolmix_core.dns import (
    Edns,
    Flag,
    Message,
    Question,
    Rcode,
    Record,
    RecordType,
    Soa,
    build_query,
    build_response,
    decode_header,
    decode_message,
)
from smolmix_core.errors import MalformedDnsMessage

# dig's query for google.com and 8.8.8.8's answer, as captured in EmilHernvall/dnsguide chapter 1.
CAPTURED_QUERY = bytes.fromhex("862a0120000100000000000006676f6f676c6503636f6d0000010001")
CAPTURED_RESPONSE = bytes.fromhex(
    "862a8180000100010000000006676f6f676c6503636f6d0000010001c00c000100010000012500 04d83ad38e".replace(
        " ", ""
    )
)


def test_a_captured_query_decodes_and_encodes_to_the_same_bytes() -> None:
    query = decode_message(CAPTURED_QUERY)
    assert query.id == 0x862A
    assert query.flags == Flag.RD | Flag.AD
    assert query.questions == (Question("google.com", RecordType.A),)
    assert not query.answers
    assert query.edns is None
    assert query.encode() == CAPTURED_QUERY


def test_a_captured_response_with_a_compressed_owner_decodes() -> None:
    response = decode_message(CAPTURED_RESPONSE)
    assert response.is_response
    assert response.flags & Flag.RA
    assert response.rcode == Rcode.NOERROR
    assert response.answers == (Record("google.com", RecordType.A, 0x125, "216.58.211.142"),)
    assert response.encode() == CAPTURED_RESPONSE  # our compressor makes the same pointer


def test_rfc1035_compression_example_decodes() -> None:
    """RFC 1035 4.1.4: F.ISI.ARPA, then FOO.F.ISI.ARPA as FOO + pointer, then ARPA as a pointer."""
    header = struct.pack("!6H", 7, 0x8000, 1, 2, 0, 0)
    question = b"\x01F\x03ISI\x04ARPA\x00" + struct.pack("!HH", 1, 1)  # name at offset 12
    foo = b"\x03FOO\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, 2) + b"\xc0\x12"  # CNAME -> ARPA (18)
    arpa = b"\xc0\x12" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 1])
    message = decode_message(header + question + foo + arpa)
    assert message.questions[0].name == "F.ISI.ARPA"
    assert message.answers == (
        Record("FOO.F.ISI.ARPA", RecordType.CNAME, 60, "ARPA"),
        Record("ARPA", RecordType.A, 60, "10.0.0.1"),
    )


def test_build_query_is_what_dnspython_reads() -> None:
    wire = build_query("Example.COM", RecordType.AAAA, id=4242)
    theirs = dns.message.from_wire(wire)
    assert theirs.id == 4242
    assert theirs.flags & dns.flags.RD
    assert not theirs.flags & dns.flags.QR
    assert theirs.question[0].name.to_text() == "Example.COM."
    assert theirs.question[0].rdtype == dns.rdatatype.AAAA
    assert theirs.edns == 0
    assert theirs.payload == 1232
    assert dns.message.from_wire(build_query("a.test", 1, id=1, edns_payload=None)).edns == -1


def _dnspython_response() -> dns.message.Message:
    query = dns.message.make_query("www.example.com", "AAAA", use_edns=0, payload=4096)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("www.example.com.", 300, "IN", "CNAME", "web.example.com."))
    response.answer.append(
        dns.rrset.from_text("web.example.com.", 60, "IN", "AAAA", "2001:db8::1", "2001:db8::2")
    )
    response.authority.append(
        dns.rrset.from_text("example.com.", 900, "IN", "SOA", "ns.example.com. h.example.com. 1 2 3 4 5")
    )
    response.additional.append(dns.rrset.from_text("example.com.", 60, "IN", "MX", "10 mail.example.com."))
    response.additional.append(dns.rrset.from_text("example.com.", 60, "IN", "TXT", '"v=spf1 -all"'))
    return response


def test_we_decode_what_dnspython_encodes() -> None:
    theirs = _dnspython_response()
    ours = decode_message(theirs.to_wire())
    assert ours.id == theirs.id
    assert ours.is_response
    assert ours.questions == (Question("www.example.com", RecordType.AAAA),)
    assert ours.answers[0] == Record("www.example.com", RecordType.CNAME, 300, "web.example.com")
    assert set(ours.answers[1:]) == {  # an rdataset is a set: its order is dnspython's
        Record("web.example.com", RecordType.AAAA, 60, "2001:db8::1"),
        Record("web.example.com", RecordType.AAAA, 60, "2001:db8::2"),
    }
    assert ours.authorities == (
        Record("example.com", RecordType.SOA, 900, Soa("ns.example.com", "h.example.com", 1, 2, 3, 4, 5)),
    )
    mx, txt = ours.additionals
    assert mx.type == RecordType.MX
    assert mx.data == b"\x00\x0a\x04mail\x07example\x03com\x00"
    assert txt.type == RecordType.TXT
    assert txt.data == b"\x0bv=spf1 -all"
    assert ours.edns == Edns(payload_size=theirs.payload)


def test_dnspython_decodes_what_we_encode() -> None:
    theirs = _dnspython_response()
    again = dns.message.from_wire(decode_message(theirs.to_wire()).encode())
    assert again == theirs  # same sections, records and EDNS
    assert again.answer == theirs.answer
    assert again.additional == theirs.additional


def test_extended_rcode_travels_in_the_opt_record() -> None:
    query = decode_message(build_query("x.test", 1, id=9))
    reply = build_response(query, rcode=Rcode.BADVERS).encode()
    theirs = dns.message.from_wire(reply)
    assert theirs.rcode() == dns.rcode.BADVERS
    assert decode_message(reply).rcode == Rcode.BADVERS
    with pytest.raises(ValueError, match="EDNS"):
        Message(1, rcode=Rcode.BADVERS).encode()


def test_dnssec_ok_bit_and_options_are_kept() -> None:
    query = dns.message.make_query(
        "x.test", "A", use_edns=0, want_dnssec=True, options=[dns.edns.ECSOption("192.0.2.0", 24)]
    )
    ours = decode_message(query.to_wire())
    assert ours.edns is not None
    assert ours.edns.dnssec_ok
    assert ours.edns.options
    assert dns.message.from_wire(ours.encode()) == query


def test_truncation_drops_additionals_first_then_sets_tc() -> None:
    query = decode_message(build_query("big.test", RecordType.A, id=5, edns_payload=None))
    answers = tuple(Record("big.test", RecordType.A, 60, f"10.0.{i // 256}.{i % 256}") for i in range(40))
    full = build_response(query, answers=answers)
    assert len(full.encode()) > 512
    cut = decode_message(full.encode(max_size=512))
    assert cut.truncated
    assert cut.answers == ()
    assert cut.questions == query.questions
    extra = Message(
        full.id, full.flags, questions=full.questions, answers=answers[:5], additionals=answers[5:]
    )
    kept = decode_message(extra.encode(max_size=200))
    assert not kept.truncated
    assert kept.answers == answers[:5]
    assert kept.additionals == ()


@settings(max_examples=200)
@given(messages())
def test_encode_then_decode_is_the_identity(message: Message) -> None:
    assert decode_message(message.encode()) == message


@settings(max_examples=100)
@given(messages(plain=True))
def test_dnspython_reads_every_message_we_encode(message: Message) -> None:
    wire = message.encode()
    theirs = dns.message.from_wire(wire, ignore_trailing=False, one_rr_per_rrset=True)
    assert theirs.id == message.id
    assert len(theirs.question) == len(message.questions)
    assert sum(len(rrset) for rrset in theirs.answer) == len(message.answers)
    assert sum(len(rrset) for rrset in theirs.authority) == len(message.authorities)
    assert (theirs.edns >= 0) == (message.edns is not None)
    if message.edns is not None:
        assert theirs.rcode() == message.rcode
    # dnspython compresses "t" into a pointer to an earlier "T": equal up to ASCII case
    assert _folded(decode_message(theirs.to_wire())) == _folded(message)


def _folded(message: Message) -> Message:
    def record(r: Record) -> Record:
        data = r.data
        if isinstance(data, Soa):
            data = replace(data, mname=data.mname.lower(), rname=data.rname.lower())
        elif isinstance(data, str) and r.type not in (RecordType.A, RecordType.AAAA):
            data = data.lower()
        return replace(r, name=r.name.lower(), data=data)

    return replace(
        message,
        questions=tuple(replace(q, name=q.name.lower()) for q in message.questions),
        answers=tuple(map(record, message.answers)),
        authorities=tuple(map(record, message.authorities)),
        additionals=tuple(map(record, message.additionals)),
    )


# ---------------------------------------------------------------------- malformed input


def _with_question(name_wire: bytes, *, qd: int = 1) -> bytes:
    return struct.pack("!6H", 1, 0, qd, 0, 0, 0) + name_wire + b"\x00\x01\x00\x01"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "at least 12"),
        (b"\x00" * 11, "at least 12"),
        (_with_question(b"\xc0\x0c"), "point back"),  # a pointer to itself
        (_with_question(b"\x01a\xc0\x0c"), "point back"),  # a loop through its own label
        (_with_question(b"\xc0\x20"), "point back"),  # forward
        (_with_question(b"\x40abc\x00"), "label type"),  # 0x40: extended label, obsolete
        (_with_question(b"\x80abc\x00"), "label type"),
        (_with_question(b"\x05ab"), "past"),
        (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\xc0", "truncated compression pointer"),
        (_with_question(b"\x01a\x00") + b"junk", "after the last record"),
        (_with_question(b"\x00", qd=2), "runs past its end"),
        (struct.pack("!6H", 1, 0, 1, 0, 0, 0) + b"\x3f" + b"a" * 63, "runs past"),
    ],
)
def test_malformed_messages_raise_the_typed_error(data: bytes, why: str) -> None:
    with pytest.raises(MalformedDnsMessage, match=why):
        decode_message(data)


def test_a_name_over_255_bytes_built_from_pointers_is_refused() -> None:
    header = struct.pack("!6H", 1, 0, 5, 0, 0, 0)
    body = b"\x3f" + b"a" * 63 + b"\x00" + b"\x00\x01\x00\x01"  # offset 12, 65 bytes of name
    offset = 12
    for _ in range(4):  # each question prepends one 63-byte label to the previous one
        body += b"\x3f" + b"b" * 63 + struct.pack("!H", 0xC000 | offset) + b"\x00\x01\x00\x01"
        offset = 12 + len(body) - (64 + 2 + 4)
    with pytest.raises(MalformedDnsMessage, match="255"):
        decode_message(header + body)


def test_record_data_must_fill_exactly_its_length() -> None:
    header = struct.pack("!6H", 1, 0x8000, 0, 1, 0, 0)
    a_record = b"\x00" + struct.pack("!HHIH", 1, 1, 60, 5) + b"\x0a\x00\x00\x01\x00"
    with pytest.raises(MalformedDnsMessage, match="4 bytes"):
        decode_message(header + a_record)
    cname = b"\x00" + struct.pack("!HHIH", 5, 1, 60, 3) + b"\x01a\x00\x00"  # name is 3, but 1 left
    with pytest.raises(MalformedDnsMessage):
        decode_message(header + cname)
    runs_past = b"\x00" + struct.pack("!HHIH", 5, 1, 60, 2) + b"\x01a\x00"  # the name leaves rdata
    with pytest.raises(MalformedDnsMessage):
        decode_message(header + runs_past)


def test_two_opt_records_are_malformed_and_opt_must_be_owned_by_the_root() -> None:
    opt = b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    with pytest.raises(MalformedDnsMessage, match="more than one OPT"):
        decode_message(struct.pack("!6H", 1, 0, 0, 0, 0, 2) + opt + opt)
    owned = b"\x01a\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    with pytest.raises(MalformedDnsMessage, match="root"):
        decode_message(struct.pack("!6H", 1, 0, 0, 0, 0, 1) + owned)


def test_the_header_alone_can_be_read_from_a_cut_message() -> None:
    cut = CAPTURED_RESPONSE[:20]
    with pytest.raises(MalformedDnsMessage):
        decode_message(cut)
    header = decode_header(cut)
    assert header.id == 0x862A
    assert header.flags & Flag.QR
    assert header.ancount == 1
