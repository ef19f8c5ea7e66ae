"""DNS for the tunnel: the message codec (the resolver and responder build on it)."""

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

__all__ = [
    "DEFAULT_EDNS_PAYLOAD",
    "Edns",
    "Flag",
    "Header",
    "Message",
    "Opcode",
    "Question",
    "Rcode",
    "Record",
    "RecordClass",
    "RecordType",
    "Soa",
    "build_query",
    "build_response",
    "canonical_name",
    "decode_header",
    "decode_message",
    "encode_name",
    "name_key",
]
