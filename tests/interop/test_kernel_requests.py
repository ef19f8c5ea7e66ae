"""Deferred accept with the Linux kernel as the client: our stack plays the exit.

The kernel's namespace routes 10.66.0.0/24 and fd66::/64 out of the TUN, so a kernel
``connect`` to any address there reaches our forwarder as a connection request. Each answer
must reach the kernel's ``connect`` as the matching errno at once (no SYN timeout): accept
(data flows), refuse (ECONNREFUSED), reject as host unreachable (EHOSTUNREACH) or as
administratively prohibited (EHOSTUNREACH for IPv4, EACCES for IPv6).
"""

from __future__ import annotations

import dataclasses
import errno
import random
import socket
import time
from collections.abc import Iterator

import anyio
import pytest
from anyio.abc import SocketStream
from kernel_peer import KernelPeer, exchange, kernel_peer, sha

from smolmix_core.netstack import Stack, Unreachable

pytestmark = [pytest.mark.anyio, pytest.mark.interop, pytest.mark.root]

DST4, DST6 = "10.66.0.5", "fd66::5"


@pytest.fixture
def peer() -> Iterator[KernelPeer]:
    with kernel_peer() as kernel:
        kernel.route_to_stack("10.66.0.0/24")
        kernel.route_to_stack("fd66::/64")
        kernel.stack_config = dataclasses.replace(kernel.stack_config, forward_all=True)
        yield kernel


def _connect_errno(peer: KernelPeer, dst: str, port: int) -> tuple[int, float]:
    """The errno of a kernel connect to ``dst``:``port`` (0 on success) and how long it took."""

    def attempt() -> tuple[int, float]:
        sock = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(10)
        started = time.monotonic()
        try:
            return sock.connect_ex((dst, port)), time.monotonic() - started
        finally:
            sock.close()

    return peer.call(attempt)


@pytest.mark.parametrize("dst", [DST4, DST6])
async def test_kernel_client_waits_for_our_decision_then_moves_data(peer: KernelPeer, dst: str) -> None:
    """The exit takes 1.5 s to decide: the kernel retransmits its SYN once, we make one
    request, and after accept the connection carries data both ways."""
    up, down = random.Random(31).randbytes(300_000), random.Random(32).randbytes(300_000)
    async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
        requests = await stack.tcp_listen_requests()
        results: dict[str, str] = {}

        async def exit_side() -> None:
            request = await requests.next_request()
            assert request.dst == (dst, 443)
            await anyio.sleep(1.5)
            results["stack"] = await exchange(await request.accept(), down)

        tg.start_soon(exit_side)
        with anyio.fail_after(30):
            family = socket.AF_INET6 if ":" in dst else socket.AF_INET
            sock = await peer.run(lambda: socket.create_connection((dst, 443), timeout=10))
            assert sock.family == family
            sock.settimeout(None)
            results["kernel"] = await exchange(await SocketStream.from_socket(sock), up)
        await requests.aclose()
        stats = stack.stats()
    assert results == {"stack": sha(up), "kernel": sha(down)}
    assert stats["tcp_requests"] == 1
    assert stats["tcp_request_syn_retransmits"] >= 1


@pytest.mark.parametrize(
    ("dst", "answer", "expected"),
    [
        (DST4, "refuse", errno.ECONNREFUSED),
        (DST6, "refuse", errno.ECONNREFUSED),
        (DST4, Unreachable.HOST, errno.EHOSTUNREACH),
        (DST6, Unreachable.HOST, errno.EHOSTUNREACH),
        (DST4, Unreachable.PROHIBITED, errno.EHOSTUNREACH),
        (DST6, Unreachable.PROHIBITED, errno.EACCES),
        (DST4, Unreachable.NETWORK, errno.ENETUNREACH),
        (DST6, Unreachable.NETWORK, errno.ENETUNREACH),
    ],
)
async def test_kernel_client_connect_fails_at_once_with_the_matching_errno(
    peer: KernelPeer, dst: str, answer: object, expected: int
) -> None:
    async with Stack(peer.tun, peer.stack_config) as stack, anyio.create_task_group() as tg:
        requests = await stack.tcp_listen_requests()

        async def exit_side() -> None:
            request = await requests.next_request()
            if answer == "refuse":
                request.refuse()
            else:
                assert isinstance(answer, Unreachable)
                request.reject_unreachable(answer)

        tg.start_soon(exit_side)
        with anyio.fail_after(15):
            code, seconds = await anyio.to_thread.run_sync(_connect_errno, peer, dst, 80)
    assert code == expected, errno.errorcode.get(code, code)
    assert seconds < 0.9  # before the kernel's first SYN retransmission
