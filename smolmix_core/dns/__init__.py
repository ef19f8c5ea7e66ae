"""DNS for the tunnel: a stub resolver that asks through the tunnel, and the exit's responder.

Client side (the Tunnel) — names are resolved at the exit, never by the OS::

    resolver = DnsResolver(stack, ["10.0.0.1", "fc00::1"])   # any DnsTransport; a Stack is one
    addresses = await resolver.resolve("example.com")         # A and AAAA, IPv4 first, interleaved
    for address in addresses:                                 # try each in turn
        ...

``resolve(name, family=0)`` returns IP literals unchanged, and otherwise a non-empty list or one of
the ``ResolutionError``s (``socket.gaierror`` subclasses, so httpcore maps them as it maps the
OS's): ``NameNotFound``, ``DnsTimeout`` (also a ``TimeoutError``), ``DnsServerFailure``; a name
DNS cannot carry raises ``InvalidDomainName`` (a ``ValueError``). Answers are cached for their
TTL (negative ones too) and concurrent lookups of one name share a query; ``stats()`` counts
queries, cache hits and ignored (possibly spoofed) datagrams. See ``resolver`` for the details.

Exit side — ``DnsResponder`` answers from a static map, then the host's resolver::

    responder = DnsResponder({"far.test": "127.0.0.1"})      # use_system_resolver=True
    reply = await responder.answer(datagram)                  # bytes, or None: drop
    await responder.serve_udp(forwarder_socket)               # recv_from_any / send_from
    await responder.serve_udp_port(await stack.udp_socket(53))  # or a plain bound port
    await responder.serve_tcp(stream)                         # one TCP connection on port 53

The codec (``decode_message``, ``Message.encode``, ``build_query``, ``build_response``), the
answer reading (``read_answer``, ``is_reply_to``), the cache (``DnsCache``) and reply making
(``triage``, ``make_reply``) are sans-I/O; ``resolver`` and ``responder`` are their anyio drivers.
"""

from smolmix_core.dns.answer import Answer, is_reply_to, read_answer
from smolmix_core.dns.cache import DnsCache
from smolmix_core.dns.message import (
    DEFAULT_EDNS_PAYLOAD,
    Edns,
    Flag,
    Header,
    Message,
    Opcode,
    Question,
    Rcode,
    Record,
    RecordClass,
    RecordType,
    Soa,
    build_query,
    build_response,
    decode_header,
    decode_message,
)
from smolmix_core.dns.names import canonical_name, encode_name, name_key
from smolmix_core.dns.reply import HostAddresses, StaticHosts, make_reply, triage
from smolmix_core.dns.resolver import DnsResolver
from smolmix_core.dns.responder import DnsResponder
from smolmix_core.dns.transport import DatagramSocket, DnsTransport, ForwardedDatagramSocket

__all__ = [
    "DEFAULT_EDNS_PAYLOAD",
    "Answer",
    "DatagramSocket",
    "DnsCache",
    "DnsResolver",
    "DnsResponder",
    "DnsTransport",
    "Edns",
    "Flag",
    "ForwardedDatagramSocket",
    "Header",
    "HostAddresses",
    "Message",
    "Opcode",
    "Question",
    "Rcode",
    "Record",
    "RecordClass",
    "RecordType",
    "Soa",
    "StaticHosts",
    "build_query",
    "build_response",
    "canonical_name",
    "decode_header",
    "decode_message",
    "encode_name",
    "is_reply_to",
    "make_reply",
    "name_key",
    "read_answer",
    "triage",
]
