"""Recipient addresses: the spec §13 vector, byte and text round trips, every parse error."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import RecipientError
from smolmix_core.mixnet.recipient import Recipient, is_ed25519_public_key

VECTOR = (
    "CytBseW6yFXUMzz4SGAKdNLGR7q3sJLLYxyBGvutNEQV.4QXYyEVc5fUDjmmi8PrHN9tdUFV4PCvSJE1278cHyvoe"
    "@4sBbL1ngf1vtNqykydQKTFh26sQCw888GpUqvPvyNB4f"
)
IDENTITY = bytes.fromhex("b202f5983ab6ad7e78b5237d005ff4887689be9a2341179b05d382cf80f1dade")
ENCRYPTION = bytes.fromhex("3299f6b78e8a0bce4daa9fcca3f93204da56a5d5132ee4d484cec3c9927cb965")
GATEWAY = bytes.fromhex("396e13d61e2bc32b6353a31da0c34dcc1545f93bab112ce63d9a2c1d0327a724")


def test_spec_vector_parses_to_the_published_keys() -> None:
    recipient = Recipient.parse(VECTOR)
    assert recipient.identity == IDENTITY
    assert recipient.encryption_key == ENCRYPTION
    assert recipient.gateway == GATEWAY
    assert str(recipient) == VECTOR
    assert recipient.to_bytes() == IDENTITY + ENCRYPTION + GATEWAY
    assert Recipient.from_bytes(recipient.to_bytes()) == recipient


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=96, max_size=96))
def test_bytes_and_text_round_trip(raw: bytes) -> None:
    recipient = Recipient.from_bytes(raw)
    assert recipient.to_bytes() == raw
    assert Recipient.parse(str(recipient)) == recipient


def test_recipients_are_hashable_and_compare_by_value() -> None:
    assert {Recipient.parse(VECTOR): 1}[Recipient.from_bytes(IDENTITY + ENCRYPTION + GATEWAY)] == 1


CLIENT, GW = VECTOR.split("@")
IDENT_TEXT, ENC_TEXT = CLIENT.split(".")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CLIENT, "exactly one '@'"),
        (VECTOR + "@" + GW, "exactly one '@'"),
        (f"{IDENT_TEXT}{ENC_TEXT}@{GW}", "exactly one '.'"),
        (f"{IDENT_TEXT}.{ENC_TEXT}.{ENC_TEXT}@{GW}", "exactly one '.'"),
        (f".{ENC_TEXT}@{GW}", "identity is empty"),
        (f"{IDENT_TEXT}.@{GW}", "encryption key is empty"),
        (f"{IDENT_TEXT}.{ENC_TEXT}@", "gateway identity is empty"),
        (f"{IDENT_TEXT[:-1]}0.{ENC_TEXT}@{GW}", "identity is not base58"),
        (f"{IDENT_TEXT}.{ENC_TEXT[:-1]}l@{GW}", "encryption key is not base58"),
        (f"{IDENT_TEXT}.{ENC_TEXT}@{GW[:-1]}O", "gateway identity is not base58"),
        (f"{IDENT_TEXT[:-2]}.{ENC_TEXT}@{GW}", "identity must decode to 32 bytes"),
        (f"{IDENT_TEXT}.{ENC_TEXT}zz@{GW}", "encryption key must decode to 32 bytes"),
        (f"{IDENT_TEXT}.{ENC_TEXT}@1{GW}", "gateway identity must decode to 32 bytes"),
    ],
)
def test_parse_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(RecipientError, match=message):
        Recipient.parse(text)


@pytest.mark.parametrize("size", [0, 95, 97])
def test_from_bytes_rejects_wrong_length(size: int) -> None:
    with pytest.raises(RecipientError, match="96 bytes"):
        Recipient.from_bytes(bytes(size))


def test_constructor_rejects_short_keys() -> None:
    with pytest.raises(RecipientError, match="encryption_key must be 32 bytes"):
        Recipient(IDENTITY, ENCRYPTION[:31], GATEWAY)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(RecipientError, match="is text"):
        Recipient.parse(VECTOR.encode())  # type: ignore[arg-type]


def test_recipient_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="'@'"):
        Recipient.parse("nothing here")


P = 2**255 - 19


def test_ed25519_key_check_accepts_real_keys_and_refuses_non_points() -> None:
    keys = [Ed25519PrivateKey.generate().public_key().public_bytes_raw() for _ in range(20)]
    assert all(is_ed25519_public_key(key) for key in [*keys, IDENTITY, GATEWAY])
    assert Recipient.parse(VECTOR).has_valid_identities
    # y = 2: (y² - 1) / (d·y² + 1) is not a square mod p, so no x exists
    assert not is_ed25519_public_key((2).to_bytes(32, "little"))
    assert not Recipient((2).to_bytes(32, "little"), ENCRYPTION, GATEWAY).has_valid_identities
    assert not Recipient(IDENTITY, ENCRYPTION, (2).to_bytes(32, "little")).has_valid_identities
    assert Recipient(IDENTITY, bytes(32), GATEWAY).has_valid_identities  # any x25519 bytes will do
    assert not is_ed25519_public_key(IDENTITY[:31])


def test_ed25519_key_check_is_as_lenient_as_dalek_decompression() -> None:
    # curve25519-dalek FieldElement::from_bytes masks bit 255 and does not require y < p, and
    # decompression does not reject the sign bit on x = 0: these all decode to y = 1 (x = 0).
    for encoded in (1, 1 | 1 << 255, P + 1):
        assert is_ed25519_public_key(encoded.to_bytes(32, "little"))
    # the sign bit never decides validity
    for key in (IDENTITY, GATEWAY, (2).to_bytes(32, "little")):
        flipped = key[:31] + bytes([key[31] ^ 0x80])
        assert is_ed25519_public_key(flipped) == is_ed25519_public_key(key)
