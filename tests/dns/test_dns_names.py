"""Domain names: text ⇄ wire, escapes, IDNA, limits and case-insensitive keys."""

from __future__ import annotations

import dns.name
import pytest
from dns_strategies import names
from hypothesis import given

from smolmix_core.dns import canonical_name, encode_name, name_key
from smolmix_core.errors import DnsError, InvalidDomainName


def test_plain_names_encode_as_length_prefixed_labels() -> None:
    assert encode_name("www.example.com") == b"\x03www\x07example\x03com\x00"
    assert encode_name("www.example.com.") == encode_name("www.example.com")
    assert encode_name(".") == b"\x00"
    assert canonical_name("WWW.Example.COM.") == "WWW.Example.COM"  # case is kept


def test_keys_ignore_ascii_case_and_the_final_dot_only() -> None:
    assert name_key("WWW.Example.COM.") == name_key("www.example.com") == "www.example.com"
    assert name_key("a\\065b.test") == name_key("aab.test")  # \065 is "A"
    assert name_key("a.test") != name_key("b.test")


def test_escapes_round_trip_any_label_byte() -> None:
    wire = b"\x05a.b\\\x00\x04\xff \x7f!\x00"
    text = "a\\.b\\\\\\000.\\255\\032\\127!"
    assert canonical_name(text) == text
    assert encode_name(text) == wire


def test_non_ascii_names_become_idna_a_labels() -> None:
    assert canonical_name("bücher.de") == "xn--bcher-kva.de"
    assert canonical_name("Bücher.DE.") == "xn--bcher-kva.de"  # UTS 46 maps case first
    assert canonical_name("例え.テスト") == "xn--r8jz45g.xn--zckzah"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        ".a",
        "a" * 64 + ".com",
        ".".join(["a" * 63] * 4),  # 4 * 64 + 1 = 257 wire bytes
        "bad\\",
        "bad\\25",
        "bad\\256x",
        "☃\\.x",
        "xn--a.ü",
    ],
)
def test_invalid_names_raise_the_typed_error(name: str) -> None:
    with pytest.raises(InvalidDomainName) as caught:
        encode_name(name)
    assert isinstance(caught.value, DnsError)
    assert isinstance(caught.value, ValueError)


def test_the_longest_name_fits_exactly() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 64 * 3 + 62 + 1 = 255
    assert len(encode_name(longest)) == 255
    with pytest.raises(InvalidDomainName):
        encode_name(longest + "d")


@given(names())
def test_canonical_text_round_trips_through_the_wire(name: str) -> None:
    wire = encode_name(name)
    assert canonical_name(name) == name
    assert encode_name(canonical_name(name)) == wire


@given(names())
def test_dnspython_reads_our_text_form_as_the_same_wire_name(name: str) -> None:
    theirs = dns.name.from_text(name if name == "." else name + ".")
    assert theirs.to_wire() == encode_name(name)
