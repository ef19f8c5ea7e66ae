"""Random and mutated bytes: the decoder raises only ``MalformedDnsMessage``, and whatever does
decode encodes and decodes again to itself."""

from __future__ import annotations

import random

from dns_strategies import messages
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dns_message import CAPTURED_QUERY, CAPTURED_RESPONSE, _dnspython_response

from smolmix_core.dns import Message, decode_message
from smolmix_core.errors import MalformedDnsMessage

SEEDS = [CAPTURED_QUERY, CAPTURED_RESPONSE, _dnspython_response().to_wire()]


def _check(data: bytes) -> None:
    try:
        message = decode_message(data)
    except MalformedDnsMessage:
        pass
    else:
        assert decode_message(message.encode()) == message


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_random_bytes_only_ever_raise_the_typed_error(data: bytes) -> None:
    _check(data)


@settings(max_examples=300)
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6))
def test_mutated_real_messages_only_ever_raise_the_typed_error(
    seed: bytes, flips: list[tuple[int, int]]
) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _check(bytes(data))


@settings(max_examples=80)
@given(messages(), st.randoms(use_true_random=False))
def test_truncated_and_spliced_messages_only_ever_raise_the_typed_error(
    message: Message, rng: random.Random
) -> None:
    wire = message.encode()
    _check(wire[: rng.randrange(len(wire) + 1)])
    cut = rng.randrange(len(wire) + 1)
    _check(wire[:cut] + bytes([rng.randrange(256)]) + wire[cut:])
    _check(wire[:cut] + bytes([0xC0, rng.randrange(256)]) + wire[cut + 2 :])


def test_a_long_seeded_mutation_run() -> None:
    rng = random.Random(20240613)
    for _ in range(20_000):
        data = bytearray(rng.choice(SEEDS))
        for _ in range(rng.randrange(1, 5)):
            action = rng.randrange(3)
            position = rng.randrange(len(data))
            if action == 0:
                data[position] = rng.randrange(256)
            elif action == 1:
                del data[position:]
            else:
                data[position:position] = rng.randbytes(rng.randrange(1, 4))
            if not data:
                data = bytearray(b"\x00")
        _check(bytes(data))
