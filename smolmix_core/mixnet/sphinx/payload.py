"""Sphinx payloads (spec mixnet.md §4.2): ``0^16 ‖ message ‖ 01 ‖ 00…`` under one Lioness layer per hop."""

from __future__ import annotations

from collections.abc import Sequence

from smolmix_core.errors import SphinxError
from smolmix_core.mixnet.sphinx.constants import MIN_PAYLOAD_SIZE, PAYLOAD_OVERHEAD, SECURITY_PARAMETER
from smolmix_core.mixnet.sphinx.lioness import lioness_encrypt

_LEADING_ZEROS = bytes(SECURITY_PARAMETER)


def max_message_size(payload_size: int) -> int:
    """The longest message a payload of ``payload_size`` bytes carries."""
    return payload_size - PAYLOAD_OVERHEAD


def check_fits(message_size: int, payload_size: int) -> None:
    """``SphinxError`` unless a ``message_size``-byte message fits a ``payload_size``-byte payload."""
    if payload_size < MIN_PAYLOAD_SIZE:
        raise SphinxError(f"a Sphinx payload has at least {MIN_PAYLOAD_SIZE} bytes, not {payload_size}")
    if message_size > max_message_size(payload_size):
        raise SphinxError(
            f"message of {message_size} bytes does not fit a {payload_size}-byte payload "
            f"(at most {max_message_size(payload_size)})"
        )


def pad_message(message: bytes, payload_size: int) -> bytes:
    """The plaintext payload; ``SphinxError`` if the size is too small or the message too long."""
    check_fits(len(message), payload_size)
    return b"".join((_LEADING_ZEROS, message, b"\x01", bytes(payload_size - PAYLOAD_OVERHEAD - len(message))))


def encrypt_payload(message: bytes, payload_keys: Sequence[bytes], payload_size: int) -> bytes:
    """Pad and add the hops' layers, last hop's first, so each hop can peel its own in turn."""
    payload = pad_message(message, payload_size)
    for key in reversed(payload_keys):
        payload = lioness_encrypt(key, payload)
    return payload


def recover_message(plaintext: bytes) -> bytes:
    """Undo ``pad_message``: check the 16 zero bytes, cut at the last ``01``."""
    if len(plaintext) < PAYLOAD_OVERHEAD or plaintext[:SECURITY_PARAMETER] != _LEADING_ZEROS:
        raise SphinxError("malformed payload: the leading zero bytes are missing")
    end = plaintext.rfind(b"\x01", SECURITY_PARAMETER)
    if end < 0:
        raise SphinxError("malformed payload: no 01 marks the end of the message")
    return plaintext[SECURITY_PARAMETER:end]
