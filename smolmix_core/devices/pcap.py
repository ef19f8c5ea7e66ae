"""Classic pcap capture of IP packets, readable by tcpdump and Wireshark.

The file uses LINKTYPE_RAW (101): each record is a bare IPv4 or IPv6 packet, told apart by its
version nibble, so one file holds both families. ``PcapWriter`` can be fed directly, or wrap a
device with ``PcapWriter.tap(device)`` to record everything the device sends and receives.

Policy: write-through. Each record (header and packet) goes to the operating system in one
``write`` as it is captured, without a user-space buffer, so the file is always whole up to
the last packet: a process killed by SIGTERM or SIGKILL, which runs no cleanup, leaves a
readable capture. The price is one system call per packet, made from the event loop; this
is a debugging aid, not a path for gigabytes.
"""

from __future__ import annotations

import os
import struct
import time
from types import TracebackType
from typing import BinaryIO

from smolmix_core.clock import Clock
from smolmix_core.devices.base import Device

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_RAW = 101
_GLOBAL_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """Writes packets to a pcap file (a path, which it owns, or an open binary file, which it doesn't).

    Timestamps are wall-clock time by default. With ``clock`` they are ``epoch + clock.now()``, so a
    virtual-time simulation gives a reproducible capture with real-looking gaps.
    """

    def __init__(
        self,
        file: str | os.PathLike[str] | BinaryIO,
        *,
        snaplen: int = 65535,
        clock: Clock | None = None,
        epoch: float = 0.0,
    ) -> None:
        if isinstance(file, (str, os.PathLike)):
            self._file: BinaryIO = open(file, "wb", buffering=0)  # noqa: SIM115 - closed by close()
            self._owns_file = True
        else:
            self._file = file
            self._owns_file = False
        self.snaplen = snaplen
        self._clock = clock
        self._epoch = epoch
        self.packets = 0
        self._closed = False
        self._write(_GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_RAW))

    def write(self, packet: bytes, timestamp: float | None = None) -> None:
        """Append one IP packet (cut to ``snaplen``) stamped ``timestamp`` (seconds since the epoch)."""
        if self._closed:
            raise ValueError("the pcap writer is closed")
        if timestamp is None:
            timestamp = self._epoch + self._clock.now() if self._clock is not None else time.time()
        micros = round(timestamp * 1_000_000)
        seconds, micros = divmod(micros, 1_000_000)
        captured = packet[: self.snaplen]
        self._write(_RECORD_HEADER.pack(seconds, micros, len(captured), len(packet)) + captured)
        self.packets += 1

    def _write(self, record: bytes) -> None:
        """One whole record to the OS (a caller's buffered file is flushed after it)."""
        file = self._file
        written = file.write(record)
        while written is not None and 0 < written < len(record):  # a raw file may take part of it
            more = file.write(memoryview(record)[written:])
            if not more:
                break
            written += more
        if not self._owns_file:
            file.flush()

    def tap(self, device: Device) -> PcapTap:
        """A device that behaves like ``device`` and records every packet through it here."""
        return PcapTap(device, self)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_file:
            self._file.close()
        else:
            self._file.flush()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.close()


class PcapTap(Device):
    """A pass-through device that records sent and received packets to a ``PcapWriter``."""

    def __init__(self, device: Device, writer: PcapWriter) -> None:
        self.device = device
        self.writer = writer
        self.mtu = device.mtu

    def send_nowait(self, item: bytes) -> None:
        self.device.send_nowait(item)
        self.writer.write(item)

    def receive_nowait(self) -> bytes:
        packet = self.device.receive_nowait()
        self.writer.write(packet)
        return packet

    async def send(self, item: bytes) -> None:
        await self.device.send(item)
        self.writer.write(item)

    async def receive(self) -> bytes:
        packet = await self.device.receive()
        self.writer.write(packet)
        return packet

    async def aclose(self) -> None:
        self.writer.flush()
        await self.device.aclose()

    def stats(self) -> dict[str, int]:
        return {**self.device.stats(), "captured": self.writer.packets}
