"""DNS for the tunnel: the message codec, reading answers and the TTL cache (sans-I/O)."""

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

__all__ = [
    "DEFAULT_EDNS_PAYLOAD",
    "Answer",
    "DnsCache",
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
    "is_reply_to",
    "name_key",
    "read_answer",
]
