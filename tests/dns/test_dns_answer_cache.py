"""Reading answers (CNAME chains, negative TTLs, reply matching) and the TTL cache, sans-I/O."""

from __future__ import annotations

import itertools

import pytest

from smolmix_core.dns import (
    Answer,
    DnsCache,
    Flag,
    Message,
    Opcode,
    Question,
    Rcode,
    Record,
    RecordType,
    Soa,
    is_reply_to,
    read_answer,
)
from smolmix_core.dns.answer import MAX_CNAME_CHAIN
from smolmix_core.errors import DnsServerFailure

Q = Question("www.example.com", RecordType.A)
SOA = Record("example.com", RecordType.SOA, 600, Soa("ns.example.com", "h.example.com", 1, 2, 3, 4, 120))


def _reply(*answers: Record, rcode: int = Rcode.NOERROR, authorities: tuple[Record, ...] = ()) -> Message:
    return Message(7, int(Flag.QR | Flag.RD | Flag.RA), Opcode.QUERY, rcode, (Q,), answers, authorities)


def test_addresses_keep_the_servers_order_and_take_the_smallest_ttl() -> None:
    reply = _reply(
        Record("www.example.com", RecordType.A, 300, "192.0.2.2"),
        Record("WWW.example.COM", RecordType.A, 60, "192.0.2.1"),
        Record("www.example.com", RecordType.A, 60, "192.0.2.2"),  # a repeat is dropped
        Record("www.example.com", RecordType.AAAA, 5, "2001:db8::1"),  # not the type asked for
        Record("other.example.com", RecordType.A, 1, "192.0.2.9"),  # not the name asked for
    )
    answer = read_answer(reply, Q, negative_ttl=30)
    assert answer == Answer(("192.0.2.2", "192.0.2.1"), 60)
    assert not answer.negative


def test_a_cname_chain_is_followed_and_its_ttls_count() -> None:
    reply = _reply(
        Record("a.example.net", RecordType.A, 3600, "198.51.100.7"),  # order of records is free
        Record("www.example.com", RecordType.CNAME, 40, "Edge.Example.NET"),
        Record("edge.example.net", RecordType.CNAME, 3600, "a.example.net"),
    )
    answer = read_answer(reply, Q, negative_ttl=30)
    assert answer.addresses == ("198.51.100.7",)
    assert answer.ttl == 40
    assert answer.canonical_name == "a.example.net"


def test_a_chain_that_ends_without_addresses_is_nodata_and_nxdomain_stays_nxdomain() -> None:
    chain = Record("www.example.com", RecordType.CNAME, 40, "gone.example.net")
    nodata = read_answer(_reply(chain), Q, negative_ttl=30)
    assert nodata == Answer((), 30, Rcode.NOERROR, "gone.example.net")
    nxdomain = read_answer(_reply(chain, rcode=Rcode.NXDOMAIN), Q, negative_ttl=30)
    assert nxdomain.negative
    assert nxdomain.rcode == Rcode.NXDOMAIN


def test_negative_ttl_comes_from_the_soa_per_rfc_2308() -> None:
    assert read_answer(_reply(rcode=Rcode.NXDOMAIN, authorities=(SOA,)), Q, negative_ttl=30).ttl == 120
    short_soa = Record("example.com", RecordType.SOA, 9, SOA.data)
    assert read_answer(_reply(authorities=(short_soa,)), Q, negative_ttl=30).ttl == 9
    assert read_answer(_reply(rcode=Rcode.NXDOMAIN), Q, negative_ttl=30).ttl == 30


def test_a_ttl_with_the_top_bit_set_counts_as_zero() -> None:
    reply = _reply(Record("www.example.com", RecordType.A, 0x80000000, "192.0.2.1"))
    assert read_answer(reply, Q, negative_ttl=30).ttl == 0


@pytest.mark.parametrize("rcode", [Rcode.SERVFAIL, Rcode.REFUSED, Rcode.NOTIMP, Rcode.FORMERR, 11])
def test_error_rcodes_are_server_failures(rcode: int) -> None:
    with pytest.raises(DnsServerFailure, match="answered"):
        read_answer(_reply(rcode=rcode), Q, negative_ttl=30)


def test_cname_loops_and_overlong_chains_are_server_failures() -> None:
    loop = _reply(
        Record("www.example.com", RecordType.CNAME, 60, "b.example.com"),
        Record("b.example.com", RecordType.CNAME, 60, "WWW.example.com"),
    )
    with pytest.raises(DnsServerFailure, match="loops"):
        read_answer(loop, Q, negative_ttl=30)
    names = ["www.example.com"] + [f"n{i}.example.com" for i in range(MAX_CNAME_CHAIN + 1)]
    long_chain = _reply(
        *(Record(a, RecordType.CNAME, 60, b) for a, b in itertools.pairwise(names)),
        Record(names[-1], RecordType.A, 60, "192.0.2.1"),
    )
    with pytest.raises(DnsServerFailure, match="longer"):
        read_answer(long_chain, Q, negative_ttl=30)
    fits = _reply(
        *(Record(a, RecordType.CNAME, 60, b) for a, b in itertools.pairwise(names[:-1])),
        Record(names[-2], RecordType.A, 60, "192.0.2.1"),
    )
    assert read_answer(fits, Q, negative_ttl=30).addresses == ("192.0.2.1",)


def test_is_reply_to_checks_id_direction_opcode_and_the_question() -> None:
    good = _reply()
    assert is_reply_to(good, 7, Q)
    assert is_reply_to(good, 7, Question("WWW.EXAMPLE.COM", RecordType.A))  # case-insensitive
    assert not is_reply_to(good, 8, Q)
    assert not is_reply_to(Message(7, 0, questions=(Q,)), 7, Q)  # a query, not a reply
    assert not is_reply_to(Message(7, int(Flag.QR), Opcode.STATUS, questions=(Q,)), 7, Q)
    assert not is_reply_to(good, 7, Question("www.example.org", RecordType.A))
    assert not is_reply_to(good, 7, Question("www.example.com", RecordType.AAAA))
    assert not is_reply_to(Message(7, int(Flag.QR), questions=(Q, Q)), 7, Q)
    # only an error reply may leave the question out
    assert is_reply_to(Message(7, int(Flag.QR), rcode=Rcode.FORMERR), 7, Q)
    assert not is_reply_to(Message(7, int(Flag.QR)), 7, Q)
    assert not is_reply_to(Message(7, int(Flag.QR), rcode=Rcode.NXDOMAIN), 7, Q)


# ---------------------------------------------------------------------- cache


def test_the_cache_counts_ttls_down_and_forgets_at_expiry() -> None:
    cache = DnsCache(min_ttl=0)
    cache.put(("a.test", 1), Answer(("192.0.2.1",), 60), now=100.0)
    assert cache.get(("a.test", 1), 100.0) == Answer(("192.0.2.1",), 60)
    assert cache.get(("a.test", 1), 130.5) == Answer(("192.0.2.1",), 30)
    assert cache.get(("a.test", 28), 130.5) is None
    assert cache.get(("a.test", 1), 160.0) is None
    assert len(cache) == 0
    assert cache.counters["hits"] == 2
    assert cache.counters["expired"] == 1


def test_ttls_are_clamped_and_a_zero_ttl_is_not_stored() -> None:
    cache = DnsCache(min_ttl=5, max_ttl=3600, max_negative_ttl=300)
    cache.put(("short", 1), Answer(("192.0.2.1",), 0), now=0.0)
    cache.put(("long", 1), Answer(("192.0.2.1",), 10**9), now=0.0)
    cache.put(("missing", 1), Answer((), 86400, Rcode.NXDOMAIN), now=0.0)
    assert cache.get(("short", 1), 4.9) is not None
    assert cache.get(("short", 1), 5.0) is None
    assert cache.get(("long", 1), 3599.0) is not None
    assert cache.get(("long", 1), 3600.0) is None
    negative = cache.get(("missing", 1), 299.0)
    assert negative is not None
    assert negative.rcode == Rcode.NXDOMAIN  # negative answers are cached (RFC 2308)
    assert cache.get(("missing", 1), 300.0) is None
    uncached = DnsCache(min_ttl=0)
    uncached.put(("zero", 1), Answer(("192.0.2.1",), 0), now=0.0)
    assert len(uncached) == 0


def test_the_least_recently_used_entry_is_evicted_when_full() -> None:
    cache = DnsCache(3, min_ttl=0)
    for index in range(3):
        cache.put((f"n{index}", 1), Answer(("192.0.2.1",), 60), now=0.0)
    assert cache.get(("n0", 1), 1.0) is not None  # n0 is now the most recently used
    cache.put(("n3", 1), Answer(("192.0.2.1",), 60), now=1.0)
    assert len(cache) == 3
    assert cache.get(("n1", 1), 1.0) is None
    assert cache.get(("n0", 1), 1.0) is not None
    assert cache.counters["evicted"] == 1
    disabled = DnsCache(0)
    disabled.put(("n", 1), Answer(("192.0.2.1",), 60), now=0.0)
    assert disabled.get(("n", 1), 0.0) is None


def test_cache_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        DnsCache(-1)
    with pytest.raises(ValueError):
        DnsCache(min_ttl=10, max_ttl=5)
