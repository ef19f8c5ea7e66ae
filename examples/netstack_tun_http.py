"""Serve HTTP from the userspace stack to your own machine through a Linux TUN interface.

Needs root (or CAP_NET_ADMIN). It creates ``smx0`` with 10.99.0.1/24 on the kernel's side; the
userspace stack answers at 10.99.0.2. While it runs, from another terminal:

    curl http://10.99.0.2:8080/

Every packet of that exchange is handled by smolmix's Python TCP, not the kernel's. Ctrl-C ends it
(closing the TUN device removes the interface).

    sudo python examples/netstack_tun_http.py [--pcap capture.pcap]
"""

from __future__ import annotations

import argparse
import subprocess
from contextlib import ExitStack

import anyio

from smolmix_core.devices import Device, PcapWriter, TunDevice
from smolmix_core.netstack import Stack, StackConfig, TcpStream


async def handle(stream: TcpStream) -> None:
    async with stream:
        request = b""
        while b"\r\n\r\n" not in request:
            try:
                request += await stream.receive()
            except anyio.EndOfStream:
                return
        first_line = request.split(b"\r\n", 1)[0].decode(errors="replace")
        body = f"hello from smolmix's userspace TCP; you asked {first_line!r} from {stream.remote_address}\n"
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        await stream.send((head + body).encode())
        print(f"{stream.remote_address[0]}:{stream.remote_address[1]} {first_line}")


async def serve(device: Device) -> None:
    async with Stack(device, StackConfig(ipv4="10.99.0.2", ipv6=None)) as stack:
        listener = await stack.tcp_listen(("0.0.0.0", 8080))
        print("listening on http://10.99.0.2:8080/ (Ctrl-C to stop)")
        await listener.serve(handle)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pcap", help="also capture every packet to this pcap file")
    args = parser.parse_args()
    with ExitStack() as exits:
        tun = TunDevice("smx0", mtu=1500)
        exits.callback(tun.close)
        subprocess.run(["ip", "addr", "add", "10.99.0.1/24", "dev", tun.name], check=True)
        subprocess.run(["ip", "link", "set", tun.name, "up"], check=True)
        device: Device = tun
        if args.pcap:
            device = exits.enter_context(PcapWriter(args.pcap)).tap(tun)
        try:
            anyio.run(serve, device)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
