"""TunDevice basics that need no namespace; traffic through the kernel is in tests/interop."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import anyio
import pytest

from smolmix_core.devices import TunDevice
from smolmix_core.errors import DeviceError

needs_tun = pytest.mark.skipif(
    not (sys.platform.startswith("linux") and os.geteuid() == 0 and os.path.exists("/dev/net/tun")),
    reason="needs root and /dev/net/tun: TUN devices are Linux-only and need CAP_NET_ADMIN",
)


def _link_mtu(name: str) -> int | None:
    result = subprocess.run(["ip", "-o", "link", "show", "dev", name], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    fields = result.stdout.split()
    return int(fields[fields.index("mtu") + 1])


@needs_tun
@pytest.mark.anyio
async def test_creates_named_interface_with_mtu_and_removes_it_on_close() -> None:
    name = "smxd" + secrets.token_hex(4)
    tun = TunDevice(name, mtu=1400)
    try:
        assert tun.name == name
        assert _link_mtu(name) == 1400
        with pytest.raises(anyio.WouldBlock):
            tun.receive_nowait()  # the interface is down: nothing to read, and no blocking
    finally:
        await tun.aclose()
    assert _link_mtu(name) is None
    with pytest.raises(anyio.ClosedResourceError):
        tun.receive_nowait()


@needs_tun
def test_kernel_picks_a_name_when_none_is_given() -> None:
    tun = TunDevice()
    try:
        assert tun.name.startswith("tun")
        assert _link_mtu(tun.name) == 1500
    finally:
        anyio.run(tun.aclose)


def test_bad_name_is_a_clear_device_error() -> None:
    with pytest.raises(DeviceError):
        TunDevice("x" * 20)
