"""A client's mixnet address: who it is, how to encrypt to it, and which gateway holds its mail."""

from __future__ import annotations

from dataclasses import dataclass

from smolmix_core.errors import RecipientError
from smolmix_core.mixnet.base58 import b58decode, b58encode, max_encoded_length

KEY_SIZE = 32
RECIPIENT_SIZE = 3 * KEY_SIZE
_P = 2**255 - 19
_D = -121665 * pow(121666, -1, _P) % _P


def is_ed25519_public_key(key: bytes) -> bool:
    """Whether upstream (ed25519-dalek ``VerifyingKey::from_bytes``) accepts ``key`` as a public key.

    That is point decompression alone: y is the low 255 bits, *not* required to be below p, and
    some x must exist, i.e. ``(y² − 1) / (d·y² + 1)`` is a square mod p (``d·y² + 1`` never is
    zero). The sign bit is not checked, not even for x = 0.
    """
    if len(key) != KEY_SIZE:
        return False
    y = int.from_bytes(key, "little") & ((1 << 255) - 1)
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    return u == 0 or pow(u * v % _P, (_P - 1) // 2, _P) == 1


@dataclass(frozen=True, slots=True)
class Recipient:
    """``identity (ed25519) ‖ encryption_key (x25519) ‖ gateway (ed25519)``, 32 bytes each.

    The identity is also the Sphinx destination; the gateway identity picks the last hop.
    """

    identity: bytes
    encryption_key: bytes
    gateway: bytes

    def __post_init__(self) -> None:
        for name in ("identity", "encryption_key", "gateway"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != KEY_SIZE:
                size = len(value) if isinstance(value, bytes | bytearray) else type(value).__name__
                raise RecipientError(f"recipient {name} must be {KEY_SIZE} bytes, got {size}")

    @classmethod
    def from_bytes(cls, data: bytes) -> Recipient:
        if len(data) != RECIPIENT_SIZE:
            raise RecipientError(f"a recipient is {RECIPIENT_SIZE} bytes, got {len(data)}")
        data = bytes(data)
        return cls(data[:KEY_SIZE], data[KEY_SIZE : 2 * KEY_SIZE], data[2 * KEY_SIZE :])

    def to_bytes(self) -> bytes:
        return self.identity + self.encryption_key + self.gateway

    @property
    def has_valid_identities(self) -> bool:
        """Whether the client and gateway identities are ed25519 points, as upstream's
        ``Recipient::try_from_bytes`` requires (any 32 bytes are an x25519 key)."""
        return is_ed25519_public_key(self.identity) and is_ed25519_public_key(self.gateway)

    @classmethod
    def parse(cls, text: str) -> Recipient:
        """Parse ``base58(identity).base58(encryption_key)@base58(gateway)``."""
        if not isinstance(text, str):
            raise RecipientError(f"a recipient address is text, got {type(text).__name__}")
        if text.count("@") != 1:
            raise RecipientError(
                f"recipient address must contain exactly one '@' (client@gateway), "
                f"found {text.count('@')}: {text!r}"
            )
        client, gateway = text.split("@")
        if client.count(".") != 1:
            raise RecipientError(
                f"the client half of a recipient address must be 'identity.encryption_key' "
                f"with exactly one '.', found {client.count('.')}: {text!r}"
            )
        identity, encryption_key = client.split(".")
        return cls(
            _decode_key("identity", identity),
            _decode_key("encryption key", encryption_key),
            _decode_key("gateway identity", gateway),
        )

    def __str__(self) -> str:
        return f"{b58encode(self.identity)}.{b58encode(self.encryption_key)}@{b58encode(self.gateway)}"

    def __repr__(self) -> str:
        return f"Recipient({str(self)!r})"


def _decode_key(name: str, text: str) -> bytes:
    if not text:
        raise RecipientError(f"recipient {name} is empty")
    if len(text) > max_encoded_length(KEY_SIZE):
        raise RecipientError(
            f"recipient {name} must decode to {KEY_SIZE} bytes; {len(text)} base58 characters are too many"
        )
    try:
        key = b58decode(text)
    except ValueError as exc:
        raise RecipientError(f"recipient {name} is not base58: {exc}") from None
    if len(key) != KEY_SIZE:
        raise RecipientError(f"recipient {name} must decode to {KEY_SIZE} bytes, got {len(key)}")
    return key
