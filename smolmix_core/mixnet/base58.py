"""Base58 with the Bitcoin alphabet: how Nym writes keys, addresses and sender tags as text."""

from __future__ import annotations

import math

from smolmix_core.errors import Base58Error

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(ALPHABET)}
_CHARS_PER_BYTE = math.log(256) / math.log(58)


def b58encode(data: bytes) -> str:
    """Encode bytes; every leading zero byte becomes a leading ``1``."""
    zeros = len(data) - len(data.lstrip(b"\x00"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        digits.append(ALPHABET[remainder])
    return "1" * zeros + "".join(reversed(digits))


def max_encoded_length(size: int) -> int:
    """The longest base58 text that encodes ``size`` bytes (leading zeros give shorter text)."""
    return math.ceil(size * _CHARS_PER_BYTE)


def b58decode(text: str, *, max_size: int | None = None) -> bytes:
    """Decode text; ``Base58Error`` (a ``ValueError``) names the first character outside the alphabet.

    Decoding is quadratic in the text length, so callers parsing untrusted text pass ``max_size``
    (the most bytes they accept): longer text is refused before any arithmetic is done.
    """
    if max_size is not None and len(text) > max_encoded_length(max_size):
        raise Base58Error(f"{len(text)} base58 characters cannot encode {max_size} bytes or fewer")
    number = 0
    for position, char in enumerate(text):
        value = _INDEX.get(char)
        if value is None:
            raise Base58Error(f"invalid base58 character {char!r} at position {position}")
        number = number * 58 + value
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\x00" * zeros + body
