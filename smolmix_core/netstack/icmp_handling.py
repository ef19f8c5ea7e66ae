"""What an ICMP error means to the stack: which error it reports, or which path MTU."""

from __future__ import annotations

from typing import NamedTuple

from smolmix_core.errors import ConnectionRefused, HostUnreachable, NetstackError
from smolmix_core.wire import (
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV4_PORT_UNREACHABLE,
    ICMPV4_PROTOCOL_UNREACHABLE,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PORT_UNREACHABLE,
)


class IcmpVerdict(NamedTuple):
    """``error`` for unreachables; ``mtu`` (> 0) for fragmentation-needed / packet-too-big."""

    error: NetstackError | None
    mtu: int
    port_unreachable: bool


def classify_icmp_error(version: int, kind: int, code: int, mtu: int) -> IcmpVerdict | None:
    """The meaning of an ICMP error for our flows; None for types we do not act on."""
    if version == 4:
        if kind != ICMPV4_DEST_UNREACHABLE:
            return None
        if code == ICMPV4_FRAGMENTATION_NEEDED:
            return IcmpVerdict(None, mtu or 576, False)
        if code in (ICMPV4_PORT_UNREACHABLE, ICMPV4_PROTOCOL_UNREACHABLE):
            return IcmpVerdict(ConnectionRefused("ICMP port unreachable"), 0, code == ICMPV4_PORT_UNREACHABLE)
        return IcmpVerdict(HostUnreachable(f"ICMP destination unreachable (code {code})"), 0, False)
    if kind == ICMPV6_PACKET_TOO_BIG:
        return IcmpVerdict(None, min(mtu, 0xFFFF) or 1280, False)
    if kind != ICMPV6_DEST_UNREACHABLE:
        return None
    if code == ICMPV6_PORT_UNREACHABLE:
        return IcmpVerdict(ConnectionRefused("ICMPv6 port unreachable"), 0, True)
    return IcmpVerdict(HostUnreachable(f"ICMPv6 destination unreachable (code {code})"), 0, False)
