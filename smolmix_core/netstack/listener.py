"""Listening TCP sockets: a bounded set of half-open connections and a bounded accept queue.

A deferred forwarder listener (``NetCore.tcp_listen_any(deferred=True)``) queues connection
requests instead (``tcp_request``); its ``syn_backlog`` bounds requests and half-open
connections together.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Protocol

from smolmix_core.errors import NetstackError

if TYPE_CHECKING:
    from smolmix_core.netstack.tcp import Address, TcpSocket
    from smolmix_core.netstack.tcp_request import TcpRequest


class ListenerHost(Protocol):
    def close_listener(self, listener: TcpListener, now: float) -> None: ...


class TcpListener:
    """Connections reach ``accept()`` only once their handshake completed.

    SYNs beyond ``syn_backlog`` half-open connections, or arriving while ``accept_backlog``
    established ones wait, are dropped and counted by the stack (the peer retransmits its SYN).
    """

    __slots__ = (
        "_host",
        "_wake_queued",
        "accept_backlog",
        "closed",
        "deferred",
        "embryonic",
        "error",
        "family",
        "forward_all",
        "local",
        "pending",
        "queue",
        "request_timeout",
        "requests",
        "syn_backlog",
        "user_data",
    )

    def __init__(
        self,
        host: ListenerHost,
        local: Address,
        *,
        family: int,
        syn_backlog: int,
        accept_backlog: int,
        forward_all: bool = False,
        deferred: bool = False,
        request_timeout: float = 0.0,
    ) -> None:
        self._host = host
        self.user_data: object = None
        self.local = local
        self.family = family  # 4 or 6; 0 for a forwarder listener (any address)
        self.forward_all = forward_all
        self.syn_backlog = syn_backlog
        self.accept_backlog = accept_backlog
        self.embryonic: set[TcpSocket] = set()
        self.queue: deque[TcpSocket] = deque()
        self.deferred = deferred
        self.request_timeout = request_timeout
        self.requests: deque[TcpRequest] = deque()  # not yet taken by the application
        self.pending = 0  # requests not yet answered, taken or not
        self.error: NetstackError | None = None
        self.closed = False
        self._wake_queued = False

    def __repr__(self) -> str:
        return f"<TcpListener {self.local} queued={len(self.queue)} half-open={len(self.embryonic)}>"

    @property
    def readable(self) -> bool:
        return bool(self.queue) or bool(self.requests) or self.closed or self.error is not None

    def accept(self) -> TcpSocket | None:
        if self.error is not None and not self.queue:
            raise self.error
        return self.queue.popleft() if self.queue else None

    def next_request(self) -> TcpRequest | None:
        """The oldest request still waiting for an answer (deferred listeners)."""
        requests = self.requests
        while requests:
            request = requests.popleft()
            if request.pending:
                return request
        if self.error is not None:
            raise self.error
        return None

    def close(self, now: float) -> None:
        self._host.close_listener(self, now)
