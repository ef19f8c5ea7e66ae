"""Node-to-node framing and the client ↔ gateway link protocol (sans-I/O)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolmix_core.errors import FramingError, GatewayError, LinkError
from smolmix_core.mixnet.framing import FrameDecoder, KeyRotation, PacketType, encode_frame
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.link import (
    CLIENT_HELLO_SIZE,
    GATEWAY_HELLO_SIZE,
    FrameKind,
    LinkClientHandshake,
    LinkGatewayHandshake,
    decode_forward,
    encode_forward,
)
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import PacketSize

REGULAR = bytes(range(256)) * 9 + bytes(2413 - 256 * 9)
ACK = os.urandom(386)


def test_header_layouts() -> None:
    assert encode_frame(REGULAR)[:4] == bytes([8, 1, 0, 0])
    assert encode_frame(ACK, key_rotation=KeyRotation.EVEN)[:4] == bytes([8, 2, 0, 2])
    assert encode_frame(ACK, packet_version=7)[:3] == bytes([7, 2, 0])
    assert len(encode_frame(REGULAR)) == 4 + 2413
    with pytest.raises(FramingError):
        encode_frame(b"x" * 2412)


def test_decoder_handles_every_header_form_split_anywhere() -> None:
    legacy = bytes([1, 0]) + REGULAR
    stream = encode_frame(REGULAR) + encode_frame(ACK, packet_version=7) + legacy + encode_frame(ACK)
    for step in (1, 3, 7, 500, len(stream)):
        decoder = FrameDecoder()
        frames = []
        for start in range(0, len(stream), step):
            decoder.feed(stream[start : start + step])
            while (frame := decoder.next_frame()) is not None:
                frames.append(frame)
        assert [f.packet for f in frames] == [REGULAR, ACK, REGULAR, ACK]
        assert [f.packet_size for f in frames] == [
            PacketSize.REGULAR,
            PacketSize.ACK,
            PacketSize.REGULAR,
            PacketSize.ACK,
        ]
        assert [f.packet_version for f in frames] == [8, 7, None, 8]
        assert decoder.buffered == 0


@pytest.mark.parametrize(
    "header",
    [
        bytes([8, 9, 0, 0]),
        bytes([8, 1, 7, 0]),
        bytes([8, 1, 0, 9]),
        bytes([0, 0]),
        bytes([6, 0]),
        bytes([9, 6, 2, 0]),
    ],
)
def test_corrupt_headers_raise(header: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(header + bytes(4000))
    with pytest.raises(FramingError):
        decoder.next_frame()


def test_truncated_frame_waits_for_more() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(REGULAR)[:-1])
    assert decoder.next_frame() is None
    assert decoder.buffered == 4 + 2412


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_garbage_raises_only_framing_errors(data: bytes) -> None:
    decoder = FrameDecoder()
    decoder.feed(data)
    seen = 0
    try:
        while decoder.next_frame() is not None:
            seen += 1
    except FramingError:
        seen = -1
    assert seen <= len(data) // 386


def test_forward_plaintext_round_trip() -> None:
    hop = NymNodeRoutingAddress("127.0.0.1", 1789)
    plaintext = encode_forward(hop, REGULAR)
    assert plaintext[:8] == bytes([0, 4, 0x06, 0xFD, 127, 0, 0, 1])
    forward = decode_forward(plaintext)
    assert forward.first_hop == hop
    assert forward.packet == REGULAR
    assert forward.packet_type is PacketType.MIX
    v6 = decode_forward(encode_forward(NymNodeRoutingAddress("::1", 9), ACK))
    assert v6.first_hop.host == "::1"
    assert v6.packet == ACK
    for bad in (b"", b"\x00", b"\x00\x05" + bytes(10), b"\x09\x04" + bytes(10)):
        with pytest.raises(LinkError):
            decode_forward(bad)


def handshake_pair() -> tuple[ClientKeys, bytes, LinkClientHandshake, LinkGatewayHandshake]:
    client = ClientKeys.generate()
    gateway_secret = os.urandom(32)
    gateway = LinkGatewayHandshake(gateway_secret)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    gateway_identity = Ed25519PrivateKey.from_private_bytes(gateway_secret).public_key().public_bytes_raw()
    return client, gateway_identity, LinkClientHandshake(client.identity_secret, gateway_identity), gateway


def test_handshake_and_sealed_frames() -> None:
    client_keys, _, client, gateway = handshake_pair()
    hello = client.hello()
    assert len(hello) == CLIENT_HELLO_SIZE
    gateway_hello = gateway.receive_client_hello(hello)
    assert len(gateway_hello) == GATEWAY_HELLO_SIZE
    assert gateway.client_identity == client_keys.identity_key
    auth = client.receive_gateway_hello(gateway_hello)
    gateway_session = gateway.receive_client_auth(auth)
    client_session = client.receive_ready(gateway_session.seal(FrameKind.READY, b""))

    for size in (0, 1, 1643, 33000):
        payload = os.urandom(size)
        assert client_session.open(gateway_session.seal(FrameKind.PUSH, payload)) == (FrameKind.PUSH, payload)
        assert gateway_session.open(client_session.seal(FrameKind.FORWARD, payload)) == (
            FrameKind.FORWARD,
            payload,
        )

    sealed = client_session.seal(FrameKind.FORWARD, b"packet")
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    with pytest.raises(LinkError):
        gateway_session.open(bytes(tampered))
    assert gateway_session.open(sealed) == (FrameKind.FORWARD, b"packet")
    with pytest.raises(LinkError, match="counter"):
        gateway_session.open(sealed)  # replay
    skipped = [client_session.seal(FrameKind.FORWARD, b"a"), client_session.seal(FrameKind.FORWARD, b"b")]
    with pytest.raises(LinkError, match="counter"):
        gateway_session.open(skipped[1])  # reordered
    with pytest.raises(LinkError):
        gateway_session.open(b"short")
    assert gateway_session.frames_rejected == 4


def test_wrong_gateway_identity_is_refused() -> None:
    client_keys, _, _, gateway = handshake_pair()
    impostor_expected = LinkClientHandshake(client_keys.identity_secret, os.urandom(32))
    with pytest.raises(GatewayError, match="different identity"):
        impostor_expected.receive_gateway_hello(gateway.receive_client_hello(impostor_expected.hello()))


def test_forged_signatures_are_refused() -> None:
    _, _, client, gateway = handshake_pair()
    gateway_hello = bytearray(gateway.receive_client_hello(client.hello()))
    gateway_hello[-1] ^= 1
    with pytest.raises(GatewayError, match="signature"):
        client.receive_gateway_hello(bytes(gateway_hello))

    _, _, client, gateway = handshake_pair()
    auth = bytearray(client.receive_gateway_hello(gateway.receive_client_hello(client.hello())))
    auth[0] ^= 1
    with pytest.raises(GatewayError, match="signature"):
        gateway.receive_client_auth(bytes(auth))

    # a client claiming someone else's identity cannot produce their signature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    victim = ClientKeys.generate()
    _, _, honest, gateway = handshake_pair()
    forged_hello = honest.hello()[:5] + victim.identity_key + honest.hello()[37:]
    reply = gateway.receive_client_hello(forged_hello)
    mallory_key = Ed25519PrivateKey.generate()
    forged_auth = mallory_key.sign(b"smolmix-link-v1 client" + forged_hello + reply)
    with pytest.raises(GatewayError, match="signature"):
        gateway.receive_client_auth(forged_auth)


def test_malformed_hellos() -> None:
    _, _, client, gateway = handshake_pair()
    for bad in (b"", b"SMXL", b"XXXX" + client.hello()[4:], client.hello() + b"!"):
        with pytest.raises(GatewayError):
            gateway.receive_client_hello(bad)
    with pytest.raises(GatewayError):
        client.receive_gateway_hello(b"nope")
