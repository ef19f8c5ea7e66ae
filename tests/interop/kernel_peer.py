"""The Linux kernel as a TCP/UDP peer: a TUN interface moved into a network namespace.

Our stack holds the TUN file descriptor (in the test's own namespace); the interface itself
lives in a fresh namespace where the kernel has 10.77.0.1/24 and fd77::1/64 on it, so every
packet our stack writes is received by the kernel's TCP/IP and every packet the kernel routes
to 10.77.0.2 / fd77::2 comes back to our stack. Kernel-side sockets are created by a thread
that enters the namespace for the call and leaves it again.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import pytest

from smolmix_core.devices import TunDevice
from smolmix_core.netstack import StackConfig

T = TypeVar("T")
_CLONE_NEWNET = 0x40000000

KERNEL_IPV4, STACK_IPV4 = "10.77.0.1", "10.77.0.2"
KERNEL_IPV6, STACK_IPV6 = "fd77::1", "fd77::2"


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


@dataclass
class KernelPeer:
    """A namespace whose kernel sits on the other end of ``tun``."""

    netns: str
    tun: TunDevice
    mtu: int
    stack_config: StackConfig = field(init=False)

    def __post_init__(self) -> None:
        self.stack_config = StackConfig(ipv4=STACK_IPV4, ipv6=STACK_IPV6, mtu=self.mtu)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` in the calling thread with the thread switched into the namespace."""
        with open("/proc/thread-self/ns/net", "rb") as home, open(f"/run/netns/{self.netns}", "rb") as there:
            _setns(there.fileno())
            try:
                return function()
            finally:
                _setns(home.fileno())

    async def run(self, function: Callable[[], T]) -> T:
        """``call`` in a worker thread, so blocking calls (connect) don't stall the event loop."""
        return await anyio.to_thread.run_sync(self.call, function)

    def sysctl(self, name: str, value: str) -> None:
        _ip("netns", "exec", self.netns, "sysctl", "-qw", f"{name}={value}")


@contextmanager
def kernel_peer(mtu: int = 1500) -> Iterator[KernelPeer]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    token = secrets.token_hex(4)
    netns, name = f"smx-{token}", f"smx{token}"
    _ip("netns", "add", netns)
    tun: TunDevice | None = None
    try:
        tun = TunDevice(name, mtu=mtu)
        _ip("link", "set", name, "netns", netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        _ip("-n", netns, "addr", "add", f"{KERNEL_IPV4}/24", "dev", name)
        _ip("-n", netns, "-6", "addr", "add", f"{KERNEL_IPV6}/64", "dev", name, "nodad")
        _ip("-n", netns, "link", "set", name, "up")
        yield KernelPeer(netns, tun, mtu)
    finally:
        if tun is not None:
            tun.close()
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
