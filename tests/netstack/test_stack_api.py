"""The Stack's anyio API between two stacks on a memory link, on asyncio and trio."""

from __future__ import annotations

import datetime
import hashlib
import socket
import ssl
import tempfile
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream
from stack_pair import A4, A6, B4, B6, eventually, read_all, stack_pair

from smolmix_core.clock import VirtualClock
from smolmix_core.errors import (
    ConnectionRefused,
    ConnectionReset,
    ConnectionTimedOut,
    MessageTooLarge,
    StackClosed,
)
from smolmix_core.netstack import TcpConfig, TcpStream, TcpStreamAttribute

pytestmark = pytest.mark.anyio


async def _echo(stream: TcpStream) -> None:
    async with stream:
        while True:
            try:
                data = await stream.receive()
            except anyio.EndOfStream:
                return
            await stream.send(data)


@pytest.mark.parametrize(("server_ip", "client_ip"), [(B4, A4), (B6, A6)], ids=["ipv4", "ipv6"])
async def test_connect_accept_echo(server_ip: str, client_ip: str) -> None:
    async with stack_pair() as (a, b), anyio.create_task_group() as tg:
        listener = await b.tcp_listen((server_ip, 7))
        tg.start_soon(listener.serve, _echo)
        stream = await a.tcp_connect((server_ip, 7))
        assert stream.local_address[0] == client_ip
        assert stream.remote_address == (server_ip, 7)
        payload = bytes(range(256)) * 1000
        async with anyio.create_task_group() as io:
            io.start_soon(stream.send, payload)
            echoed = b""
            while len(echoed) < len(payload):
                echoed += await stream.receive()
        assert echoed == payload
        await stream.send_eof()
        assert await read_all(stream) == b""
        await stream.aclose()
        await listener.aclose()
        tg.cancel_scope.cancel()


async def test_fin_gives_end_of_stream_and_half_close_keeps_the_other_way_open() -> None:
    async with stack_pair() as (a, b):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()
        request = b"GET / HTTP/1.0\r\n\r\n" * 500
        await client.send(request)
        await client.send_eof()
        assert await read_all(server) == request
        with pytest.raises(anyio.EndOfStream):
            await server.receive()  # stays at EOF
        response = hashlib.sha256(request).digest() * 3000
        await server.send(response)  # the server may still send after the client's FIN
        await server.aclose()
        assert await read_all(client) == response
        await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send(b"x")


async def test_is_readable_and_socket_attributes() -> None:
    async with stack_pair() as (a, b):
        listener = await b.tcp_listen(("::", 443))
        client = await a.tcp_connect((B6, 443))
        server = await listener.accept()
        is_readable = client.extra(TcpStreamAttribute.is_readable)
        assert is_readable() is False
        assert client.extra(TcpStreamAttribute.tcp_state)() == "ESTABLISHED"
        assert client.extra(SocketAttribute.family) == socket.AF_INET6
        assert client.extra(SocketAttribute.remote_address) == (B6, 443)
        assert client.extra(SocketAttribute.local_address) == client.local_address
        assert server.extra(SocketAttribute.remote_port) == client.local_address[1]
        assert listener.extra(SocketAttribute.local_port) == 443
        with pytest.raises(anyio.TypedAttributeLookupError):
            client.extra(SocketAttribute.raw_socket)
        await server.send(b"hi")
        await eventually(is_readable)
        assert await client.receive() == b"hi"
        assert is_readable() is False
        await server.aclose()  # FIN: an idle pooled connection must now look readable
        await eventually(is_readable)
        with pytest.raises(anyio.EndOfStream):
            await client.receive()
        await client.aclose()
        assert is_readable() is True


async def test_refused_when_nobody_listens() -> None:
    async with stack_pair() as (a, _b):
        with pytest.raises(ConnectionRefused):
            await a.tcp_connect((B4, 9))
        with pytest.raises(ConnectionRefusedError):  # the built-in base works too
            await a.tcp_connect((B6, 9))


async def test_peer_abort_resets_and_own_abort_closes() -> None:
    async with stack_pair() as (a, b):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()
        await client.send(b"partial")
        assert await server.receive() == b"partial"
        server.abort()
        with pytest.raises(anyio.ClosedResourceError):
            await server.send(b"after abort")
        with pytest.raises(ConnectionReset):
            await client.receive()
        with pytest.raises(ConnectionReset):
            await client.send(b"more")
        assert client.extra(TcpStreamAttribute.is_readable)() is True
        await client.aclose()  # never raises on a failed stream
        await client.aclose()


async def test_connect_timeout_on_the_virtual_clock() -> None:
    clock = VirtualClock()
    async with clock.running(), stack_pair(clock=clock) as (a, _b):
        started = clock.now()
        with pytest.raises(ConnectionTimedOut):
            await a.tcp_connect(("10.9.9.9", 80), timeout=3.0)  # B ignores packets not for it
        assert clock.now() - started == pytest.approx(3.0)
        assert a.stats()["tcp_sockets"] == 0


async def test_unanswered_syns_time_out_after_retries() -> None:
    clock = VirtualClock()
    tcp = TcpConfig(syn_retries=2, initial_rto=1.0)
    async with clock.running(), stack_pair(clock=clock, tcp=tcp) as (a, _b):
        with pytest.raises(ConnectionTimedOut):
            await a.tcp_connect(("10.9.9.9", 80))
        assert clock.now() >= 3.0
        assert a.stats()["tcp_syn_retransmits"] == 2


async def test_send_waits_for_buffer_space_and_cancelled_send_keeps_stream_usable() -> None:
    tcp = TcpConfig(send_buffer=16_384, recv_buffer=16_384)
    async with stack_pair(tcp=tcp) as (a, b):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()
        first = bytes(range(256)) * 800
        with anyio.move_on_after(0.2) as scope:
            await client.send(first)
        assert scope.cancelled_caught, "send must wait while the peer does not read"
        second = b"second" * 10_000
        async with anyio.create_task_group() as tg:

            async def finish() -> None:
                await client.send(second)
                await client.send_eof()

            tg.start_soon(finish)
            received = await read_all(server)
        accepted = len(received) - len(second)
        assert received[accepted:] == second
        assert received[:accepted] == first[:accepted]
        # what the cancelled send got rid of is bounded by our send buffer plus the peer's window
        assert 16_384 <= accepted <= 2 * 16_384 + 1500


async def test_cancelled_receive_leaves_stream_usable_and_no_task_behind() -> None:
    tasks_before = len(anyio.get_running_tasks())
    async with stack_pair() as (a, b):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()
        with anyio.move_on_after(0.05) as scope:
            await client.receive()
        assert scope.cancelled_caught
        await server.send(b"late")
        assert await client.receive() == b"late"
        with anyio.CancelScope() as connecting:
            connecting.cancel()
            await a.tcp_connect(("10.9.9.9", 80))
        assert a.stats()["tcp_connections_opened"] == 2 or a.stats()["tcp_sockets"] <= 1
    assert len(anyio.get_running_tasks()) == tasks_before


async def test_cancelled_connect_forgets_the_half_open_socket() -> None:
    async with stack_pair() as (a, _b):
        with anyio.move_on_after(0.05):
            await a.tcp_connect(("10.9.9.9", 80))
        assert a.stats()["tcp_sockets"] == 0


async def test_concurrent_receives_are_refused() -> None:
    async with stack_pair() as (a, b), anyio.create_task_group() as tg:
        listener = await b.tcp_listen(("0.0.0.0", 80))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()  # kept: a dropped stream would reset the connection
        tg.start_soon(client.receive)
        await anyio.sleep(0.01)
        with pytest.raises(anyio.BusyResourceError):
            await client.receive()
        tg.cancel_scope.cancel()
    await server.aclose()


async def test_closing_the_stack_wakes_every_waiter_with_stack_closed() -> None:
    outcomes: dict[str, str] = {}
    tasks_before = len(anyio.get_running_tasks())

    async def expect_closed(name: str, awaitable_factory: object) -> None:
        try:
            await awaitable_factory()  # type: ignore[operator]
        except StackClosed:
            outcomes[name] = "StackClosed"
        except Exception as exc:
            outcomes[name] = repr(exc)

    async with anyio.create_task_group() as tg, stack_pair() as (a, b):
        listener = await b.tcp_listen(("0.0.0.0", 80))
        idle_listener = await a.tcp_listen(("0.0.0.0", 81))
        client = await a.tcp_connect((B4, 80))
        server = await listener.accept()
        udp = await a.udp_socket()
        tg.start_soon(expect_closed, "receive", client.receive)
        tg.start_soon(expect_closed, "accept", idle_listener.accept)
        tg.start_soon(expect_closed, "recv_from", udp.recv_from)
        tg.start_soon(expect_closed, "connect", lambda: a.tcp_connect(("10.9.9.9", 1)))
        await anyio.sleep(0.05)
        await a.aclose()
        await anyio.sleep(0.01)
        assert a.closed
        with pytest.raises(StackClosed):
            await a.tcp_connect((B4, 80))
        with pytest.raises(StackClosed):
            await client.send(b"x")
        await server.aclose()
    assert outcomes == dict.fromkeys(("receive", "accept", "recv_from", "connect"), "StackClosed")
    assert len(anyio.get_running_tasks()) == tasks_before


async def test_listener_async_iteration_and_close() -> None:
    async with stack_pair() as (a, b), anyio.create_task_group() as tg:
        listener = await b.tcp_listen(("0.0.0.0", 5000))
        accepted: list[TcpStream] = []

        async def accept_all() -> None:
            async for stream in listener:
                accepted.append(stream)

        tg.start_soon(accept_all)
        clients = [await a.tcp_connect((B4, 5000)) for _ in range(5)]
        await eventually(lambda: len(accepted) == 5)
        await listener.aclose()
        assert {s.remote_address for s in accepted} == {c.local_address for c in clients}
        with pytest.raises(ConnectionRefused):
            await a.tcp_connect((B4, 5000))


@pytest.mark.parametrize(("server_ip", "client_ip"), [(B4, A4), (B6, A6)], ids=["ipv4", "ipv6"])
async def test_udp_echo(server_ip: str, client_ip: str) -> None:
    async with stack_pair() as (a, b):
        server = await b.udp_socket(5353)
        client = await a.udp_socket()
        for i in range(20):
            await client.send_to(b"ping %d" % i, (server_ip, 5353))
            data, sender = await server.recv_from()
            assert data == b"ping %d" % i
            assert sender == (client_ip, client.port)
            await server.send_to(data.upper(), sender)
            assert await client.recv_from() == (b"PING %d" % i, (server_ip, 5353))
        await client.aclose()
        with pytest.raises(anyio.ClosedResourceError):
            await client.send_to(b"x", (server_ip, 5353))


async def test_udp_port_unreachable_and_too_large() -> None:
    async with stack_pair() as (a, _b):
        client = await a.udp_socket()
        await client.send_to(b"anyone?", (B4, 9999))
        with anyio.fail_after(5), pytest.raises(ConnectionRefused):
            await client.recv_from()
        with pytest.raises(MessageTooLarge):
            await client.send_to(b"x" * 1473, (B4, 9999))
        await client.send_to(b"x" * 1472, (B4, 9998))  # exactly fits the 1500-byte MTU


async def test_forwarder_mode_accepts_any_destination() -> None:
    async with stack_pair(b_forward_all=True) as (a, b):
        exit_listener = await b.tcp_listen_any()
        exit_udp = await b.udp_bind_any()
        client = await a.tcp_connect(("93.184.216.34", 443))
        splice = await exit_listener.accept()
        assert splice.local_address == ("93.184.216.34", 443)
        assert splice.remote_address == client.local_address
        await client.send(b"hello exit")
        assert await splice.receive() == b"hello exit"
        await splice.send(b"hello client")
        assert await client.receive() == b"hello client"

        v6 = await a.tcp_connect(("2001:db8::80", 80))
        v6_splice = await exit_listener.accept()
        assert v6_splice.local_address == ("2001:db8::80", 80)
        await v6.aclose()
        await v6_splice.aclose()

        resolver = await a.udp_socket()
        await resolver.send_to(b"query", ("9.9.9.9", 53))
        data, src, dst = await exit_udp.recv_from_any()
        assert (data, src, dst) == (b"query", (A4, resolver.port), ("9.9.9.9", 53))
        await exit_udp.send_from(b"answer", dst, src)
        assert await resolver.recv_from() == (b"answer", ("9.9.9.9", 53))


async def test_using_a_stack_outside_async_with_is_an_error() -> None:
    from smolmix_core.devices import memory_link
    from smolmix_core.netstack import Stack

    device, _ = memory_link()
    with pytest.raises(RuntimeError, match="async with"):
        await Stack(device).tcp_connect((B4, 80))


def _self_signed_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for "tunnel.test" and a client trusting it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tunnel.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("tunnel.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with tempfile.TemporaryDirectory() as directory:
        cert_path, key_path = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_path.write_bytes(cert_pem)
        key_path.write_bytes(key_pem)
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return server, client


async def test_tls_runs_over_tcp_streams_and_forwards_is_readable() -> None:
    server_context, client_context = _self_signed_contexts()
    async with stack_pair() as (a, b), anyio.create_task_group() as tg:
        listener = await b.tcp_listen(("0.0.0.0", 443))

        async def tls_echo() -> None:
            raw = await listener.accept()
            stream = await TLSStream.wrap(
                raw, server_side=True, ssl_context=server_context, standard_compatible=False
            )
            async with stream:
                request = await stream.receive()
                await stream.send(request.upper())

        tg.start_soon(tls_echo)
        raw_client = await a.tcp_connect((B4, 443))
        client = await TLSStream.wrap(
            raw_client, hostname="tunnel.test", ssl_context=client_context, standard_compatible=False
        )
        assert client.extra(TLSAttribute.tls_version).startswith("TLS")
        await client.send(b"hello through tls")
        assert await client.receive() == b"HELLO THROUGH TLS"
        await eventually(client.extra(TcpStreamAttribute.is_readable))  # forwarded through TLS
        with pytest.raises(anyio.EndOfStream):
            await client.receive()
        await client.aclose()
