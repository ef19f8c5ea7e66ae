"""NymNodeRoutingAddress: the spec example, IPv4/IPv6 forms, padding and malformed input."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import RoutingAddressError
from smolmix_core.mixnet.routing import SPHINX_ADDRESS_SIZE, NymNodeRoutingAddress


def test_spec_example_ipv4() -> None:
    address = NymNodeRoutingAddress("1.2.3.4", 1789)
    assert address.to_bytes() == bytes.fromhex("0406fd01020304")
    assert address.to_padded(19) == bytes.fromhex("0406fd01020304") + bytes(12)
    assert address.to_padded(SPHINX_ADDRESS_SIZE) == bytes.fromhex("0406fd01020304") + bytes(25)
    assert NymNodeRoutingAddress.from_bytes(address.to_bytes()) == address
    assert NymNodeRoutingAddress.from_padded(address.to_padded(32)) == address
    assert address.address == ("1.2.3.4", 1789)


def test_ipv6_is_19_bytes_and_normalised() -> None:
    address = NymNodeRoutingAddress("::0001", 9000)
    assert address.host == "::1"
    raw = address.to_bytes()
    assert raw == b"\x06\x23\x28" + ipaddress.IPv6Address("::1").packed
    assert len(raw) == 19
    assert NymNodeRoutingAddress.from_padded(raw) == address
    assert str(address) == "[::1]:9000"


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
    st.integers(min_value=0, max_value=65535),
)
def test_round_trip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> None:
    address = NymNodeRoutingAddress(str(ip), port)
    assert NymNodeRoutingAddress.from_bytes(address.to_bytes()) == address
    assert NymNodeRoutingAddress.from_padded(address.to_padded(32)) == address
    parsed, used = NymNodeRoutingAddress.parse_prefix(address.to_bytes() + b"tail")
    assert (parsed, used) == (address, len(address.to_bytes()))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x05\x00\x01\x01\x02\x03\x04", "unknown IP version"),
        (b"\x04\x00\x01\x01\x02\x03", "needs 7 bytes"),
        (b"\x06\x00\x01" + bytes(15), "needs 19 bytes"),
    ],
)
def test_malformed_bytes(data: bytes, message: str) -> None:
    with pytest.raises(RoutingAddressError, match=message):
        NymNodeRoutingAddress.from_bytes(data)


def test_trailing_bytes_and_dirty_padding_are_rejected() -> None:
    raw = NymNodeRoutingAddress("10.0.0.1", 1).to_bytes()
    with pytest.raises(RoutingAddressError, match="trailing"):
        NymNodeRoutingAddress.from_bytes(raw + b"\x00")
    with pytest.raises(RoutingAddressError, match="padding"):
        NymNodeRoutingAddress.from_padded(raw + b"\x00\x07")


@pytest.mark.parametrize(("host", "port"), [("localhost", 1), ("1.2.3.4", -1), ("1.2.3.4", 65536)])
def test_bad_construction(host: str, port: int) -> None:
    with pytest.raises(RoutingAddressError):
        NymNodeRoutingAddress(host, port)


def test_does_not_fit_in_small_padding() -> None:
    with pytest.raises(RoutingAddressError, match="does not fit"):
        NymNodeRoutingAddress("::1", 1).to_padded(7)
