"""UDP sockets, ICMP echo and errors, and the forwarder mode of the exit's userspace NAT."""

from __future__ import annotations

import pytest
from tcp_harness import ACK, SYN, ScriptedPeer, make_core, open_connection, packed

from smolmix_core.errors import (
    AddressInUse,
    AddressNotAvailable,
    ConnectionRefused,
    ConnectionTimedOut,
    HostUnreachable,
    MessageTooLarge,
)
from smolmix_core.netstack.config import StackConfig
from smolmix_core.netstack.core import NetCore
from smolmix_core.netstack.pmtu import PathMtuCache
from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_ECHO_REPLY,
    ICMPV4_ECHO_REQUEST,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV4_HOST_UNREACHABLE,
    ICMPV4_PORT_UNREACHABLE,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_ECHO_REPLY,
    ICMPV6_ECHO_REQUEST,
    ICMPV6_PORT_UNREACHABLE,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_TCP,
    PROTO_UDP,
    Icmpv4Message,
    Icmpv6Message,
    UdpHeader,
    emit_icmpv4,
    emit_icmpv6,
    emit_ip,
    emit_udp,
    parse_icmpv4,
    parse_icmpv6,
    parse_ip,
    parse_tcp,
    parse_udp,
)


def pair() -> tuple[NetCore, NetCore]:
    return make_core("10.0.0.1", "fd00::1", seed=1), make_core("10.0.0.2", "fd00::2", seed=2)


def carry(source: NetCore, target: NetCore) -> int:
    packets = source.drain_transmit()
    for packet in packets:
        target.receive_packet(packet, 0.0)
    return len(packets)


@pytest.mark.parametrize(("a_ip", "b_ip"), [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
def test_udp_datagrams_both_ways_in_both_families(a_ip: str, b_ip: str) -> None:
    a, b = pair()
    client = a.udp_bind()
    server = b.udp_bind(("::" if ":" in b_ip else "0.0.0.0", 53))
    assert server.local[1] == 53
    client.send_to(b"query", (b_ip, 53), 0.0)
    assert carry(a, b) == 1
    assert server in b.drain_wakeups()
    data, source = server.recv_from() or (b"", ("", 0))
    assert data == b"query"
    assert source == (a_ip, client.local[1])
    server.send_to(b"answer", source, 0.0)
    carry(b, a)
    assert client.recv_from() == (b"answer", (b_ip, 53))
    assert client.recv_from() is None
    assert a.stats()["udp_sent"] == 1
    assert b.stats()["udp_received"] == 1


def test_udp_to_a_closed_port_is_refused_once() -> None:
    a, b = pair()
    client = a.udp_bind(("0.0.0.0", 0))
    client.send_to(b"hello?", ("10.0.0.2", 9), 0.0)
    carry(a, b)
    assert b.stats()["udp_no_socket"] == 1
    (icmp,) = b.drain_transmit()
    message = parse_icmpv4(parse_ip(icmp).payload)
    assert (message.type, message.code) == (ICMPV4_DEST_UNREACHABLE, ICMPV4_PORT_UNREACHABLE)
    a.receive_packet(icmp, 0.0)
    assert isinstance(client.error, ConnectionRefused)
    assert client in a.drain_wakeups()
    with pytest.raises(ConnectionRefused):
        client.send_to(b"again", ("10.0.0.2", 9), 0.0)
    assert client.error is None
    client.send_to(b"again", ("10.0.0.2", 9), 0.0)  # reported once, then cleared


def test_udp_port_unreachable_over_ipv6() -> None:
    a, b = pair()
    client = a.udp_bind(("::", 0))
    client.send_to(b"x", ("fd00::2", 9), 0.0)
    carry(a, b)
    (icmp,) = b.drain_transmit()
    ip = parse_ip(icmp)
    message = parse_icmpv6(ip.payload, ip.src, ip.dst)
    assert (message.type, message.code) == (ICMPV6_DEST_UNREACHABLE, ICMPV6_PORT_UNREACHABLE)
    a.receive_packet(icmp, 0.0)
    assert isinstance(client.error, ConnectionRefused)


def test_udp_queue_drops_the_newest_when_full() -> None:
    a = make_core()
    b = NetCore(StackConfig(ipv4="10.0.0.2", ipv6="fd00::2", seed=2, udp_queue=3))
    server = b.udp_bind(("0.0.0.0", 53))
    client = a.udp_bind()
    for index in range(5):
        client.send_to(bytes([index]), ("10.0.0.2", 53), 0.0)
    carry(a, b)
    assert [server.recv_from() for _ in range(4)][:3] == [
        (bytes([i]), ("10.0.0.1", client.local[1])) for i in range(3)
    ]
    assert b.stats()["udp_queue_drops"] == 2


def test_udp_binding_rules_and_size_limit() -> None:
    a = make_core()
    sock = a.udp_bind(("10.0.0.1", 5353))
    with pytest.raises(AddressInUse):
        a.udp_bind(("0.0.0.0", 5353))
    a.udp_bind(("::", 5353))  # the other family is free
    with pytest.raises(AddressNotAvailable):
        a.udp_bind(("192.168.1.1", 1))
    with pytest.raises(AddressNotAvailable):
        sock.send_to(b"x", ("fd00::2", 1), 0.0)  # bound for IPv4 only
    sock.send_to(b"x" * 1472, ("10.0.0.2", 1), 0.0)
    with pytest.raises(MessageTooLarge):
        sock.send_to(b"x" * 1473, ("10.0.0.2", 1), 0.0)
    sock.close()
    a.udp_bind(("0.0.0.0", 5353))  # free again
    v4only = NetCore(StackConfig(ipv6=None))
    with pytest.raises(HostUnreachable):
        v4only.tcp_connect(("fd00::2", 80), 0.0)


@pytest.mark.parametrize("family", [4, 6])
def test_echo_requests_to_our_address_are_answered(family: int) -> None:
    core = make_core()
    if family == 4:
        source, target = packed("10.0.0.2"), packed("10.0.0.1")
        body = emit_icmpv4(Icmpv4Message(ICMPV4_ECHO_REQUEST, 0, ident=7, seq=3, data=b"ping!"))
        core.receive_packet(emit_ip(source, target, PROTO_ICMP, body), 0.0)
        (reply,) = core.drain_transmit()
        ip = parse_ip(reply)
        message = parse_icmpv4(ip.payload)
        assert message.type == ICMPV4_ECHO_REPLY
    else:
        source, target = packed("fd00::2"), packed("fd00::1")
        request = Icmpv6Message(ICMPV6_ECHO_REQUEST, 0, ident=7, seq=3, data=b"ping!")
        core.receive_packet(emit_ip(source, target, PROTO_ICMPV6, emit_icmpv6(request, source, target)), 0.0)
        (reply,) = core.drain_transmit()
        ip = parse_ip(reply)
        message6 = parse_icmpv6(ip.payload, ip.src, ip.dst)
        assert message6.type == ICMPV6_ECHO_REPLY
        assert (message6.ident, message6.seq, message6.data) == (7, 3, b"ping!")
    assert (ip.src, ip.dst) == (target, source)
    if family == 4:
        assert (message.ident, message.seq, message.data) == (7, 3, b"ping!")
    assert core.stats()["icmp_echo_replies"] == 1


def test_icmp_port_unreachable_refuses_a_tcp_connect_and_host_unreachable_is_soft_later() -> None:
    core = make_core(timestamps=False, syn_retries=1, max_retries=1)
    sock = core.tcp_connect(("10.0.0.2", 80), 0.0)
    (syn,) = core.drain_transmit()
    refused = emit_icmpv4(Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_PORT_UNREACHABLE, data=syn[:28]))
    core.receive_packet(emit_ip(packed("10.0.0.2"), packed("10.0.0.1"), PROTO_ICMP, refused), 0.0)
    assert isinstance(sock.error, ConnectionRefused)

    sock, peer = open_connection(core)
    sock.send(b"data", 0.0)
    (segment,) = peer.out()
    unreachable = Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_HOST_UNREACHABLE, data=segment.raw[:28])
    core.receive_packet(
        emit_ip(packed("10.0.0.254"), packed("10.0.0.1"), PROTO_ICMP, emit_icmpv4(unreachable)), 0.0
    )
    assert sock.error is None  # soft: the route may come back
    for _ in range(3):
        peer.at(core.poll_deadline() or 0.0)
    assert isinstance(sock.error, HostUnreachable)  # reported instead of a plain timeout
    assert not isinstance(sock.error, ConnectionTimedOut)


def forwarder() -> NetCore:
    return NetCore(StackConfig(ipv4="10.0.0.1", ipv6="fd00::1", seed=3, forward_all=True))


def test_forwarder_accepts_tcp_to_any_address_and_answers_from_it() -> None:
    core = forwarder()
    listener = core.tcp_listen_any()
    peer = ScriptedPeer(core, ip="10.8.0.5", core_ip="93.184.216.34", core_port=443)
    peer.inject(SYN, 100)
    (synack,) = peer.out()
    assert synack.flags == SYN | ACK
    ip = parse_ip(synack.raw)
    assert ip.src == packed("93.184.216.34")
    peer.inject(ACK, 101, synack.header.seq + 1)
    sock = listener.accept()
    assert sock is not None
    assert sock.local == ("93.184.216.34", 443)
    assert sock.remote == ("10.8.0.5", 40000)


def test_forwarder_udp_sees_and_spoofs_the_original_destination() -> None:
    core = forwarder()
    catch_all = core.udp_bind_any()
    client, target = packed("10.8.0.5"), packed("1.1.1.1")
    datagram = emit_udp(UdpHeader(5000, 53), b"dns?", client, target)
    core.receive_packet(emit_ip(client, target, PROTO_UDP, datagram), 0.0)
    assert catch_all.recv_from_any() == (b"dns?", ("10.8.0.5", 5000), ("1.1.1.1", 53))
    catch_all.send_from(b"dns!", ("1.1.1.1", 53), ("10.8.0.5", 5000), 0.0)
    (reply,) = core.drain_transmit()
    ip = parse_ip(reply)
    header, data = parse_udp(ip.payload, ip.src, ip.dst)
    assert (ip.src, ip.dst, header.src_port, header.dst_port, data) == (target, client, 53, 5000, b"dns!")
    with pytest.raises(AddressNotAvailable):
        catch_all.send_to(b"x", ("10.8.0.5", 5000), 0.0)


def test_forwarder_still_serves_its_own_sockets_first() -> None:
    core = forwarder()
    core.tcp_listen_any()
    own = core.tcp_listen(("0.0.0.0", 53))
    peer = ScriptedPeer(core, core_port=53)
    peer.inject(SYN, 100)
    (synack,) = peer.out()
    peer.inject(ACK, 101, synack.header.seq + 1)
    assert own.accept() is not None


def test_non_forwarder_ignores_traffic_for_other_addresses() -> None:
    core = make_core()
    core.udp_bind(("0.0.0.0", 53))
    client, target = packed("10.0.0.2"), packed("1.1.1.1")
    core.receive_packet(
        emit_ip(client, target, PROTO_UDP, emit_udp(UdpHeader(1, 53), b"x", client, target)), 0.0
    )
    assert core.stats()["not_for_us"] == 1
    assert core.drain_transmit() == []


def test_rst_reply_from_the_forwarder_uses_the_original_destination() -> None:
    core = forwarder()
    peer = ScriptedPeer(core, ip="10.8.0.5", core_ip="93.184.216.34", core_port=443)
    peer.inject(ACK, 100, 200)
    assert core.drain_transmit() == []  # not forwarding TCP: nobody to speak for that host
    assert core.stats()["tcp_no_socket"] == 1
    core.tcp_listen_any()
    peer.inject(ACK, 100, 200)
    (rst,) = core.drain_transmit()
    ip = parse_ip(rst)
    header, _ = parse_tcp(ip.payload, ip.src, ip.dst)
    assert ip.src == packed("93.184.216.34")
    assert ip.protocol == PROTO_TCP
    assert header.seq == 200


def _frag_needed(core: NetCore, quoted: bytes, mtu: int, now: float) -> None:
    message = Icmpv4Message(ICMPV4_DEST_UNREACHABLE, ICMPV4_FRAGMENTATION_NEEDED, mtu=mtu, data=quoted[:48])
    core.receive_packet(
        emit_ip(packed("10.0.0.254"), packed("10.0.0.1"), PROTO_ICMP, emit_icmpv4(message)), now
    )


def test_udp_learns_the_path_mtu_from_icmp_and_refuses_what_would_vanish() -> None:
    """RFC 1191: a datagram the path cannot carry is dropped by the router; after its ICMP the
    same size raises MessageTooLarge instead of disappearing, until the entry expires."""
    core = make_core()
    udp = core.udp_bind(("0.0.0.0", 5353))
    udp.send_to(b"x" * 1400, ("10.0.0.9", 53), 0.0)
    (datagram,) = core.drain_transmit()
    _frag_needed(core, datagram, 1000, 1.0)
    assert core.stats()["pmtu_learned"] == 1
    with pytest.raises(MessageTooLarge, match="path MTU"):
        udp.send_to(b"x" * 1400, ("10.0.0.9", 53), 2.0)
    udp.send_to(b"x" * 972, ("10.0.0.9", 53), 2.0)  # 1000 - 28
    with pytest.raises(MessageTooLarge):
        udp.send_to(b"x" * 973, ("10.0.0.9", 53), 2.0)
    udp.send_to(b"x" * 1400, ("10.0.0.10", 53), 2.0)  # other destinations are not affected
    udp.send_to(b"x" * 1400, ("10.0.0.9", 53), 601.0)  # the entry expired (10 minutes)
    assert core.stats()["pmtu_entries"] == 0


def test_icmp_about_a_udp_port_we_do_not_use_teaches_nothing() -> None:
    core = make_core()
    forged = emit_ip(
        packed("10.0.0.1"),
        packed("10.0.0.9"),
        PROTO_UDP,
        emit_udp(UdpHeader(4444, 53), b"x", packed("10.0.0.1"), packed("10.0.0.9")),
    )
    _frag_needed(core, forged, 600, 0.0)
    assert core.stats()["pmtu_learned"] == 0
    assert core.stats()["icmp_errors_ignored"] == 1
    assert core.path_mtu(packed("10.0.0.9"), 0.0) == 1500


def test_a_new_connection_starts_with_the_path_mtu_an_earlier_one_learnt() -> None:
    core = make_core(timestamps=False)
    sock, peer = open_connection(core)
    sock.send(b"p" * 3000, 0.0)
    first, *_ = peer.out()
    _frag_needed(core, first.raw, 1000, 0.5)
    assert sock.mss == 960
    assert [len(s.payload) for s in peer.out()] == [960, 500, 960, 500]  # the flight, cut down
    second = core.tcp_connect(("10.0.0.2", 81), 1.0)
    (syn,) = core.drain_transmit()
    header, _ = parse_tcp(parse_ip(syn).payload, packed("10.0.0.1"), packed("10.0.0.2"))
    assert header.flags == SYN
    assert header.options.mss == 960
    assert second.info()["path_mss"] == 960
    other = core.tcp_connect(("10.0.0.3", 80), 1.0)
    assert other.info()["path_mss"] == 1460


def test_the_path_mtu_cache_is_bounded_and_only_lowers() -> None:
    cache = PathMtuCache(capacity=100)
    for index in range(1000):
        cache.learn(index.to_bytes(4, "big"), 1000, 0.0)
    assert len(cache) == 100
    assert cache.get((999).to_bytes(4, "big"), 0.0) == 1000
    assert cache.get((0).to_bytes(4, "big"), 0.0) is None  # the oldest went first
    assert not cache.learn((999).to_bytes(4, "big"), 1200, 1.0)
    assert cache.learn((999).to_bytes(4, "big"), 800, 1.0)
    assert cache.get((999).to_bytes(4, "big"), 1.0) == 800


def test_a_too_big_error_quoting_a_packet_that_fitted_is_ignored() -> None:
    """RFC 5927 5.2: the quoted packet must have been larger than the MTU the error reports."""
    core = make_core()
    udp = core.udp_bind(("0.0.0.0", 5353))
    udp.send_to(b"x" * 500, ("10.0.0.9", 53), 0.0)
    (datagram,) = core.drain_transmit()
    _frag_needed(core, datagram, 1000, 1.0)
    assert core.stats()["pmtu_learned"] == 0
    assert core.stats()["icmp_errors_ignored"] == 1
    udp.send_to(b"x" * 1400, ("10.0.0.9", 53), 2.0)
