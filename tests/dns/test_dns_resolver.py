"""The resolver end to end: a client Stack asks an exit-like Stack over a memory link, real bytes
both ways, on asyncio and trio; time-dependent cases run on a virtual clock."""

from __future__ import annotations

import socket

import anyio
import dns.flags
import dns.message
import dns.rcode
import dns.rrset
import pytest
from dns_network import CLIENT4, EXIT4, EXIT6, Address, dns_network

from smolmix_core.clock import VirtualClock
from smolmix_core.dns import DnsResponder, decode_message
from smolmix_core.errors import (
    DnsServerFailure,
    DnsTimeout,
    InvalidDomainName,
    NameNotFound,
    ResolutionError,
)

pytestmark = pytest.mark.anyio

HOSTS = {
    "far.test": ["127.0.0.1", "::1", "127.0.0.2"],
    "v4.test": "192.0.2.4",
    "v6.test": "2001:db8::6",
    "bücher.test": "192.0.2.8",
}


async def test_a_aaaa_and_both_interleaved_ipv4_first() -> None:
    async with dns_network() as net:
        await net.serve(DnsResponder(HOSTS, use_system_resolver=False))
        resolver = net.resolver()
        assert await resolver.resolve("far.test") == ["127.0.0.1", "::1", "127.0.0.2"]
        assert await resolver.resolve("FAR.Test.", socket.AF_INET) == ["127.0.0.1", "127.0.0.2"]
        assert await resolver.resolve("far.test", socket.AF_INET6) == ["::1"]
        assert await resolver.resolve("v6.test") == ["2001:db8::6"]
        assert await resolver.resolve("bücher.test") == ["192.0.2.8"]  # IDNA on both sides
        ipv6_first = net.resolver([EXIT6], prefer_ipv6=True)  # and a server reached over IPv6
        assert await ipv6_first.resolve("far.test") == ["::1", "127.0.0.1", "127.0.0.2"]


async def test_ip_literals_come_back_without_a_query() -> None:
    async with dns_network() as net:
        responder = DnsResponder(HOSTS, use_system_resolver=False)
        await net.serve(responder)
        resolver = net.resolver()
        assert await resolver.resolve("192.0.2.1") == ["192.0.2.1"]
        assert await resolver.resolve("2001:db8::1", socket.AF_INET6) == ["2001:db8::1"]
        assert await resolver.resolve("[2001:db8::1]") == ["2001:db8::1"]
        with pytest.raises(NameNotFound):
            await resolver.resolve("192.0.2.1", socket.AF_INET6)
        assert resolver.stats()["udp_sent"] == 0
        assert responder.stats()["queries_udp"] == 0


async def test_missing_names_and_families_are_name_not_found_gaierrors() -> None:
    async with dns_network() as net:
        await net.serve(DnsResponder(HOSTS, use_system_resolver=False))
        resolver = net.resolver()
        with pytest.raises(NameNotFound, match="NXDOMAIN") as missing:
            await resolver.resolve("nowhere.test")
        assert isinstance(missing.value, socket.gaierror)
        assert missing.value.errno == socket.EAI_NONAME
        with pytest.raises(NameNotFound, match="no IPv6 address"):
            await resolver.resolve("v4.test", socket.AF_INET6)
        with pytest.raises(InvalidDomainName):
            await resolver.resolve("a" * 64 + ".test")
        with pytest.raises(ValueError, match="family"):
            await resolver.resolve("v4.test", socket.AF_UNIX)


async def test_the_hosts_resolver_answers_at_the_exit() -> None:
    expected: dict[int, set[str]] = {}
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            infos = socket.getaddrinfo("localhost", None, family, socket.SOCK_STREAM)
        except socket.gaierror:
            infos = []
        expected[family] = {str(info[4][0]) for info in infos}
    async with dns_network() as net:
        responder = DnsResponder()  # nothing static: everything goes to getaddrinfo
        await net.serve(responder)
        resolver = net.resolver()
        for family, addresses in expected.items():
            if addresses:
                assert set(await resolver.resolve("localhost", family)) == addresses
            else:
                with pytest.raises(NameNotFound):
                    await resolver.resolve("localhost", family)
        with pytest.raises(NameNotFound):
            await resolver.resolve("no-such-host.invalid")
        assert responder.stats()["system_lookups"] == 2  # one per name, shared by A and AAAA


async def test_a_plain_stack_serves_on_its_own_port_53() -> None:
    many = [f"10.9.0.{index + 1}" for index in range(120)]  # truncated over UDP: TCP too
    async with dns_network(forward_all=False) as net:
        responder = DnsResponder({**HOSTS, "many.test": many}, use_system_resolver=False)
        await net.serve(responder, bound=True)
        for server in (EXIT4, EXIT6):
            resolver = net.resolver([server])
            assert await resolver.resolve("far.test") == ["127.0.0.1", "::1", "127.0.0.2"]
            assert await resolver.resolve("many.test", socket.AF_INET) == many
        assert responder.stats()["queries_tcp"] == 2


async def test_the_exit_serves_both_transports_on_its_tunnel_addresses() -> None:
    async with dns_network() as net:
        await net.serve(DnsResponder(HOSTS, use_system_resolver=False))
        for server in (EXIT4, EXIT6):
            resolver = net.resolver([server])
            assert await resolver.resolve("v4.test") == ["192.0.2.4"]
        stream = await net.client.tcp_connect((EXIT6, 53))
        query = dns.message.make_query("v6.test", "AAAA")
        await stream.send(len(query.to_wire()).to_bytes(2, "big") + query.to_wire())
        length = int.from_bytes(await stream.receive(2), "big")
        reply = dns.message.from_wire(await stream.receive(length))
        assert reply.answer[0][0].address == "2001:db8::6"
        await stream.aclose()


# ---------------------------------------------------------------------- scripted servers


def _answer(data: bytes, *rrsets: dns.rrset.RRset, rcode: int = dns.rcode.NOERROR) -> bytes:
    query = dns.message.from_wire(data)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.answer.extend(rrsets)
    return response.to_wire()


async def test_cname_chains_from_another_implementation_are_followed() -> None:
    async def server(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        qtype = dns.message.from_wire(data).question[0].rdtype
        chain = [
            dns.rrset.from_text("www.example.test.", 300, "IN", "CNAME", "edge.example.net."),
            dns.rrset.from_text("edge.example.net.", 300, "IN", "CNAME", "a.example.net."),
        ]
        if qtype == dns.rdatatype.A:
            chain.append(dns.rrset.from_text("a.example.net.", 60, "IN", "A", "198.51.100.1", "198.51.100.2"))
        return [(_answer(data, *chain), address)]

    async with dns_network() as net:
        await net.script(server)
        resolver = net.resolver()
        assert set(await resolver.resolve("www.example.test")) == {"198.51.100.1", "198.51.100.2"}
        with pytest.raises(NameNotFound, match="IPv6"):
            await resolver.resolve("www.example.test", socket.AF_INET6)


async def test_spoofed_and_stray_datagrams_are_ignored() -> None:
    async def server(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        genuine = _answer(data, dns.rrset.from_text("v4.test.", 60, "IN", "A", "192.0.2.4"))
        forged = _answer(data, dns.rrset.from_text("v4.test.", 60, "IN", "A", "203.0.113.66"))
        other_id = bytes([genuine[0] ^ 0x55]) + forged[1:]
        query = dns.message.from_wire(data)
        other_question = dns.message.make_response(dns.message.make_query("evil.test", "A", id=query.id))
        return [
            (forged, ("10.0.0.66", 53)),  # right bytes, wrong source address
            (forged, (address[0], 5353)),  # wrong source port
            (other_id, address),  # wrong id
            (other_question.to_wire(), address),  # wrong question
            (b"\x00\x01garbage", address),
            (genuine, address),
            (forged, address),  # too late: the lookup is over
        ]

    async with dns_network() as net:
        await net.script(server)
        resolver = net.resolver()
        assert await resolver.resolve("v4.test", socket.AF_INET) == ["192.0.2.4"]
        stats = resolver.stats()
        assert stats["ignored_source"] == 2
        assert stats["ignored_mismatch"] == 2
        assert stats["ignored_malformed"] == 1


async def test_each_lookup_uses_a_fresh_random_port_and_id() -> None:
    async def server(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        return [(_answer(data, rcode=dns.rcode.NXDOMAIN), address)]

    async with dns_network() as net:
        await net.script(server)
        resolver = net.resolver(cache_size=0)
        for index in range(12):
            with pytest.raises(NameNotFound):
                await resolver.resolve(f"n{index}.test", socket.AF_INET)
        ports = {client[1] for _data, client, _address in net.seen}
        ids = {decode_message(data).id for data, _client, _address in net.seen}
        assert len(net.seen) == 12
        assert len(ports) >= 10
        assert len(ids) >= 10
        assert all(client[0] == CLIENT4 for _data, client, _address in net.seen)


async def test_a_failing_server_is_skipped_and_all_failing_is_a_server_failure() -> None:
    async def server(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        if address[0] == "10.0.0.3":
            return [(_answer(data, dns.rrset.from_text("v4.test.", 60, "IN", "A", "192.0.2.4")), address)]
        return [(_answer(data, rcode=dns.rcode.SERVFAIL), address)]

    async with dns_network() as net:
        await net.script(server)
        resolver = net.resolver([EXIT4, "10.0.0.3"])
        assert await resolver.resolve("v4.test", socket.AF_INET) == ["192.0.2.4"]
        assert resolver.stats()["server_failures"] == 1
        with pytest.raises(DnsServerFailure, match="SERVFAIL") as failed:
            await net.resolver([EXIT4, "10.0.0.4"]).resolve("v4.test")
        assert failed.value.errno == socket.EAI_AGAIN


async def test_formerr_to_edns_is_retried_without_it() -> None:
    async def server(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        query = dns.message.from_wire(data)
        if query.edns >= 0:  # an old server: answer FORMERR, without the question, as some do
            return [(bytes(data[:2]) + b"\x80\x01" + bytes(8), address)]
        return [(_answer(data, dns.rrset.from_text("old.test.", 60, "IN", "A", "192.0.2.9")), address)]

    async with dns_network() as net:
        await net.script(server)
        resolver = net.resolver()
        assert await resolver.resolve("old.test", socket.AF_INET) == ["192.0.2.9"]
        assert resolver.stats()["edns_fallbacks"] == 1
        assert len(net.seen) == 2


# ---------------------------------------------------------------------- time


async def test_no_answer_is_a_timeout_after_every_attempt_on_every_server() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock) as net:

        async def silent(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
            return []

        await net.script(silent)
        resolver = net.resolver([EXIT4, "10.0.0.3"], timeout=2.0, attempts=3)
        started = clock.now()
        with pytest.raises(DnsTimeout) as timed_out:
            await resolver.resolve("v4.test", socket.AF_INET)
        assert clock.now() - started == pytest.approx(12.0)  # 3 attempts x 2 servers x 2 s
        assert isinstance(timed_out.value, TimeoutError)
        assert isinstance(timed_out.value, ResolutionError)
        assert [address[0] for _data, _client, address in net.seen] == [EXIT4, "10.0.0.3"] * 3
        assert resolver.stats()["timeouts"] == 6


async def test_timeouts_on_the_real_clock_too() -> None:
    async def silent(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        return []

    async with dns_network() as net:
        await net.script(silent)
        resolver = net.resolver(timeout=0.05, attempts=2)
        started = anyio.current_time()
        with pytest.raises(DnsTimeout):
            await resolver.resolve("v4.test", socket.AF_INET)
        assert 0.1 <= anyio.current_time() - started < 2.0
        assert len(net.seen) == 2


async def test_an_unreachable_port_fails_at_once() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock, forward_all=False) as net:
        resolver = net.resolver(timeout=5.0)  # nothing listens on the exit's port 53
        started = clock.now()
        with pytest.raises(DnsServerFailure, match="unreachable"):
            await resolver.resolve("v4.test", socket.AF_INET)
        assert clock.now() - started < 1.0


async def test_a_late_answer_still_counts() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock) as net:

        async def slow(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
            if len(net.seen) == 1:
                await clock.sleep(3.0)  # past the first attempt's 2 s; the retransmission is ignored
                return [
                    (_answer(data, dns.rrset.from_text("slow.test.", 60, "IN", "A", "192.0.2.3")), address)
                ]
            return []

        await net.script(slow)
        resolver = net.resolver(timeout=2.0, attempts=2)
        assert await resolver.resolve("slow.test", socket.AF_INET) == ["192.0.2.3"]
        assert clock.now() == pytest.approx(3.0, abs=0.1)
        assert resolver.stats()["udp_sent"] == 2


async def test_answers_are_cached_for_their_ttl_and_negative_ones_too() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock) as net:
        responder = DnsResponder(HOSTS, use_system_resolver=False, static_ttl=60)
        await net.serve(responder)
        resolver = net.resolver(negative_ttl=15)

        def queries() -> int:
            return responder.stats()["queries_udp"]

        assert await resolver.resolve("far.test") == ["127.0.0.1", "::1", "127.0.0.2"]
        assert queries() == 2
        await clock.sleep(59)
        assert await resolver.resolve("far.test") == ["127.0.0.1", "::1", "127.0.0.2"]
        assert queries() == 2  # from the cache
        await clock.sleep(2)
        await resolver.resolve("far.test")
        assert queries() == 4  # expired: asked again
        with pytest.raises(NameNotFound):
            await resolver.resolve("gone.test")
        await clock.sleep(14)
        with pytest.raises(NameNotFound):
            await resolver.resolve("gone.test")
        assert queries() == 6  # the NXDOMAIN was cached
        await clock.sleep(2)
        with pytest.raises(NameNotFound):
            await resolver.resolve("gone.test")
        assert queries() == 8
        assert resolver.stats()["cache_hits"] >= 4


async def test_concurrent_lookups_of_one_name_share_one_query() -> None:
    async with dns_network() as net:
        responder = DnsResponder(HOSTS, use_system_resolver=False)
        await net.serve(responder)
        resolver = net.resolver()
        results: list[list[str]] = []

        async def lookup() -> None:
            results.append(await resolver.resolve("far.test"))

        async with anyio.create_task_group() as group:
            for _ in range(20):
                group.start_soon(lookup)
        assert results == [["127.0.0.1", "::1", "127.0.0.2"]] * 20
        assert responder.stats()["queries_udp"] == 2
        assert resolver.stats()["lookups"] == 2


async def test_a_cancelled_lookup_does_not_fail_the_ones_waiting_for_it() -> None:
    clock = VirtualClock()
    async with clock.running(), dns_network(clock=clock) as net:

        async def slow(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
            await clock.sleep(1.0)
            return [(_answer(data, dns.rrset.from_text("slow.test.", 60, "IN", "A", "192.0.2.3")), address)]

        await net.script(slow)
        resolver = net.resolver(timeout=5.0)
        results: list[list[str]] = []
        leading = anyio.CancelScope()

        async def leader() -> None:
            with leading:
                await resolver.resolve("slow.test", socket.AF_INET)

        async def follower() -> None:
            results.append(await resolver.resolve("slow.test", socket.AF_INET))

        async with anyio.create_task_group() as group:
            group.start_soon(leader)
            await clock.sleep(0.1)
            group.start_soon(follower)
            await clock.sleep(0.1)
            leading.cancel()
        assert results == [["192.0.2.3"]]
        assert resolver.stats()["coalesced"] == 1
        assert resolver.stats()["lookups"] == 2  # the follower asked again itself


# ---------------------------------------------------------------------- truncation


async def test_a_truncated_answer_is_asked_again_over_tcp() -> None:
    many = [f"10.9.{index // 200}.{index % 200 + 1}" for index in range(120)]  # ~1.9 kB of answers
    async with dns_network() as net:
        responder = DnsResponder({"many.test": many}, use_system_resolver=False)
        await net.serve(responder)
        resolver = net.resolver()
        assert await resolver.resolve("many.test", socket.AF_INET) == many
        assert resolver.stats()["truncated"] == 1
        assert resolver.stats()["tcp_queries"] == 1
        stats = responder.stats()
        assert stats["truncated"] == 1
        assert stats["queries_tcp"] == 1


async def test_a_path_narrower_than_the_edns_size_still_gets_the_answer_over_tcp() -> None:
    many = [f"10.9.0.{index + 1}" for index in range(50)]  # ~830 bytes: over the 600-byte link
    async with dns_network(mtu=600) as net:
        responder = DnsResponder({"many.test": many}, use_system_resolver=False)
        await net.serve(responder)
        resolver = net.resolver()
        assert await resolver.resolve("many.test", socket.AF_INET) == many
        assert responder.stats()["truncated_for_path"] == 1
        assert resolver.stats()["tcp_queries"] == 1


async def test_a_broken_tcp_fallback_fails_that_server() -> None:
    async def truncating(data: bytes, client: Address, address: Address) -> list[tuple[bytes, Address]]:
        response = dns.message.make_response(dns.message.from_wire(data))
        response.flags |= dns.flags.TC
        return [(response.to_wire(), address)]

    async with dns_network() as net:
        await net.script(truncating)  # and nothing accepts TCP: the SYN is reset
        resolver = net.resolver()
        with pytest.raises(DnsServerFailure, match="TCP"):
            await resolver.resolve("big.test", socket.AF_INET)
        assert resolver.stats()["tcp_queries"] == 1
