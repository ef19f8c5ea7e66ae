"""Deferred accept: a client's SYN held unanswered until the application decides.

A forwarder (the exit) must not tell a client that its connection succeeded before it knows
that the real destination answers. With ``NetCore.tcp_listen_any(deferred=True)`` each new SYN
becomes a ``TcpRequest`` instead of a SYN-ACK; the application connects out and then answers:

* ``accept`` — the handshake goes on (SYN-ACK) and a ``TcpSocket`` is returned;
* ``refuse`` — a RST, so the client's connect fails with "connection refused";
* ``reject`` — an ICMP destination unreachable (``Unreachable`` names the code), so the
  client's connect fails at once with "host unreachable" or "administratively prohibited".

While a request waits, retransmissions of its SYN update it and create no second request. After
an answer the request is remembered for a while, so that a SYN retransmitted before the answer
reached the client gets the same answer again instead of a new request. A request nobody answers
within the listener's ``request_timeout`` is rejected as host unreachable, as a router does for
a destination that never answered.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

from smolmix_core.errors import RequestClosed

if TYPE_CHECKING:
    from smolmix_core.netstack.listener import TcpListener
    from smolmix_core.netstack.tcp import Address, TcpSocket
    from smolmix_core.wire import IpPacket, TcpHeader

DEFAULT_REQUEST_TIMEOUT = 60.0
ANSWER_MEMORY = 10.0  # seconds an answer is repeated to retransmitted SYNs of the same attempt


class Unreachable(enum.Enum):
    """Why a destination cannot be reached: picks the ICMP code of a rejected request."""

    NETWORK = "network"  # ICMPv4 net unreachable (0); ICMPv6 no route to destination (0)
    HOST = "host"  # ICMPv4 host unreachable (1); ICMPv6 address unreachable (3)
    PROHIBITED = "prohibited"  # ICMPv4 communication administratively prohibited (13); ICMPv6 (1)


class RequestState(enum.Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CLOSED = "closed"  # the listener or the stack closed before an answer


class RequestHost(Protocol):
    """What a request needs from the stack that holds it (the ``NetCore``)."""

    def tcp_accept_request(self, request: TcpRequest, now: float) -> TcpSocket: ...

    def tcp_refuse_request(self, request: TcpRequest, now: float) -> None: ...

    def tcp_reject_request(self, request: TcpRequest, reason: Unreachable, now: float) -> None: ...


class TcpRequest:
    """One connection attempt (a client's SYN) waiting for the application's answer."""

    __slots__ = (
        "_host",
        "deadline",
        "dst",
        "ip",
        "key",
        "listener",
        "packet",
        "reason",
        "socket",
        "src",
        "state",
        "syn",
        "user_data",
    )

    def __init__(
        self,
        host: RequestHost,
        listener: TcpListener,
        key: tuple[bytes, int, bytes, int],
        src: Address,
        dst: Address,
        ip: IpPacket,
        syn: TcpHeader,
        packet: bytes,
        deadline: float,
    ) -> None:
        self._host = host
        self.listener = listener
        self.key = key
        self.src = src  # the client
        self.dst = dst  # the destination it asked for
        self.ip = ip
        self.syn = syn
        self.packet = packet  # the latest SYN as received, quoted by an ICMP rejection
        self.deadline = deadline  # expiry while pending; end of the answer's memory after
        self.state = RequestState.PENDING
        self.reason: Unreachable | None = None
        self.socket: TcpSocket | None = None
        self.user_data: object = None

    def __repr__(self) -> str:
        return f"<TcpRequest {self.src} -> {self.dst} {self.state.value}>"

    @property
    def pending(self) -> bool:
        return self.state is RequestState.PENDING

    def accept(self, now: float) -> TcpSocket:
        """Answer with SYN-ACK; the socket's ``established`` turns True once the client ACKs."""
        return self._host.tcp_accept_request(self, now)

    def refuse(self, now: float) -> None:
        """Answer with RST: the client's connect fails as refused."""
        self._host.tcp_refuse_request(self, now)

    def reject(self, reason: Unreachable, now: float) -> None:
        """Answer with ICMP destination unreachable for ``reason``."""
        self._host.tcp_reject_request(self, reason, now)

    def check_pending(self) -> None:
        """Raise ``RequestClosed`` naming why the request can no longer be answered."""
        state = self.state
        if state is RequestState.PENDING:
            return
        if state is RequestState.EXPIRED:
            raise RequestClosed(f"the connection request from {self.src[0]}:{self.src[1]} expired unanswered")
        if state is RequestState.CLOSED:
            raise RequestClosed("the connection request's listener was closed")
        raise RequestClosed(f"the connection request was already answered ({state.value})")
