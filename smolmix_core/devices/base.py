"""The device abstraction: a channel of whole IP packets with an MTU.

A device is what a ``Stack`` reads packets from and writes packets to: an in-memory link, a
fault injector or pcap tap wrapped around another device, a Linux TUN interface, or the mixnet
bridge. It is an anyio ``ObjectStream[bytes]`` whose items are complete IP packets.

Besides the awaiting ``send``/``receive`` every device offers non-awaiting ``send_nowait`` and
``receive_nowait`` (raising ``anyio.WouldBlock``), so a driver can move a burst of packets
without one event-loop round trip per packet; ``wait_sendable``/``wait_receivable`` are where
it waits, and so where backpressure happens.
"""

from __future__ import annotations

from abc import abstractmethod

import anyio
from anyio.abc import ObjectStream


class Device(ObjectStream[bytes]):
    """A bidirectional channel of whole IP packets.

    ``receive`` raises ``anyio.EndOfStream`` once the far end has gone and
    ``anyio.ClosedResourceError`` after this side's ``aclose``; ``send`` raises
    ``anyio.BrokenResourceError`` when the far end has gone. Subclasses implement the
    non-awaiting forms and the two waits; ``send``/``receive`` are built from them.
    """

    mtu: int

    @abstractmethod
    def send_nowait(self, item: bytes) -> None:
        """Send a packet without waiting; raise ``anyio.WouldBlock`` when the device is full."""

    @abstractmethod
    def receive_nowait(self) -> bytes:
        """Return a waiting packet; raise ``anyio.WouldBlock`` when there is none."""

    @abstractmethod
    async def wait_sendable(self) -> None:
        """Return once ``send_nowait`` may succeed (or raise the error that stops it)."""

    @abstractmethod
    async def wait_receivable(self) -> None:
        """Return once ``receive_nowait`` may succeed (or raise the error that stops it)."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters: packets sent and received, drops by reason, queue depth."""

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

    async def send_eof(self) -> None:
        """Packets have no end-of-file of their own: closing the device is the end."""
        await self.aclose()
