"""Base58 (Bitcoin alphabet): known vectors, leading zeros, round trips and bad characters."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import Base58Error, SmolmixError
from smolmix_core.mixnet.base58 import b58decode, b58encode, max_encoded_length


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"", ""),
        (b"\x00", "1"),
        (b"\x00\x00\x01", "112"),
        (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
        (bytes.fromhex("0000287fb4cd"), "11233QC4"),
        (b"\xff" * 4, "7YXq9G"),
    ],
)
def test_known_vectors(raw: bytes, text: str) -> None:
    assert b58encode(raw) == text
    assert b58decode(text) == raw


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_round_trip(data: bytes) -> None:
    assert b58decode(b58encode(data)) == data


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "abc+", "ab c"])
def test_characters_outside_the_alphabet_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid base58 character"):
        b58decode(bad)


def test_bad_text_is_a_typed_error_that_is_still_a_value_error() -> None:
    with pytest.raises(Base58Error):
        b58decode("0OIl")
    assert issubclass(Base58Error, ValueError)
    assert issubclass(Base58Error, SmolmixError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_max_size_accepts_every_encoding_of_that_many_bytes(data: bytes) -> None:
    text = b58encode(data)
    assert len(text) <= max_encoded_length(len(data))
    assert b58decode(text, max_size=len(data)) == data


def test_max_size_refuses_long_text_before_decoding_it() -> None:
    # Decoding is quadratic: a megabyte of text would take minutes, refusing it takes nothing.
    started = time.perf_counter()
    with pytest.raises(Base58Error, match="cannot encode 32 bytes"):
        b58decode("2" * 1_000_000, max_size=32)
    assert time.perf_counter() - started < 1.0
    assert max_encoded_length(32) == 44
    assert len(b58encode(b"\xff" * 32)) == 44
