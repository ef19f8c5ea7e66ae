"""Deferred accept for the forwarder: a client's SYN waits as a request until the application
answers it with accept (SYN-ACK), refuse (RST) or reject (ICMP unreachable)."""

from __future__ import annotations

import anyio
import pytest
from stack_pair import stack_pair
from tcp_harness import ACK, RST, SYN, ScriptedPeer, make_core, packed

from smolmix_core.clock import VirtualClock
from smolmix_core.errors import (
    ConnectionProhibited,
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    HostUnreachable,
    RequestClosed,
    StackClosed,
)
from smolmix_core.netstack import StackConfig, TcpConfig, Unreachable
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.tcp_request import TcpRequest
from smolmix_core.wire import (
    ICMPV4_ADMIN_PROHIBITED,
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_HOST_UNREACHABLE,
    ICMPV4_NET_UNREACHABLE,
    ICMPV6_ADDRESS_UNREACHABLE,
    ICMPV6_ADMIN_PROHIBITED,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_NO_ROUTE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    TcpOptions,
    parse_icmpv4,
    parse_icmpv6,
    parse_ip,
    quoted_flow,
)

DST4, DST6 = "93.184.216.34", "2001:db8::80"


def _forwarder(**config: object) -> NetCore:
    options: dict[str, object] = {"ipv4": "10.0.0.1", "ipv6": "fd00::1", "seed": 3, "forward_all": True}
    options.update(config)
    return NetCore(StackConfig(**options))  # type: ignore[arg-type]


def _client(core: NetCore, dst: str = DST4, port: int = 40000, **kwargs: object) -> ScriptedPeer:
    """A scripted client at 10.0.0.2 (or fd00::2) connecting through ``core`` to ``dst``:443."""
    ip = "fd00::2" if ":" in dst else "10.0.0.2"
    return ScriptedPeer(core, ip=ip, port=port, core_ip=dst, core_port=443, **kwargs)  # type: ignore[arg-type]


def _request(core: NetCore) -> TcpRequest:
    listener = core._listen_any
    assert listener is not None
    request = listener.next_request()
    assert request is not None
    return request


def test_a_syn_becomes_a_request_and_nothing_answers_it_until_accept() -> None:
    core = _forwarder()
    listener = core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss, options=TcpOptions(mss=1400, timestamp=(7, 0)))
    assert client.out() == []  # the client learns nothing yet
    assert listener.readable
    request = _request(core)
    assert request.src == ("10.0.0.2", 40000)
    assert request.dst == (DST4, 443)
    assert listener.next_request() is None
    sock = request.accept(0.5)
    (synack,) = client.out()
    assert synack.flags == SYN | ACK
    assert synack.header.ack == client.iss + 1
    assert synack.header.options.timestamp is not None
    assert synack.header.options.timestamp[1] == 7  # it echoes the SYN it answers
    client.inject(ACK, client.iss + 1, synack.header.seq + 1, options=TcpOptions(timestamp=(8, 1)))
    assert sock.established
    assert sock.local == (DST4, 443)
    assert listener.accept() is None  # the application already holds it: no accept queue
    stats = core.stats()
    assert stats["tcp_requests"] == stats["tcp_requests_accepted"] == stats["tcp_connections_accepted"] == 1
    assert stats["tcp_requests_pending"] == 0


def test_syn_retransmissions_while_pending_make_no_second_request_and_the_latest_is_answered() -> None:
    core = _forwarder()
    core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss)
    request = _request(core)
    client.now = 1.0
    client.inject(SYN, client.iss)
    client.now = 3.0
    client.inject(SYN, client.iss + 5000)  # the client restarted its attempt with a new ISN
    assert client.out() == []
    assert core._listen_any is not None
    assert core._listen_any.next_request() is None
    stats = core.stats()
    assert stats["tcp_requests"] == 1
    assert stats["tcp_request_syn_retransmits"] == 2
    request.accept(3.5)
    (synack,) = client.out()
    assert synack.header.ack == client.iss + 5001


@pytest.mark.parametrize("dst", [DST4, DST6])
def test_refuse_answers_with_rst_and_repeats_it_for_the_same_syn_only(dst: str) -> None:
    core = _forwarder()
    core.tcp_listen_any(deferred=True)
    client = _client(core, dst)
    client.inject(SYN, client.iss)
    request = _request(core)
    request.refuse(0.2)
    (rst,) = client.out()
    assert rst.flags == RST | ACK
    assert rst.header.ack == client.iss + 1
    client.now = 1.0
    client.inject(SYN, client.iss)  # crossed our RST: the same answer, no new request
    (again,) = client.out()
    assert again.flags == RST | ACK
    assert core.stats()["tcp_requests"] == 1
    assert core.stats()["tcp_request_answers_repeated"] == 1
    client.now = 2.0
    client.inject(SYN, client.iss + 99)  # a new attempt on the same 4-tuple: a new request
    assert client.out() == []
    assert core.stats()["tcp_requests"] == 2
    with pytest.raises(RequestClosed, match="already answered"):
        request.accept(2.0)


@pytest.mark.parametrize(
    ("dst", "reason", "code"),
    [
        (DST4, Unreachable.HOST, ICMPV4_HOST_UNREACHABLE),
        (DST4, Unreachable.NETWORK, ICMPV4_NET_UNREACHABLE),
        (DST4, Unreachable.PROHIBITED, ICMPV4_ADMIN_PROHIBITED),
        (DST6, Unreachable.HOST, ICMPV6_ADDRESS_UNREACHABLE),
        (DST6, Unreachable.NETWORK, ICMPV6_NO_ROUTE),
        (DST6, Unreachable.PROHIBITED, ICMPV6_ADMIN_PROHIBITED),
    ],
)
def test_reject_answers_with_icmp_unreachable_quoting_the_syn(
    dst: str, reason: Unreachable, code: int
) -> None:
    core = _forwarder()
    core.tcp_listen_any(deferred=True)
    client = _client(core, dst)
    client.inject(SYN, client.iss)
    _request(core).reject(reason, 0.1)
    (packet,) = core.drain_transmit()
    ip = parse_ip(packet)
    assert ip.src == packed(dst)  # from the destination the client asked for
    assert ip.dst == client.ip
    if ip.version == 4:
        assert ip.protocol == PROTO_ICMP
        message4 = parse_icmpv4(ip.payload)
        assert (message4.type, message4.code) == (ICMPV4_DEST_UNREACHABLE, code)
        quote = message4.original
    else:
        assert ip.protocol == PROTO_ICMPV6
        message6 = parse_icmpv6(ip.payload, ip.src, ip.dst)
        assert (message6.type, message6.code) == (ICMPV6_DEST_UNREACHABLE, code)
        quote = message6.original
    flow = quoted_flow(quote)
    assert (flow.src, flow.src_port, flow.dst, flow.dst_port) == (client.ip, 40000, packed(dst), 443)
    assert flow.tcp_seq == client.iss
    assert core.stats()["tcp_requests_rejected"] == 1


@pytest.mark.parametrize(
    ("reason", "error"),
    [
        (Unreachable.HOST, HostUnreachable),
        (Unreachable.PROHIBITED, ConnectionProhibited),
        (None, ConnectionRefused),
    ],
)
@pytest.mark.parametrize("dst", [DST4, DST6])
def test_our_own_client_fails_at_once_with_the_matching_error(
    dst: str, reason: Unreachable | None, error: type[Exception]
) -> None:
    exit_core = _forwarder()
    exit_core.tcp_listen_any(deferred=True)
    client_core = make_core("10.0.0.2", "fd00::2", seed=9)
    sock = client_core.tcp_connect((dst, 443), 0.0)
    for packet in client_core.drain_transmit():
        exit_core.receive_packet(packet, 0.0)
    request = _request(exit_core)
    if reason is None:
        request.refuse(0.1)
    else:
        request.reject(reason, 0.1)
    for packet in exit_core.drain_transmit():
        client_core.receive_packet(packet, 0.1)
    assert sock.state == "CLOSED"
    assert isinstance(sock.error, error)
    assert dst in str(sock.error) or reason is None
    assert client_core.stats()["tcp_syn_retransmits"] == 0


def test_requests_are_bounded_by_the_syn_backlog_and_room_comes_back_when_answered() -> None:
    core = _forwarder(syn_backlog=3)
    listener = core.tcp_listen_any(deferred=True)
    clients = [_client(core, port=41000 + n) for n in range(4)]
    for client in clients:
        client.inject(SYN, client.iss)
    assert core.stats()["tcp_requests"] == 3
    assert core.stats()["tcp_syn_backlog_drops"] == 1
    first = _request(core)
    first.accept(0.0)  # half-open connections count against the same bound
    clients[3].inject(SYN, clients[3].iss)
    assert core.stats()["tcp_syn_backlog_drops"] == 2
    second = _request(core)
    second.refuse(0.0)
    clients[3].inject(SYN, clients[3].iss)
    assert core.stats()["tcp_requests"] == 4
    assert listener.pending == 2


def test_an_unanswered_request_expires_as_host_unreachable() -> None:
    core = _forwarder()
    listener = core.tcp_listen_any(deferred=True, request_timeout=5.0)
    client = _client(core)
    client.inject(SYN, client.iss)
    request = _request(core)
    assert core.poll_deadline() == 5.0
    client.advance(4.9)
    assert client.out() == []
    client.at(5.0)
    (packet,) = core.drain_transmit()
    message = parse_icmpv4(parse_ip(packet).payload)
    assert (message.type, message.code) == (ICMPV4_DEST_UNREACHABLE, ICMPV4_HOST_UNREACHABLE)
    assert core.stats()["tcp_requests_expired"] == 1
    assert listener.pending == 0
    with pytest.raises(RequestClosed, match="expired"):
        request.accept(5.0)
    client.at(16.0)  # the answer is remembered only for a while: then no timer is left
    assert core.poll_deadline() is None


def test_a_request_expires_even_when_the_application_never_took_it() -> None:
    core = _forwarder()
    listener = core.tcp_listen_any(deferred=True, request_timeout=2.0)
    client = _client(core)
    client.inject(SYN, client.iss)
    client.at(2.0)
    assert core.stats()["tcp_requests_expired"] == 1
    assert listener.next_request() is None  # the expired one is skipped


def test_answering_twice_raises() -> None:
    core = _forwarder()
    core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss)
    request = _request(core)
    request.reject(Unreachable.HOST, 0.0)
    with pytest.raises(RequestClosed, match="already answered"):
        request.refuse(0.0)
    other = _client(core, port=40001)
    other.inject(SYN, other.iss)
    with pytest.raises(TypeError):
        _request(core).reject("host", 0.0)  # type: ignore[arg-type]


def test_closing_the_listener_refuses_what_is_pending() -> None:
    core = _forwarder()
    listener = core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss)
    request = _request(core)
    listener.close(0.1)
    (rst,) = client.out()
    assert rst.flags == RST | ACK
    with pytest.raises(RequestClosed, match="listener was closed"):
        request.accept(0.2)
    assert core.stats()["tcp_requests_pending"] == 0


def test_an_accepted_request_whose_client_never_acks_times_out_with_an_error() -> None:
    core = _forwarder(tcp=TcpConfig(synack_retries=2))
    core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss)
    sock = _request(core).accept(0.0)
    for when in (1.0, 3.0, 7.0):
        client.at(when)
    assert sock.state == "CLOSED"
    assert isinstance(sock.error, ConnectionTimedOut)
    assert len([s for s in client.out() if s.flags == SYN | ACK]) == 3


def test_an_accepted_request_reset_by_its_client_reports_the_reset() -> None:
    core = _forwarder()
    core.tcp_listen_any(deferred=True)
    client = _client(core)
    client.inject(SYN, client.iss)
    sock = _request(core).accept(0.0)
    assert [s.flags for s in client.out()] == [SYN | ACK]
    client.inject(RST, client.iss + 1)
    assert isinstance(sock.error, ConnectionReset)


def test_a_plain_forwarder_listener_still_answers_at_once() -> None:
    core = _forwarder()
    listener = core.tcp_listen_any()
    client = _client(core)
    client.inject(SYN, client.iss)
    (synack,) = client.out()
    assert synack.flags == SYN | ACK
    assert listener.next_request() is None


# --- the driver ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("dst", [DST4, DST6])
async def test_driver_accept_after_a_slow_decision_makes_one_request(dst: str) -> None:
    """The application takes 2.5 s (virtual) to reach the destination; the client's SYN is
    retransmitted meanwhile; one request, then a working stream both ways."""
    clock = VirtualClock()
    async with clock.running(), stack_pair(clock=clock, b_forward_all=True) as (a, b):
        requests = await b.tcp_listen_requests()
        seen = []

        async def exit_side() -> None:
            async for request in requests:
                seen.append(request)
                await clock.sleep(2.5)
                stream = await request.accept()
                assert stream.local_address == (dst, 443)
                await stream.send(b"hello from " + dst.encode())
                assert await stream.receive() == b"thanks"
                await stream.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(exit_side)
            client = await a.tcp_connect((dst, 443))
            assert await client.receive() == b"hello from " + dst.encode()
            await client.send(b"thanks")
            await client.aclose()
            await requests.aclose()
        assert len(seen) == 1
        assert a.stats()["tcp_syn_retransmits"] == 1  # at 1 s; the answer came at 2.5 s
        assert b.stats()["tcp_request_syn_retransmits"] == 1
        assert b.stats()["tcp_requests"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("dst", "answer", "error"),
    [
        (DST4, "refuse", ConnectionRefused),
        (DST6, "refuse", ConnectionRefused),
        (DST4, Unreachable.HOST, HostUnreachable),
        (DST6, Unreachable.HOST, HostUnreachable),
        (DST4, Unreachable.PROHIBITED, ConnectionProhibited),
        (DST6, Unreachable.PROHIBITED, ConnectionProhibited),
    ],
)
async def test_driver_refusal_and_rejection_fail_the_clients_connect_at_once(
    dst: str, answer: object, error: type[Exception]
) -> None:
    async with stack_pair(b_forward_all=True) as (a, b):
        requests = await b.tcp_listen_requests()

        async def exit_side() -> None:
            request = await requests.next_request()
            if answer == "refuse":
                request.refuse()
            else:
                assert isinstance(answer, Unreachable)
                request.reject_unreachable(answer)
            assert not request.pending

        async with anyio.create_task_group() as tg:
            tg.start_soon(exit_side)
            with anyio.fail_after(0.9), pytest.raises(error):  # well before the first SYN timeout
                await a.tcp_connect((dst, 80))
        assert a.stats()["tcp_syn_retransmits"] == 0


@pytest.mark.anyio
async def test_driver_an_ignored_request_expires_and_the_client_hears_host_unreachable() -> None:
    clock = VirtualClock()
    async with clock.running(), stack_pair(clock=clock, b_forward_all=True) as (a, b):
        requests = await b.tcp_listen_requests(request_timeout=4.0)
        with pytest.raises(HostUnreachable):
            await a.tcp_connect((DST4, 80))
        assert 4.0 <= clock.now() < 5.0
        assert requests.pending == 0
        assert b.stats()["tcp_requests_expired"] == 1


@pytest.mark.anyio
async def test_driver_cancelling_accept_resets_the_half_open_connection() -> None:
    async with stack_pair(b_forward_all=True) as (a, b):
        requests = await b.tcp_listen_requests()
        async with anyio.create_task_group() as tg:

            async def client() -> None:
                with pytest.raises(StackClosed):
                    await a.tcp_connect((DST4, 80))

            tg.start_soon(client)
            request = await requests.next_request()
            await a.aclose()  # the client vanishes: nothing will answer our SYN-ACK
            with anyio.move_on_after(0.3):  # before the first SYN-ACK retransmission
                await request.accept()
        stats = b.stats()
        assert stats["tcp_sockets"] == 0  # the half-open connection was reset, not kept
        assert stats["tcp_resets_sent"] == 1
        with pytest.raises(RequestClosed):
            await request.accept()


@pytest.mark.anyio
async def test_driver_stack_close_wakes_the_request_listener() -> None:
    async with stack_pair(b_forward_all=True) as (_a, b):
        requests = await b.tcp_listen_requests()
        async with anyio.create_task_group() as tg:

            async def wait() -> None:
                with pytest.raises(StackClosed):
                    await requests.next_request()

            tg.start_soon(wait)
            await anyio.sleep(0.01)
            await b.aclose()
