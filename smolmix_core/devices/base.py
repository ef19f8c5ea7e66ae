"""The device abstraction: a channel of whole IP packets with an MTU.

A device is what a ``Stack`` reads packets from and writes packets to: an in-memory link, a
fault injector or pcap tap wrapped around another device, a Linux TUN interface, or the mixnet
bridge. It is an anyio ``ObjectStream[bytes]`` whose items are complete IP packets, plus
``mtu`` and ``stats()``; implementing ``send``, ``receive`` and ``aclose`` is enough.

A device may also offer ``send_nowait``/``receive_nowait`` (raising ``anyio.WouldBlock`` when
it cannot act at once). The driver tries them first, so a burst of packets moves without an
event-loop round trip per packet; the awaiting ``send``/``receive`` remain the backpressure
points. ``PollingDevice`` builds everything from the non-blocking forms and two readiness waits.
"""

from __future__ import annotations

from abc import abstractmethod

import anyio
from anyio.abc import ObjectStream


class Device(ObjectStream[bytes]):
    """A bidirectional channel of whole IP packets.

    ``receive`` raises ``anyio.EndOfStream`` once the far end has gone and
    ``anyio.ClosedResourceError`` after this side's ``aclose``; ``send`` raises
    ``anyio.BrokenResourceError`` when the far end has gone, or ``DeviceError`` for a packet the
    device refuses. Packets longer than ``mtu`` are dropped and counted, as an interface would.
    """

    mtu: int

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: packets sent and received, drops by reason, queue depth."""

    def send_nowait(self, item: bytes) -> None:
        """Optional fast path: send at once or raise ``anyio.WouldBlock`` (the default)."""
        raise anyio.WouldBlock

    def receive_nowait(self) -> bytes:
        """Optional fast path: a waiting packet, or ``anyio.WouldBlock`` (the default)."""
        raise anyio.WouldBlock

    async def send_eof(self) -> None:
        """Packets have no end-of-file of their own: closing the device is the end."""
        await self.aclose()


class PollingDevice(Device):
    """A device made of non-blocking operations and waits for readiness (memory link, TUN fd)."""

    @abstractmethod
    def send_nowait(self, item: bytes) -> None: ...

    @abstractmethod
    def receive_nowait(self) -> bytes: ...

    @abstractmethod
    async def wait_sendable(self) -> None:
        """Return once ``send_nowait`` may succeed (or raise the error that stops it)."""

    @abstractmethod
    async def wait_receivable(self) -> None:
        """Return once ``receive_nowait`` may succeed (or raise the error that stops it)."""

    async def send(self, item: bytes) -> None:
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.send_nowait(item)
            except anyio.WouldBlock:
                await self.wait_sendable()
                continue
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return

    async def receive(self) -> bytes:
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                packet = self.receive_nowait()
            except anyio.WouldBlock:
                await self.wait_receivable()
                continue
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return packet
