"""Processing a Sphinx packet at a hop (spec mixnet.md §4.3): peel one layer, forward or deliver."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from smolmix_core.errors import MacMismatch, ReplayDetected, SphinxError
from smolmix_core.mixnet.sphinx.constants import (
    FINAL_HOP_FLAG,
    FORWARD_HOP_FLAG,
    HEADER_SIZE,
    HOP_BLOCK_SIZE,
    MIN_PAYLOAD_SIZE,
    PROCESSED_VERSIONS,
    VERSION_258,
)
from smolmix_core.mixnet.sphinx.crypto import (
    derive_payload_key,
    expand_shared_secret,
    header_encrypt,
    x25519,
)
from smolmix_core.mixnet.sphinx.lioness import lioness_decrypt
from smolmix_core.mixnet.sphinx.payload import recover_message
from smolmix_core.mixnet.sphinx.replay import ReplayFilter
from smolmix_core.mixnet.x25519 import x25519_base

_MIN_PACKET_SIZE = HEADER_SIZE + MIN_PAYLOAD_SIZE
_BETA_PADDING = bytes(HOP_BLOCK_SIZE)
_VERSIONS = {b"\x00" + version.to_bytes(2, "big"): version for version in PROCESSED_VERSIONS}


@dataclass(frozen=True, slots=True)
class ForwardHop:
    """Send ``packet`` to ``next_address`` after holding it ``delay_ns`` nanoseconds."""

    next_address: bytes
    delay_ns: int
    packet: bytes
    replay_tag: bytes


@dataclass(frozen=True, slots=True)
class FinalHop:
    """The packet ends here: ``message`` is for the client ``destination``."""

    destination: bytes
    identifier: bytes
    message: bytes
    replay_tag: bytes


class SphinxProcessor:
    """One node's Sphinx key; ``process`` is pure (bytes in, result out) apart from the replay filter."""

    def __init__(self, private_key: bytes, *, replay_filter: ReplayFilter | None = None) -> None:
        if len(private_key) != 32:
            raise SphinxError(f"an X25519 private key has 32 bytes, not {len(private_key)}")
        self._private_key = bytes(private_key)
        self.public_key: bytes = x25519_base(self._private_key)
        self.replay_filter = replay_filter

    def process(self, packet: bytes) -> ForwardHop | FinalHop:
        """Peel this hop's layer.

        Raises ``SphinxError`` (too short, low-order alpha, unknown flag or version, bad final
        padding), ``MacMismatch`` (gamma does not verify: tampered, or not meant for this key) or
        ``ReplayDetected`` (the replay filter has seen this packet).
        """
        if len(packet) < _MIN_PACKET_SIZE:
            raise SphinxError(f"a Sphinx packet has at least {_MIN_PACKET_SIZE} bytes, not {len(packet)}")
        alpha = packet[:32]
        secret = expand_shared_secret(x25519(self._private_key, alpha))
        beta = packet[48:HEADER_SIZE]
        if not hmac.compare_digest(hmac.digest(secret[16:32], beta, "sha256")[:16], packet[32:48]):
            raise MacMismatch("header MAC does not verify")
        replay_tag = secret[256:288]
        if self.replay_filter is not None and not self.replay_filter.check_and_add(replay_tag):
            raise ReplayDetected("packet already processed by this hop")

        routing = header_encrypt(secret[:16], beta + _BETA_PADDING)
        version = _VERSIONS.get(routing[1:4])
        if version is None:
            raise SphinxError(f"unknown Sphinx version bytes {routing[1:4].hex()}")
        flag = routing[0]
        if flag != FORWARD_HOP_FLAG and flag != FINAL_HOP_FLAG:
            raise SphinxError(f"unknown routing flag {flag:#04x}")
        key = secret[32:224] if version == VERSION_258 else derive_payload_key(secret[32:48])
        payload = lioness_decrypt(key, packet[HEADER_SIZE:])

        if flag == FORWARD_HOP_FLAG:
            next_alpha = x25519(secret[224:256], alpha)
            return ForwardHop(
                next_address=routing[4:36],
                delay_ns=int.from_bytes(routing[36:44], "big"),
                packet=b"".join((next_alpha, routing[44:], payload)),
                replay_tag=replay_tag,
            )
        return FinalHop(
            destination=routing[4:36],
            identifier=routing[36:52],
            message=recover_message(payload),
            replay_tag=replay_tag,
        )
