"""Loop cover traffic (spec §8, §11): packets a client sends to itself to hide when it is silent.

A loop cover packet is built exactly like a real one — SURB-ACK (with the cover fragment id),
fresh ephemeral key, AES-128-CTR, a random route — and addressed to the sender itself, so no
observer, gateways included, can tell it from real traffic. Its fragment is the fixed marker
``The cake is a lie!`` padded like a message; a real fragment never starts with it (fragment
headers start with a byte >= 0x80).
"""

from __future__ import annotations

LOOP_COVER_PAYLOAD = b"The cake is a lie!"


def loop_cover_fragment(fragment_size: int) -> bytes:
    """``LOOP_COVER_PAYLOAD ‖ 01 ‖ 00…`` filling one fragment."""
    if fragment_size < len(LOOP_COVER_PAYLOAD) + 1:
        raise ValueError(f"a {fragment_size}-byte fragment cannot hold the loop cover marker")
    return (LOOP_COVER_PAYLOAD + b"\x01").ljust(fragment_size, b"\x00")


def is_loop_cover(plaintext: bytes) -> bool:
    return plaintext.startswith(LOOP_COVER_PAYLOAD)
