"""IANA protocol numbers (the IPv4 Protocol / IPv6 Next Header field) that the codecs name."""

from __future__ import annotations

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_IPV6_ROUTING = 43
PROTO_IPV6_FRAGMENT = 44
PROTO_ESP = 50
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_IPV6_NONXT = 59
PROTO_IPV6_DSTOPTS = 60
