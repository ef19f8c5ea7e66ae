"""Initial sequence numbers per RFC 6528: a 4 µs clock plus a keyed hash of the connection."""

from __future__ import annotations

import hashlib
import random

_M32 = 0xFFFFFFFF


class IsnGenerator:
    """ISN = M + F(local, remote, secret): unpredictable off-path, increasing per 4-tuple.

    The secret comes from the stack's ``rng`` so that a seeded simulation replays exactly.
    """

    __slots__ = ("_secret",)

    def __init__(self, rng: random.Random) -> None:
        self._secret = rng.getrandbits(128).to_bytes(16, "big")

    def isn(self, local_ip: bytes, local_port: int, remote_ip: bytes, remote_port: int, now: float) -> int:
        digest = hashlib.blake2s(
            b"%b%b%b%b"
            % (local_ip, local_port.to_bytes(2, "big"), remote_ip, remote_port.to_bytes(2, "big")),
            key=self._secret,
            digest_size=4,
        ).digest()
        ticks = int(now * 250_000)
        return (ticks + int.from_bytes(digest, "big")) & _M32
