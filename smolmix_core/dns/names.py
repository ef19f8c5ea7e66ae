"""Domain names: text ⇄ wire form (RFC 1035 3.1), IDNA for non-ASCII, case-insensitive keys.

Text form is the usual presentation form without the final dot: ``"www.example.com"``, the root
is ``"."``. A label byte that is not printable ASCII is written ``\\DDD`` (decimal), and a dot or
backslash inside a label ``\\.`` / ``\\\\``, so any name on the wire has one exact text form and
``decode`` ∘ ``encode`` is the identity on it. Text with non-ASCII characters is converted with
IDNA 2008 and UTS 46 mapping (the ``idna`` package, as httpx and anyio do), so ``"bücher.de"``
becomes ``"xn--bcher-kva.de"``. Case is kept as written; names compare by ``name_key``.
"""

from __future__ import annotations

import idna

from smolmix_core.errors import InvalidDomainName

__all__ = ["MAX_LABEL", "MAX_NAME", "canonical_name", "encode_name", "label_text", "name_key"]

MAX_LABEL = 63
MAX_NAME = 255  # wire bytes, length octets and the root's zero included (RFC 1035 2.3.4)

_PLAIN = frozenset(range(0x21, 0x7F)) - {ord("."), ord("\\")}
_ESCAPES = {byte: chr(byte) if byte in _PLAIN else f"\\{byte:03d}" for byte in range(256)}
_ESCAPES[ord(".")] = "\\."
_ESCAPES[ord("\\")] = "\\\\"


_PLAIN_BYTES = bytes(sorted(_PLAIN))


def label_text(label: bytes) -> str:
    """One wire label in text form (escaped where needed)."""
    if not label.translate(None, _PLAIN_BYTES):
        return label.decode("ascii")
    return "".join(_ESCAPES[byte] for byte in label)


def encode_name(name: str) -> bytes:
    """The uncompressed wire form of ``name``; a final dot is optional, ``"."`` is the root.

    Raises ``InvalidDomainName`` for an empty name, an empty or over-long label, a name over
    255 bytes, a bad escape, or non-ASCII text that IDNA rejects.
    """
    if name in (".", ""):
        if name == "":
            raise InvalidDomainName("an empty string is not a domain name")
        return b"\x00"
    if not name.isascii():
        name = _idna(name)
    labels = _split(name) if "\\" in name else _split_plain(name)
    wire = bytearray()
    for label in labels:
        if not label:
            raise InvalidDomainName(f"{name!r} has an empty label")
        if len(label) > MAX_LABEL:
            raise InvalidDomainName(f"{name!r} has a label of {len(label)} bytes; at most 63 are allowed")
        wire.append(len(label))
        wire += label
    wire.append(0)
    if len(wire) > MAX_NAME:
        raise InvalidDomainName(f"{name[:40]!r}… is {len(wire)} bytes on the wire; at most 255 are allowed")
    return bytes(wire)


def canonical_name(name: str) -> str:
    """``name`` as the decoder would print it: A-labels, canonical escapes, no final dot."""
    wire = encode_name(name)
    labels = []
    offset = 0
    while wire[offset]:
        length = wire[offset]
        labels.append(label_text(wire[offset + 1 : offset + 1 + length]))
        offset += 1 + length
    return ".".join(labels) if labels else "."


def name_key(name: str) -> str:
    """A key under which names equal in DNS (ASCII case-insensitively, RFC 4343) are equal."""
    return canonical_name(name).lower()


def _idna(name: str) -> str:
    trailing_dot = name.endswith(".")
    try:
        encoded = idna.encode(name.rstrip("."), uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidDomainName(f"{name!r} is not a valid internationalised domain name: {exc}") from None
    return encoded + "." if trailing_dot else encoded


def _split_plain(name: str) -> list[bytes]:
    if name.endswith("."):
        name = name[:-1]
    return [label.encode("ascii") for label in name.split(".")]


def _split(name: str) -> list[bytes]:
    """Split text with escapes into labels; an unescaped final dot ends the name."""
    labels: list[bytes] = []
    label = bytearray()
    index = 0
    end = len(name)
    while index < end:
        char = name[index]
        if char == ".":
            labels.append(bytes(label))
            label = bytearray()
            index += 1
            if index == end:
                return labels
            continue
        if char == "\\":
            digits = name[index + 1 : index + 4]
            if len(digits) == 3 and digits.isdigit() and digits.isascii():
                value = int(digits)
                if value > 255:
                    raise InvalidDomainName(f"{name!r}: escape \\{digits} is not a byte")
                label.append(value)
                index += 4
                continue
            if index + 1 >= end or name[index + 1].isdigit():
                raise InvalidDomainName(f"{name!r} has a bad escape at position {index}")
            char = name[index + 1]
            index += 1
        label.append(ord(char))
        index += 1
    labels.append(bytes(label))
    return labels
