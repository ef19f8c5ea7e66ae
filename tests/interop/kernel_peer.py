"""The Linux kernel as a TCP/UDP peer: a TUN interface moved into a network namespace.

Our stack holds the TUN file descriptor (in the test's own namespace); the interface itself
lives in a fresh namespace where the kernel has 10.77.0.1/24 and fd77::1/64 on it, so every
packet our stack writes is received by the kernel's TCP/IP and every packet the kernel routes
to 10.77.0.2 / fd77::2 comes back to our stack. Kernel-side sockets are created by a thread
that enters the namespace for the call and leaves it again.

``routed_peer`` puts a kernel *router* between us and the peer: the TUN's namespace forwards
to a second namespace over a veth pair with a small MTU, so the kernel router sends us real
ICMP fragmentation-needed / packet-too-big errors, and unreachables for unrouted addresses.
Every namespace and interface gets a random name (prefix ``smx``) and is removed on exit, also
when the test fails.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import pytest
from anyio.abc import ByteStream, SocketListener, SocketStream

from smolmix_core.devices import Device, TunDevice
from smolmix_core.netstack import StackConfig
from smolmix_core.wire import PROTO_TCP, parse_ip, parse_tcp

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000

KERNEL_IPV4, STACK_IPV4 = "10.77.0.1", "10.77.0.2"
KERNEL_IPV6, STACK_IPV6 = "fd77::1", "fd77::2"
SERVER_IPV4, SERVER_IPV6 = "10.78.0.2", "fd78::2"  # behind the router of ``routed_peer``
UNROUTED_IPV4, UNROUTED_IPV6 = "10.99.0.1", "fd99::1"  # the router has no route there


def skip_reason() -> str | None:
    """Why these tests cannot run here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "needs root and /dev/net/tun: Linux only"
    if os.geteuid() != 0:
        return "needs root and /dev/net/tun: not running as root"
    if not os.path.exists("/dev/net/tun"):
        return "needs root and /dev/net/tun: /dev/net/tun is missing"
    if shutil.which("ip") is None:
        return "needs root and /dev/net/tun: the `ip` command (iproute2) is missing"
    return None


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _call_in(netns: str, function: Callable[[], T]) -> T:
    """Run ``function`` in the calling thread with the thread switched into ``netns``."""
    with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{netns}", "rb") as there:
        _setns(there.fileno())
        try:
            return function()
        finally:
            _setns(home.fileno())


def _sysctl(netns: str, name: str, value: str) -> None:
    _ip("netns", "exec", netns, "sysctl", "-qw", f"{name}={value}")


@dataclass
class KernelPeer:
    """A namespace whose kernel sits on the other end of ``tun`` (``netns`` holds the sockets)."""

    netns: str
    tun: TunDevice
    mtu: int
    router: str | None = None  # the namespace that forwards, for ``routed_peer``
    stack_config: StackConfig = field(init=False)

    def __post_init__(self) -> None:
        self.stack_config = StackConfig(ipv4=STACK_IPV4, ipv6=STACK_IPV6, mtu=self.mtu)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` in the calling thread with the thread switched into the namespace."""
        return _call_in(self.netns, function)

    async def run(self, function: Callable[[], T]) -> T:
        """``call`` in a worker thread, so blocking calls (connect) don't stall the event loop."""
        return await anyio.to_thread.run_sync(self.call, function)

    def sysctl(self, name: str, value: str) -> None:
        _sysctl(self.netns, name, value)

    def route_to_stack(self, prefix: str) -> None:
        """Route ``prefix`` (say ``10.66.0.0/24``) out of the TUN: to our stack, as to an exit."""
        family = "-6" if ":" in prefix else "-4"
        _ip("-n", self.netns, family, "route", "add", prefix, "dev", self.tun.name)


def _new_namespace(exits: ExitStack) -> str:
    netns = f"smx-{secrets.token_hex(4)}"
    _ip("netns", "add", netns)
    exits.callback(subprocess.run, ["ip", "netns", "del", netns], capture_output=True, timeout=30)
    _ip("-n", netns, "link", "set", "lo", "up")
    for scope in ("all", "default"):  # no 1 s duplicate-address detection on new interfaces
        _sysctl(netns, f"net.ipv6.conf.{scope}.accept_dad", "0")
    return netns


def _attach_tun(exits: ExitStack, netns: str, mtu: int) -> TunDevice:
    """A TUN interface in ``netns`` with the kernel's addresses; we keep its file descriptor."""
    name = f"smx{secrets.token_hex(4)}"
    tun = TunDevice(name, mtu=mtu)
    exits.callback(tun.close)
    _ip("link", "set", name, "netns", netns)
    _ip("-n", netns, "addr", "add", f"{KERNEL_IPV4}/24", "dev", name)
    if mtu >= 1280:  # below IPv6's minimum link MTU the kernel runs no IPv6 on the interface
        _ip("-n", netns, "-6", "addr", "add", f"{KERNEL_IPV6}/64", "dev", name, "nodad")
    _ip("-n", netns, "link", "set", name, "up")
    return tun


@contextmanager
def kernel_peer(mtu: int = 1500, sysctls: dict[str, str] | None = None) -> Iterator[KernelPeer]:
    """The kernel directly on the other end of the TUN, with ``sysctls`` set in its namespace."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with ExitStack() as exits:
        netns = _new_namespace(exits)
        for name, value in (sysctls or {}).items():
            _sysctl(netns, name, value)
        tun = _attach_tun(exits, netns, mtu)
        yield KernelPeer(netns, tun, mtu)


@contextmanager
def routed_peer(bottleneck_mtu: int, mtu: int = 1500) -> Iterator[KernelPeer]:
    """Our stack → TUN → router namespace (forwards) → veth of ``bottleneck_mtu`` → server namespace.

    The server's routes advertise an MSS for a 1500-byte path (``advmss``), as a server whose
    own link is wide but whose path to us crosses a narrow one: only the router's ICMP can tell
    our stack to send smaller segments. The router has no route to ``UNROUTED_*``.
    """
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with ExitStack() as exits:
        router = _new_namespace(exits)
        server = _new_namespace(exits)
        _sysctl(router, "net.ipv4.conf.all.forwarding", "1")
        _sysctl(router, "net.ipv6.conf.all.forwarding", "1")
        tun = _attach_tun(exits, router, mtu)
        token = secrets.token_hex(4)
        near, far = f"smxr{token}", f"smxs{token}"
        narrow = str(bottleneck_mtu)
        _ip("-n", router, "link", "add", near, "mtu", narrow, "type", "veth", "peer", "name", far)
        _ip("-n", router, "link", "set", far, "netns", server)
        _ip("-n", server, "link", "set", far, "mtu", narrow)
        _ip("-n", router, "addr", "add", "10.78.0.1/24", "dev", near)
        _ip("-n", server, "addr", "add", f"{SERVER_IPV4}/24", "dev", far)
        if bottleneck_mtu >= 1280:
            _ip("-n", router, "-6", "addr", "add", "fd78::1/64", "dev", near, "nodad")
            _ip("-n", server, "-6", "addr", "add", f"{SERVER_IPV6}/64", "dev", far, "nodad")
        _ip("-n", router, "link", "set", near, "up")
        _ip("-n", server, "link", "set", far, "up")
        _ip("-n", server, "route", "add", "default", "via", "10.78.0.1", "advmss", str(mtu - 40))
        if bottleneck_mtu >= 1280:
            _ip("-n", server, "-6", "route", "add", "default", "via", "fd78::1", "advmss", str(mtu - 60))
        yield KernelPeer(server, tun, mtu, router=router)


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def kernel_listener(peer: KernelPeer, address: str) -> SocketListener:
    """A listening kernel socket on ``address`` (ephemeral port) in the peer's namespace."""

    def make() -> socket.socket:
        sock = socket.socket(family_of(address), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, 0))
        sock.listen(128)
        return sock

    return await SocketListener.from_socket(await peer.run(make))


async def kernel_connect(peer: KernelPeer, address: str, port: int) -> SocketStream:
    """A kernel client connected to our stack at ``address``:``port``."""
    sock = await peer.run(lambda: socket.create_connection((address, port), timeout=10))
    sock.settimeout(None)
    return await SocketStream.from_socket(sock)


async def exchange(stream: ByteStream, outgoing: bytes) -> str:
    """Send ``outgoing`` and FIN while hashing everything received until the peer's FIN."""
    digest = hashlib.sha256()
    async with anyio.create_task_group() as tg:

        async def write() -> None:
            for offset in range(0, len(outgoing), 256 * 1024):
                await stream.send(outgoing[offset : offset + 256 * 1024])
            await stream.send_eof()

        tg.start_soon(write)
        while True:
            try:
                digest.update(await stream.receive())
            except anyio.EndOfStream:
                break
    await stream.aclose()
    return digest.hexdigest()


async def read_to_eof(stream: ByteStream) -> bytes:
    chunks = []
    while True:
        try:
            chunks.append(await stream.receive())
        except anyio.EndOfStream:
            return b"".join(chunks)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SizeTap(Device):
    """Pass-through that records the size of every packet our stack sends, and can drop SYNs."""

    def __init__(self, device: Device, drop_syns: int = 0) -> None:
        self.device = device
        self.mtu = device.mtu
        self.sent_sizes: list[int] = []
        self._drop_syns = drop_syns

    def _dropped(self, packet: bytes) -> bool:
        if self._drop_syns and is_syn(packet):
            self._drop_syns -= 1
            return True
        self.sent_sizes.append(len(packet))
        return False

    def send_nowait(self, item: bytes) -> None:
        if not self._dropped(item):
            self.device.send_nowait(item)

    async def send(self, item: bytes) -> None:
        if not self._dropped(item):
            await self.device.send(item)

    def receive_nowait(self) -> bytes:
        return self.device.receive_nowait()

    async def receive(self) -> bytes:
        return await self.device.receive()

    async def aclose(self) -> None:
        await self.device.aclose()

    def stats(self) -> dict[str, int]:
        return self.device.stats()


def is_syn(packet: bytes) -> bool:
    ip = parse_ip(packet)
    if ip.protocol != PROTO_TCP:
        return False
    header, _ = parse_tcp(ip.payload, ip.src, ip.dst)
    return header.flags & 0x12 == 0x02
