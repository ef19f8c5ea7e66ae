"""A Linux TUN interface as a device: IP packets to and from the kernel's own network stack.

The interface is created with ``IFF_TUN | IFF_NO_PI`` (bare IP packets, no packet-info header)
on a non-blocking file descriptor; waiting uses anyio's ``wait_readable``/``wait_writable`` on
that descriptor, so it works on asyncio and trio alike. Addresses, routes, the ``up`` state and
the network namespace are configured outside (``ip addr``, ``ip link set ... netns``); the file
descriptor keeps working when the interface moves to another namespace.

Policies: the kernel queues packets for us (``txqueuelen``, dropping when full); writes to the
kernel do not block in practice, and a write the kernel refuses raises ``DeviceError``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import sys

import anyio

from smolmix_core.devices.base import PollingDevice
from smolmix_core.errors import DeviceError

_TUNSETIFF = 0x400454CA
_SIOCSIFMTU = 0x8922
_IFF_TUN = 0x0001
_IFF_NO_PI = 0x1000
_IFNAMSIZ = 16
_READ_SIZE = 65536


class TunDevice(PollingDevice):
    """A TUN interface owned by this process; closing the device deletes the interface."""

    def __init__(self, name: str | None = None, mtu: int = 1500) -> None:
        if not sys.platform.startswith("linux"):
            raise DeviceError("TUN devices are supported on Linux only")
        if name is not None and not 0 < len(name.encode()) < _IFNAMSIZ:
            raise DeviceError(f"interface name {name!r} must be 1..{_IFNAMSIZ - 1} bytes")
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise DeviceError(
                f"cannot open /dev/net/tun ({exc.strerror}): TUN devices need root "
                "(or CAP_NET_ADMIN) and the tun kernel module"
            ) from exc
        try:
            request = struct.pack("16sH", (name or "").encode(), _IFF_TUN | _IFF_NO_PI)
            answer = fcntl.ioctl(fd, _TUNSETIFF, request)
            self.name = answer[:_IFNAMSIZ].rstrip(b"\0").decode()
            _set_mtu(self.name, mtu)
        except OSError as exc:
            os.close(fd)
            raise DeviceError(f"cannot create TUN interface {name or 'tun%d'}: {exc.strerror}") from exc
        self._fd = fd
        self.mtu = mtu
        self._closed = False
        self._sent = 0
        self._received = 0
        self._write_errors = 0

    def fileno(self) -> int:
        return self._fd

    def send_nowait(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            os.write(self._fd, item)
        except BlockingIOError:
            raise anyio.WouldBlock from None
        except OSError as exc:
            self._write_errors += 1
            if exc.errno == errno.EBADF:
                raise anyio.ClosedResourceError from exc
            raise DeviceError(f"{self.name}: the kernel refused a packet: {exc.strerror}") from exc
        self._sent += 1

    def receive_nowait(self) -> bytes:
        if self._closed:
            raise anyio.ClosedResourceError
        try:
            packet = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            raise anyio.WouldBlock from None
        except OSError as exc:
            if exc.errno == errno.EBADF:
                raise anyio.ClosedResourceError from exc
            raise DeviceError(f"{self.name}: read failed: {exc.strerror}") from exc
        self._received += 1
        return packet

    async def wait_sendable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await anyio.wait_writable(self._fd)

    async def wait_receivable(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await anyio.wait_readable(self._fd)

    async def aclose(self) -> None:
        if not self._closed:
            anyio.notify_closing(self._fd)
            self.close()
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        """Close without an event loop (e.g. in a finalizer); no task may be waiting on the device."""
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def stats(self) -> dict[str, int]:
        return {"sent": self._sent, "received": self._received, "write_errors": self._write_errors}


def _set_mtu(name: str, mtu: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock.fileno(), _SIOCSIFMTU, struct.pack("16si", name.encode(), mtu))
