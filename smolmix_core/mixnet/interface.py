"""The ``MixnetClient`` interface the rest of smolmix uses.

Two implementations exist or are planned: ``SphinxClient`` (pure-Python, talks to gateways
itself) and ``NymClientWS`` (a running nym-client daemon's websocket API). The IPR tunnel above
only ever sees this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from smolmix_core.mixnet.recipient import Recipient


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One reassembled message; ``sender_tag`` is set when the sender attached reply SURBs."""

    data: bytes
    sender_tag: bytes | None = None


class MixnetClient(ABC):
    """Send and receive whole messages over the mixnet."""

    @property
    @abstractmethod
    def address(self) -> Recipient:
        """This client's own Recipient (where others send to it)."""

    @abstractmethod
    async def send(
        self, recipient: Recipient, data: bytes, *, max_retransmissions: int | None = None
    ) -> None:
        """Send a Plain message: the recipient learns nothing about us and cannot reply.

        ``max_retransmissions`` caps resends of a packet whose ack does not come (0: never, for
        traffic that recovers on its own, such as TCP inside the tunnel); None: the client's default.
        """

    @abstractmethod
    async def send_anonymous(
        self,
        recipient: Recipient,
        data: bytes,
        *,
        reply_surbs: int = 10,
        max_retransmissions: int | None = None,
    ) -> None:
        """Send a Repliable message carrying ``reply_surbs`` SURBs under our per-recipient sender tag."""

    @abstractmethod
    async def reply(self, sender_tag: bytes, data: bytes, *, max_retransmissions: int | None = None) -> None:
        """Answer the holder of ``sender_tag`` through the SURBs it sent us."""

    @abstractmethod
    async def receive(self) -> ReceivedMessage:
        """The next received message; raises ``MixnetClientClosed`` once the client is closed."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop sending and receiving and release the gateway link; idempotent."""

    def __aiter__(self) -> AsyncIterator[ReceivedMessage]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReceivedMessage]:
        from smolmix_core.errors import MixnetClientClosed

        while True:
            try:
                yield await self.receive()
            except MixnetClientClosed:
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
