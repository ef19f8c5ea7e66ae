"""What an ICMP error means to the stack: which error it reports, or which path MTU."""

from __future__ import annotations

from typing import NamedTuple

from smolmix_core.errors import ConnectionProhibited, ConnectionRefused, HostUnreachable, NetstackError
from smolmix_core.wire import (
    ICMPV4_ADMIN_PROHIBITED,
    ICMPV4_DEST_UNREACHABLE,
    ICMPV4_FRAGMENTATION_NEEDED,
    ICMPV4_HOST_UNREACHABLE,
    ICMPV4_NET_UNREACHABLE,
    ICMPV4_PORT_UNREACHABLE,
    ICMPV4_PROTOCOL_UNREACHABLE,
    ICMPV6_ADDRESS_UNREACHABLE,
    ICMPV6_ADMIN_PROHIBITED,
    ICMPV6_DEST_UNREACHABLE,
    ICMPV6_NO_ROUTE,
    ICMPV6_PACKET_TOO_BIG,
    ICMPV6_PORT_UNREACHABLE,
)

_ICMPV4_NET_PROHIBITED = 9  # RFC 1122: communication with the network administratively prohibited
_ICMPV4_HOST_PROHIBITED = 10
_ICMPV4_PROHIBITED = frozenset({_ICMPV4_NET_PROHIBITED, _ICMPV4_HOST_PROHIBITED, ICMPV4_ADMIN_PROHIBITED})


class IcmpVerdict(NamedTuple):
    """``error`` for unreachables; ``mtu`` (> 0) for fragmentation-needed / packet-too-big."""

    error: NetstackError | None
    mtu: int
    port_unreachable: bool


def classify_icmp_error(
    version: int, kind: int, code: int, mtu: int, destination: str = "the destination"
) -> IcmpVerdict | None:
    """The meaning of an ICMP error for our flows; None for types we do not act on."""
    if version == 4:
        if kind != ICMPV4_DEST_UNREACHABLE:
            return None
        if code == ICMPV4_FRAGMENTATION_NEEDED:
            return IcmpVerdict(None, mtu or 576, False)
        if code in (ICMPV4_PORT_UNREACHABLE, ICMPV4_PROTOCOL_UNREACHABLE):
            error: NetstackError = ConnectionRefused(f"{destination} refused: ICMP port unreachable")
            return IcmpVerdict(error, 0, code == ICMPV4_PORT_UNREACHABLE)
        if code in _ICMPV4_PROHIBITED:
            error = ConnectionProhibited(f"{destination}: communication administratively prohibited (ICMP)")
        elif code == ICMPV4_NET_UNREACHABLE:
            error = HostUnreachable(f"{destination}: network unreachable (ICMP)")
        elif code == ICMPV4_HOST_UNREACHABLE:
            error = HostUnreachable(f"{destination}: host unreachable (ICMP)")
        else:
            error = HostUnreachable(f"{destination}: destination unreachable (ICMP code {code})")
        return IcmpVerdict(error, 0, False)
    if kind == ICMPV6_PACKET_TOO_BIG:
        return IcmpVerdict(None, min(mtu, 0xFFFF) or 1280, False)
    if kind != ICMPV6_DEST_UNREACHABLE:
        return None
    if code == ICMPV6_PORT_UNREACHABLE:
        return IcmpVerdict(ConnectionRefused(f"{destination} refused: ICMPv6 port unreachable"), 0, True)
    if code == ICMPV6_ADMIN_PROHIBITED:
        error = ConnectionProhibited(f"{destination}: communication administratively prohibited (ICMPv6)")
    elif code == ICMPV6_NO_ROUTE:
        error = HostUnreachable(f"{destination}: no route (ICMPv6)")
    elif code == ICMPV6_ADDRESS_UNREACHABLE:
        error = HostUnreachable(f"{destination}: address unreachable (ICMPv6)")
    else:
        error = HostUnreachable(f"{destination}: destination unreachable (ICMPv6 code {code})")
    return IcmpVerdict(error, 0, False)
