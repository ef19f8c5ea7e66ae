"""The client ↔ gateway link protocol, without I/O: mutual authentication and an AEAD channel.

Upstream Nym registers clients with a JSON handshake and AES-256-GCM-SIV; the devnet uses this
smaller protocol with the same guarantees (the gateway proves its identity, the client proves
it owns the identity that packets are delivered to, and each direction has its own key). All
messages are binary websocket frames.

Handshake (``‖`` = concatenation, signatures are ed25519)::

    ClientHello  = "SMXL" ‖ 01 ‖ client_identity(32) ‖ client_ephemeral_x25519(32)              69 B
    GatewayHello = "SMXL" ‖ 01 ‖ gateway_identity(32) ‖ gateway_ephemeral_x25519(32)
                   ‖ sign_gateway("smolmix-link-v1 gateway" ‖ ClientHello ‖ GatewayHello[0:69])  133 B
    ClientAuth   = sign_client("smolmix-link-v1 client" ‖ ClientHello ‖ GatewayHello)           64 B
    (gateway)    → sealed READY frame, or a websocket close with code 4001

The client checks that ``gateway_identity`` is the identity it expected (from the topology) and
the gateway's signature; the gateway checks the client's signature against ``client_identity``.
Keys: ``HKDF-SHA256(ikm = X25519(client_eph, gateway_eph), salt = SHA-256(ClientHello ‖
GatewayHello), info = "smolmix-link-v1 keys", L = 64)`` → client→gateway key ‖ gateway→client key.

Sealed frames: ``kind u8 ‖ counter u64 BE ‖ AES-256-GCM(key, nonce = 0^4 ‖ counter,
plaintext, aad = kind ‖ counter)``. Counters start at 0 in each direction and must arrive exactly
in order (the websocket is reliable and ordered), which rejects replayed, dropped or reordered
frames. Kinds: READY (gateway→client, empty), FORWARD (client→gateway: ``packet_type u8 ‖
first-hop NymNodeRoutingAddress (7|19 B) ‖ Sphinx packet``), PUSH (gateway→client: a payload
delivered from the final hop: 1643 B regular, 21 B ack, or an extended equivalent).
"""

from __future__ import annotations

import enum
import hashlib
import os
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from smolmix_core.errors import GatewayError, LinkError, RoutingAddressError
from smolmix_core.mixnet.framing import PacketType
from smolmix_core.mixnet.routing import MAX_UNPADDED_SIZE, NymNodeRoutingAddress
from smolmix_core.mixnet.x25519 import x25519, x25519_base

MAGIC = b"SMXL"
PROTOCOL_VERSION = 1
CLIENT_HELLO_SIZE = 4 + 1 + 32 + 32
GATEWAY_HELLO_SIZE = CLIENT_HELLO_SIZE + 64
CLIENT_AUTH_SIZE = 64
AUTH_FAILED_CLOSE_CODE = 4001
_GATEWAY_CONTEXT = b"smolmix-link-v1 gateway"
_CLIENT_CONTEXT = b"smolmix-link-v1 client"
_KEY_INFO = b"smolmix-link-v1 keys"
_SEALED_HEADER = struct.Struct(">BQ")
_TAG_SIZE = 16


class FrameKind(enum.IntEnum):
    READY = 1
    FORWARD = 2
    PUSH = 3


_FRAME_KINDS = {member.value: member for member in FrameKind}


@dataclass(frozen=True, slots=True)
class ForwardPacket:
    """What a client asks its gateway to send: a Sphinx packet and the first hop to send it to."""

    first_hop: NymNodeRoutingAddress
    packet: bytes
    packet_type: PacketType = PacketType.MIX


def encode_forward(
    first_hop: NymNodeRoutingAddress | bytes, packet: bytes, packet_type: PacketType = PacketType.MIX
) -> bytes:
    """FORWARD plaintext; ``first_hop`` may already be in its 7/19-byte MixPacket form."""
    address = first_hop if isinstance(first_hop, bytes) else first_hop.to_bytes()
    return b"".join((bytes([packet_type]), address, packet))


def decode_forward(plaintext: bytes) -> ForwardPacket:
    """Parse a FORWARD plaintext; ``LinkError`` if it is malformed (the packet size is checked later)."""
    if len(plaintext) < 2:
        raise LinkError("forward frame too short")
    try:
        packet_type = PacketType(plaintext[0])
        first_hop, size = NymNodeRoutingAddress.parse_prefix(plaintext[1 : 1 + MAX_UNPADDED_SIZE])
    except (ValueError, RoutingAddressError) as exc:
        raise LinkError(f"malformed forward frame: {exc}") from None
    return ForwardPacket(first_hop, bytes(plaintext[1 + size :]), packet_type)


class LinkSession:
    """The AEAD channel after the handshake; one per side, with opposite key roles."""

    def __init__(self, send_key: bytes, receive_key: bytes) -> None:
        self._seal = AESGCM(send_key)
        self._open = AESGCM(receive_key)
        self._send_counter = 0
        self._receive_counter = 0
        self.frames_rejected = 0

    def seal(self, kind: FrameKind, plaintext: bytes) -> bytes:
        header = _SEALED_HEADER.pack(kind, self._send_counter)
        nonce = b"\x00\x00\x00\x00" + header[1:]
        self._send_counter += 1
        return header + self._seal.encrypt(nonce, plaintext, header)

    def open(self, frame: bytes) -> tuple[FrameKind, bytes]:
        """Verify and decrypt the next frame; ``LinkError`` for a forged, replayed or reordered one."""
        if len(frame) < _SEALED_HEADER.size + _TAG_SIZE:
            self.frames_rejected += 1
            raise LinkError(f"sealed frame too short ({len(frame)} bytes)")
        kind_byte, counter = _SEALED_HEADER.unpack_from(frame)
        if counter != self._receive_counter:
            self.frames_rejected += 1
            raise LinkError(f"frame counter {counter} where {self._receive_counter} was expected")
        header = bytes(frame[: _SEALED_HEADER.size])
        try:
            plaintext = self._open.decrypt(
                b"\x00\x00\x00\x00" + header[1:], bytes(frame[_SEALED_HEADER.size :]), header
            )
            kind = _FRAME_KINDS[kind_byte]
        except (InvalidTag, KeyError):
            self.frames_rejected += 1
            raise LinkError("sealed frame failed authentication") from None
        self._receive_counter += 1
        return kind, plaintext


def _derive_keys(shared: bytes, transcript: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=hashlib.sha256(transcript).digest(), info=_KEY_INFO
    ).derive(shared)
    return okm[:32], okm[32:]


def _exchange(private: bytes, peer_public: bytes) -> bytes:
    try:
        return x25519(private, peer_public)
    except ValueError as exc:
        raise GatewayError(f"bad ephemeral key in the link handshake: {exc}") from None


def _verify(identity: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(identity).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


class LinkClientHandshake:
    """The client's side: ``hello()``, then ``receive_gateway_hello()`` → ClientAuth, then ``session``."""

    def __init__(
        self, identity_secret: bytes, expected_gateway: bytes, *, ephemeral: bytes | None = None
    ) -> None:
        self._identity = Ed25519PrivateKey.from_private_bytes(identity_secret)
        self._expected_gateway = expected_gateway
        self._ephemeral = ephemeral or os.urandom(32)
        identity_public = self._identity.public_key().public_bytes_raw()
        self._hello = MAGIC + bytes([PROTOCOL_VERSION]) + identity_public + x25519_base(self._ephemeral)
        self.session: LinkSession | None = None

    def hello(self) -> bytes:
        return self._hello

    def receive_gateway_hello(self, data: bytes) -> bytes:
        """Check the gateway's identity and signature; returns the ClientAuth message to send."""
        if len(data) != GATEWAY_HELLO_SIZE or data[:5] != MAGIC + bytes([PROTOCOL_VERSION]):
            raise GatewayError(f"not a gateway hello ({len(data)} bytes)")
        gateway_identity = bytes(data[5:37])
        if gateway_identity != self._expected_gateway:
            raise GatewayError("the gateway presented a different identity than the topology lists")
        signed = _GATEWAY_CONTEXT + self._hello + bytes(data[:CLIENT_HELLO_SIZE])
        if not _verify(gateway_identity, bytes(data[CLIENT_HELLO_SIZE:]), signed):
            raise GatewayError("the gateway's handshake signature does not verify")
        transcript = self._hello + bytes(data)
        client_to_gateway, gateway_to_client = _derive_keys(
            _exchange(self._ephemeral, bytes(data[37:69])), transcript
        )
        self.session = LinkSession(client_to_gateway, gateway_to_client)
        return self._identity.sign(_CLIENT_CONTEXT + transcript)

    def receive_ready(self, frame: bytes) -> LinkSession:
        """The gateway's first sealed frame must be READY; returns the usable session."""
        if self.session is None:
            raise GatewayError("READY before the gateway hello")
        kind, _ = self.session.open(frame)
        if kind is not FrameKind.READY:
            raise GatewayError(f"expected READY from the gateway, got {kind.name}")
        return self.session


class LinkGatewayHandshake:
    """The gateway's side: ``receive_client_hello()`` → GatewayHello, ``receive_client_auth()`` → session."""

    def __init__(self, identity_secret: bytes, *, ephemeral: bytes | None = None) -> None:
        self._identity = Ed25519PrivateKey.from_private_bytes(identity_secret)
        self._ephemeral = ephemeral or os.urandom(32)
        self._transcript = b""
        self._shared = b""
        self.client_identity: bytes | None = None

    def receive_client_hello(self, data: bytes) -> bytes:
        if len(data) != CLIENT_HELLO_SIZE or data[:5] != MAGIC + bytes([PROTOCOL_VERSION]):
            raise GatewayError(f"not a client hello ({len(data)} bytes)")
        client_identity = bytes(data[5:37])
        try:
            Ed25519PublicKey.from_public_bytes(client_identity)
        except ValueError:
            raise GatewayError("client identity is not an ed25519 key") from None
        self._shared = _exchange(self._ephemeral, bytes(data[37:69]))
        head = (
            MAGIC
            + bytes([PROTOCOL_VERSION])
            + self._identity.public_key().public_bytes_raw()
            + x25519_base(self._ephemeral)
        )
        reply = head + self._identity.sign(_GATEWAY_CONTEXT + bytes(data) + head)
        self._transcript = bytes(data) + reply
        self.client_identity = client_identity
        return reply

    def receive_client_auth(self, signature: bytes) -> LinkSession:
        if self.client_identity is None:
            raise GatewayError("client auth before the client hello")
        if len(signature) != CLIENT_AUTH_SIZE or not _verify(
            self.client_identity, bytes(signature), _CLIENT_CONTEXT + self._transcript
        ):
            raise GatewayError("the client's handshake signature does not verify")
        client_to_gateway, gateway_to_client = _derive_keys(self._shared, self._transcript)
        return LinkSession(gateway_to_client, client_to_gateway)


__all__ = [
    "AUTH_FAILED_CLOSE_CODE",
    "ForwardPacket",
    "FrameKind",
    "LinkClientHandshake",
    "LinkGatewayHandshake",
    "LinkSession",
    "decode_forward",
    "encode_forward",
]
