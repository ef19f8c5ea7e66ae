"""The exit's responder: replies checked with dnspython as the client, bad input, TCP framing and
idle timeouts, the host resolver's limits, and a fuzz of ``answer``."""

from __future__ import annotations

import random
import struct

import anyio
import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from dns_network import EXIT4, dns_network
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.clock import VirtualClock
from smolmix_core.dns import DnsResponder, HostAddresses, StaticHosts, build_query, decode_message
from smolmix_core.dns.reply import Drop, Immediate, Query, triage
from smolmix_core.errors import ConnectionReset, InvalidDomainName

pytestmark = pytest.mark.anyio

HOSTS = {"far.test": ["127.0.0.1", "::1"], "v4.test": "192.0.2.4", "Mixed.Test": ("192.0.2.5", "2001:db8::5")}


def _ask(name: str, rdtype: str = "A", **options: object) -> dns.message.Message:
    return dns.message.make_query(name, rdtype, **options)  # type: ignore[arg-type]


async def _reply(
    responder: DnsResponder, query: dns.message.Message | bytes, *, tcp: bool = False
) -> dns.message.Message:
    wire = query if isinstance(query, bytes) else query.to_wire()
    reply = await responder.answer(wire, tcp=tcp)
    assert reply is not None
    return dns.message.from_wire(reply)


async def test_static_names_answer_by_family_with_the_question_echoed() -> None:
    responder = DnsResponder(HOSTS, use_system_resolver=False, static_ttl=42)
    query = _ask("FAR.test", "A")
    reply = await _reply(responder, query)
    assert reply.id == query.id
    assert reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.RA
    assert reply.flags & dns.flags.RD
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.question[0].name.to_text() == "FAR.test."  # as asked, case and all
    assert [(rrset.ttl, [r.address for r in rrset]) for rrset in reply.answer] == [(42, ["127.0.0.1"])]
    aaaa = await _reply(responder, _ask("mixed.test", "AAAA"))
    assert [r.address for r in aaaa.answer[0]] == ["2001:db8::5"]
    both = await _reply(responder, _ask("mixed.test", "ANY"))
    assert {r.address for rrset in both.answer for r in rrset} == {"192.0.2.5", "2001:db8::5"}
    nodata = await _reply(responder, _ask("v4.test", "AAAA"))
    assert nodata.rcode() == dns.rcode.NOERROR
    assert nodata.answer == []
    other_type = await _reply(responder, _ask("v4.test", "MX"))
    assert other_type.rcode() == dns.rcode.NOERROR
    assert other_type.answer == []
    missing = await _reply(responder, _ask("nowhere.test"))
    assert missing.rcode() == dns.rcode.NXDOMAIN
    stats = responder.stats()
    assert stats["answered_static"] == 5
    assert stats["nxdomain"] == 1
    assert stats["noerror"] == 5


async def test_edns_is_echoed_and_a_plain_query_gets_no_opt() -> None:
    responder = DnsResponder(HOSTS, use_system_resolver=False)
    with_edns = await _reply(responder, _ask("v4.test", use_edns=0, payload=4096))
    assert with_edns.edns == 0
    assert with_edns.payload == 1232
    plain = await _reply(responder, _ask("v4.test"))
    assert plain.edns == -1


@pytest.mark.parametrize(
    ("payload", "limit"), [(None, 512), (1232, 1232), (4096, 1232), (600, 600), (100, 512)]
)
async def test_udp_replies_fit_what_the_client_can_take_or_are_truncated(
    payload: int | None, limit: int
) -> None:
    many = [f"10.9.{index // 250}.{index % 250}" for index in range(200)]
    responder = DnsResponder({"many.test": many}, use_system_resolver=False)
    query = _ask("many.test", use_edns=0 if payload else False, payload=payload or 512)
    wire = await responder.answer(query.to_wire())
    assert wire is not None
    assert len(wire) <= limit
    reply = dns.message.from_wire(wire)
    assert reply.flags & dns.flags.TC
    assert reply.answer == []
    whole = await _reply(responder, query, tcp=True)
    assert not whole.flags & dns.flags.TC
    assert [r.address for r in whole.answer[0]] == many
    small = DnsResponder({"one.test": "192.0.2.1"}, use_system_resolver=False)
    assert not (await _reply(small, _ask("one.test"))).flags & dns.flags.TC


# ---------------------------------------------------------------------- bad input


async def test_each_kind_of_bad_query_gets_its_rcode_or_is_dropped() -> None:
    responder = DnsResponder(HOSTS, use_system_resolver=False)
    assert await responder.answer(b"") is None
    assert await responder.answer(b"\x12\x34\x01") is None
    response = dns.message.make_response(_ask("v4.test"))
    assert await responder.answer(response.to_wire()) is None  # an answer is never answered
    body_broken = build_query("v4.test", 1, id=0x4321)[:-3]
    formerr = await _reply(responder, body_broken)
    assert formerr.id == 0x4321
    assert formerr.rcode() == dns.rcode.FORMERR
    notify = _ask("v4.test")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert (await _reply(responder, notify)).rcode() == dns.rcode.NOTIMP
    two = struct.pack("!6H", 9, 0x0100, 2, 0, 0, 0) + (b"\x02v4\x04test\x00\x00\x01\x00\x01" * 2)
    assert (await _reply(responder, two)).rcode() == dns.rcode.FORMERR
    chaos = dns.message.make_query("version.bind", "TXT", rdclass=dns.rdataclass.CH)
    assert (await _reply(responder, chaos)).rcode() == dns.rcode.REFUSED
    axfr = _ask("test", "AXFR")
    assert (await _reply(responder, axfr)).rcode() == dns.rcode.REFUSED
    future = _ask("v4.test", use_edns=1)
    badvers = await _reply(responder, future)
    assert badvers.rcode() == dns.rcode.BADVERS
    assert badvers.edns == 0
    stats = responder.stats()
    assert stats["dropped_malformed"] == 2
    assert stats["dropped_responses"] == 1
    assert stats["formerr"] == 2
    assert stats["notimp"] == 1
    assert stats["refused"] == 2
    assert stats["internal_errors"] == 0


async def test_odd_names_never_reach_the_hosts_resolver() -> None:
    responder = DnsResponder()
    for name, rcode in [
        ("127.0.0.1", dns.rcode.NXDOMAIN),  # getaddrinfo would hand an IP literal back
        ("0x7f.1", dns.rcode.NXDOMAIN),
        ("10.20", dns.rcode.NXDOMAIN),
        ("bad\\032name.test", dns.rcode.REFUSED),
        ("-lead.test", dns.rcode.REFUSED),
    ]:
        query = dns.message.make_query(dns.name.from_text(name), "A")
        assert (await _reply(responder, query)).rcode() == rcode, name
    assert responder.stats()["system_lookups"] == 0


async def test_lookups_beyond_max_pending_are_dropped_and_counted() -> None:
    responder = DnsResponder(HOSTS, max_pending=0)
    assert await responder.answer(_ask("localhost").to_wire()) is None
    assert responder.stats()["dropped_overload"] == 1
    assert (await _reply(responder, _ask("v4.test"))).answer  # static names need no lookup


def test_static_hosts_are_checked_when_built() -> None:
    hosts = StaticHosts({"A.Test.": "192.0.2.1", "b.test": ["2001:db8::1", "192.0.2.2", "192.0.2.2"]})
    assert hosts.get("a.test") == HostAddresses(("192.0.2.1",))
    assert hosts.get("B.TEST") == HostAddresses(("192.0.2.2",), ("2001:db8::1",))
    assert hosts.get("c.test") is None
    with pytest.raises(ValueError, match="not a list of IP addresses"):
        StaticHosts({"a.test": "far.test"})
    with pytest.raises(InvalidDomainName):
        StaticHosts({"a..test": "192.0.2.1"})


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_triage_never_raises(data: bytes) -> None:
    verdict = triage(data)
    assert isinstance(verdict, Query | Immediate | Drop)
    if isinstance(verdict, Immediate):
        assert decode_message(verdict.reply).id == int.from_bytes(data[:2], "big")


async def test_answer_never_raises_on_mutated_queries() -> None:
    responder = DnsResponder(HOSTS, use_system_resolver=False)
    rng = random.Random(5)
    seeds = [_ask("far.test", "AAAA", use_edns=0).to_wire(), build_query("v4.test", 1, id=3)]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        reply = await responder.answer(bytes(data[: rng.randrange(len(data) + 1)]))
        if reply is not None:
            assert decode_message(reply).is_response
    assert responder.stats()["internal_errors"] == 0


# ---------------------------------------------------------------------- serving over the stack


async def test_several_queries_share_a_tcp_connection() -> None:
    async with dns_network() as net:
        responder = DnsResponder(HOSTS, use_system_resolver=False)
        await net.serve(responder, udp=False)
        stream = await net.client.tcp_connect((EXIT4, 53))
        queries = [_ask(name) for name in ("far.test", "v4.test", "nowhere.test")]
        await stream.send(b"".join(len(q.to_wire()).to_bytes(2, "big") + q.to_wire() for q in queries))
        buffered = anyio.streams.buffered.BufferedByteReceiveStream(stream)
        replies = []
        for _ in queries:
            length = int.from_bytes(await buffered.receive_exactly(2), "big")
            replies.append(dns.message.from_wire(await buffered.receive_exactly(length)))
        assert [r.id for r in replies] == [q.id for q in queries]
        assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
        await stream.aclose()
        assert responder.stats()["tcp_connections"] == 1


async def test_idle_and_misframed_tcp_connections_are_closed() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock) as net:
        responder = DnsResponder(HOSTS, use_system_resolver=False, tcp_idle_timeout=10.0, clock=clock)
        await net.serve(responder, udp=False)
        idle = await net.client.tcp_connect((EXIT4, 53))
        started = clock.now()
        with pytest.raises(anyio.EndOfStream):
            await idle.receive()
        assert clock.now() - started == pytest.approx(10.0, abs=0.5)
        assert responder.stats()["tcp_idle_closed"] == 1
        await idle.aclose()
        misframed = await net.client.tcp_connect((EXIT4, 53))
        await misframed.send(b"\x00\x03abc")  # shorter than any DNS header
        with pytest.raises((anyio.EndOfStream, ConnectionReset)):  # unread bytes: reset, as Linux
            await misframed.receive()
        await misframed.aclose()
        assert responder.stats()["dropped_malformed"] == 1


async def test_udp_replies_come_from_the_address_the_query_was_sent_to() -> None:
    async with dns_network() as net:
        await net.serve(DnsResponder(HOSTS, use_system_resolver=False), tcp=False)
        sock = await net.client.udp_socket()
        for server in ("10.0.0.1", "fc00::1", "10.0.0.77"):
            await sock.send_to(_ask("v4.test").to_wire(), (server, 53))
            data, source = await sock.recv_from()
            assert source == (server, 53)
            assert dns.message.from_wire(data).answer[0][0].address == "192.0.2.4"
        await sock.aclose()
