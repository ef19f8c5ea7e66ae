"""Configuration of the userspace stack and its TCP."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_BUFFER = 512 * 1024


@dataclass(slots=True)
class TcpConfig:
    """TCP tunables; defaults suit a high-latency mixnet path (the receive buffer is the window)."""

    send_buffer: int = DEFAULT_BUFFER
    recv_buffer: int = DEFAULT_BUFFER
    nagle: bool = False
    delayed_ack: float = 0.04  # seconds; 0 acknowledges every segment at once
    window_scaling: bool = True
    timestamps: bool = True
    sack: bool = True
    initial_rto: float = 1.0  # RFC 6298 (2.1)
    min_rto: float = 0.2
    max_rto: float = 60.0
    syn_retries: int = 6  # SYN (and SYN-ACK) retransmissions before giving up
    max_retries: int = 15  # data retransmissions of one segment before the connection fails
    time_wait: float = 60.0  # 2 * MSL
    keepalive_idle: float | None = None  # seconds of silence before probing; None disables
    keepalive_interval: float = 75.0
    keepalive_count: int = 9
    synack_retries: int = 5  # SYN-ACK retransmissions before a half-open connection is dropped
    fin_wait2_timeout: float = 60.0  # how long a closed socket waits for the peer's FIN
    challenge_ack_limit: int = 10  # RFC 5961 challenge ACKs per second per connection
    dup_threshold: int = 3  # later segments delivered before an earlier one is deemed lost
    tail_loss_probe: bool = True  # RFC 8985 TLP (with SACK): probe a silent tail before the RTO
    initial_window: int = 10  # segments (RFC 6928), capped at 14600 bytes
    reassembly_ranges: int = 64  # out-of-order islands held per connection; beyond, dropped
    min_ipv4_mtu: int = 552  # floor for path-MTU reductions from ICMP (as Linux's min_pmtu)


@dataclass(slots=True)
class StackConfig:
    """One interface with an IPv4 and an IPv6 address; everything else is routed to the device."""

    ipv4: str | None = "10.0.0.1"
    ipv6: str | None = "fd00::1"
    mtu: int = 1500
    tcp: TcpConfig = field(default_factory=TcpConfig)
    forward_all: bool = False  # accept TCP connections and UDP flows to any address (exit NAT)
    ephemeral_ports: tuple[int, int] = (49152, 65535)
    syn_backlog: int = 128  # half-open connections per listener before SYNs are dropped and counted
    accept_backlog: int = 128  # established connections waiting for accept()
    udp_queue: int = 256  # datagrams waiting per UDP socket; when full, newest dropped and counted
    ttl: int = 64
    reply_rate_limit: float = 100.0  # RSTs and ICMP errors per second the stack sends (bursts of as many)
    seed: int | None = None  # seeds ISNs and port choice for reproducible simulations
