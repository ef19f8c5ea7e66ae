"""The optimised Sphinx code against a slow, spec-literal reference, plus fixed vectors.

The reference below follows spec mixnet.md §3–§4 line by line: RFC 5869 HKDF written out with
``hmac``, per-byte XOR, the literal blinding chain, Lioness from its four equations. If the fast
code and the reference agree byte for byte, the optimisations changed nothing on the wire. The
recorded digests pin the format so that it cannot drift silently.
"""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from smolmix_core.errors import MacMismatch, SphinxError
from smolmix_core.mixnet.sphinx import (
    VERSION_258,
    VERSION_259,
    FinalHop,
    ForwardHop,
    PacketSize,
    RouteNode,
    SphinxProcessor,
    build_packet,
    build_surb,
    generate_keypair,
)
from smolmix_core.mixnet.sphinx.crypto import derive_payload_key, expand_shared_secret

INFO = b"Dwste mou enan moxlo arketa makru kai ena upomoxlio gia na ton topothetisw kai tha kinisw thn gh."
PAYLOAD_SALT = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-SALT"
PAYLOAD_INFO = b"sphinx-payload-key-V01-CS01-HKDF:SHA256-INFO"
DESTINATION = bytes(range(100, 132))


# --- the reference -----------------------------------------------------------------------------


def ref_xor(a: bytes, b: bytes) -> bytes:
    assert len(a) == len(b)
    return bytes(x ^ y for x, y in zip(a, b))


def ref_hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def ref_x25519(scalar: bytes, u: bytes) -> bytes:
    return X25519PrivateKey.from_private_bytes(scalar).exchange(X25519PublicKey.from_public_bytes(u))


def ref_rho(key: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(360))


def ref_chacha(key: bytes, length: int) -> bytes:
    return Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(bytes(length))


def ref_lioness_encrypt(key: bytes, block: bytes) -> bytes:
    k1, k2, k3, k4 = key[:32], key[32:96], key[96:128], key[128:]
    left, right = block[:32], block[32:]
    right = ref_xor(right, ref_chacha(ref_xor(left, k1), len(right)))
    left = ref_xor(left, hashlib.blake2b(right, key=k2, digest_size=32).digest())
    right = ref_xor(right, ref_chacha(ref_xor(left, k3), len(right)))
    left = ref_xor(left, hashlib.blake2b(right, key=k4, digest_size=32).digest())
    return left + right


@dataclass
class RefHop:
    expanded: bytes

    @property
    def rho(self) -> bytes:
        return ref_rho(self.expanded[:16])

    @property
    def mu(self) -> bytes:
        return self.expanded[16:32]

    def payload_key(self, version: int) -> bytes:
        if version == VERSION_258:
            return self.expanded[32:224]
        return ref_hkdf(self.expanded[32:48], salt=PAYLOAD_SALT, info=PAYLOAD_INFO, length=192)


def ref_key_schedule(public_keys: Sequence[bytes], x: bytes) -> tuple[bytes, list[RefHop]]:
    alpha = X25519PrivateKey.from_private_bytes(x).public_key().public_bytes_raw()
    hops: list[RefHop] = []
    for public_key in public_keys:
        shared = ref_x25519(x, public_key)
        for earlier in hops:
            shared = ref_x25519(earlier.expanded[224:256], shared)
        hops.append(RefHop(ref_hkdf(shared, salt=b"", info=INFO, length=288)))
    return alpha, hops


def ref_build(
    route: Sequence[RouteNode],
    destination: bytes,
    payload_plaintext: bytes,
    *,
    x: bytes,
    padding: bytes,
    delays: Sequence[int],
    identifier: bytes,
    version: int,
    final_flag: int = 2,
    forward_flag: int = 1,
    version_field: bytes | None = None,
) -> bytes:
    """A packet built exactly as spec §4.1/§4.2 say (the plaintext payload is given already padded)."""
    n = len(route)
    ver = version_field if version_field is not None else b"\x00" + version.to_bytes(2, "big")
    alpha, hops = ref_key_schedule([node.public_key for node in route], x)
    filler = b""
    for i in range(1, n):
        filler = ref_xor(filler + bytes(60), hops[i - 1].rho[360 - 60 * i : 360])
    final = bytes([final_flag]) + ver + destination + identifier + padding
    assert len(final) == 300 - 60 * (n - 1)
    beta = ref_xor(final, hops[n - 1].rho[: len(final)]) + filler
    gamma = hmac.new(hops[n - 1].mu, beta, hashlib.sha256).digest()[:16]
    for i in range(n - 2, -1, -1):
        block = (
            bytes([forward_flag])
            + ver
            + route[i + 1].address
            + delays[i].to_bytes(8, "big")
            + gamma
            + beta[:240]
        )
        beta = ref_xor(block, hops[i].rho[:300])
        gamma = hmac.new(hops[i].mu, beta, hashlib.sha256).digest()[:16]
    payload = payload_plaintext
    for hop in reversed(hops):
        payload = ref_lioness_encrypt(hop.payload_key(version), payload)
    return alpha + gamma + beta + payload


def ref_pad(message: bytes, payload_size: int) -> bytes:
    return bytes(16) + message + b"\x01" + bytes(payload_size - 17 - len(message))


# --- fixtures ----------------------------------------------------------------------------------


def make_network(hops: int, seed: int) -> tuple[list[RouteNode], list[SphinxProcessor]]:
    rng = random.Random(seed)
    keys = [generate_keypair(rng) for _ in range(hops)]
    route = [RouteNode(bytes([i + 1]) * 32, public) for i, (_, public) in enumerate(keys)]
    return route, [SphinxProcessor(private) for private, _ in keys]


def drawn_randomness(seed: int, hops: int) -> tuple[bytes, bytes]:
    """What ``build_packet(rng=random.Random(seed))`` draws: the ephemeral key, then the padding."""
    rng = random.Random(seed)
    return rng.randbytes(32), rng.randbytes(300 - 60 * (hops - 1) - 52)


# --- agreement with the reference --------------------------------------------------------------


@pytest.mark.parametrize("version", [VERSION_258, VERSION_259])
@pytest.mark.parametrize("hops", range(1, 6))
def test_build_packet_matches_the_spec_literal_reference(hops: int, version: int) -> None:
    route, _ = make_network(hops, seed=hops)
    delays = [123_456_789 * (i + 1) for i in range(hops)]
    message = b"reference message " * 3
    identifier = bytes(range(16))
    for seed in range(3):
        packet = build_packet(
            route,
            DESTINATION,
            message,
            delays_ns=delays,
            payload_size=300,
            identifier=identifier,
            version=version,
            rng=random.Random(seed),
        )
        x, padding = drawn_randomness(seed, hops)
        expected = ref_build(
            route,
            DESTINATION,
            ref_pad(message, 300),
            x=x,
            padding=padding,
            delays=delays,
            identifier=identifier,
            version=version,
        )
        assert packet == expected


@pytest.mark.parametrize("version", [VERSION_258, VERSION_259])
def test_surb_header_and_keys_match_the_reference(version: int) -> None:
    route, _ = make_network(4, seed=11)
    surb = build_surb(route, DESTINATION, delays_ns=[1, 2, 3, 4], version=version, rng=random.Random(5))
    x, padding = drawn_randomness(5, 4)
    _, hops = ref_key_schedule([node.public_key for node in route], x)
    plaintext = ref_pad(b"r", 60)
    expected = ref_build(
        route,
        DESTINATION,
        plaintext,
        x=x,
        padding=padding,
        delays=[1, 2, 3, 4],
        identifier=bytes(16),
        version=version,
    )
    assert surb.header == expected[:348]
    if version == VERSION_258:
        assert list(surb.payload_keys) == [hop.expanded[32:224] for hop in hops]
    else:
        assert list(surb.payload_keys) == [hop.expanded[32:48] for hop in hops]
    assert surb.use(b"r", payload_size=60) == expected


def test_hkdf_expansions_match_rfc5869_written_out() -> None:
    rng = random.Random(0)
    for _ in range(20):
        secret = rng.randbytes(32)
        assert expand_shared_secret(secret) == ref_hkdf(secret, salt=b"", info=INFO, length=288)
        seed = rng.randbytes(16)
        assert derive_payload_key(seed) == ref_hkdf(seed, salt=PAYLOAD_SALT, info=PAYLOAD_INFO, length=192)


def test_upstream_expanded_shared_secret_vector() -> None:
    """nymtech/sphinx ``results_in_same_values_as_old_implementation``.

    Upstream draws two X25519 secrets from ``ChaCha20Rng::from_seed([1; 32])`` (its keystream,
    zero nonce) and expands their shared secret; this pins the HKDF layout to the Rust crate.
    """
    stream = Cipher(algorithms.ChaCha20(bytes([1] * 32), bytes(16)), mode=None).encryptor().update(bytes(64))
    shared = ref_x25519(
        stream[32:64], X25519PrivateKey.from_private_bytes(stream[:32]).public_key().public_bytes_raw()
    )
    expanded = expand_shared_secret(shared)
    assert expanded[:16].hex() == "baea9871ca7cbfe4ad595b087ffbd6c8"
    assert expanded[16:32].hex() == "1cde11e32eb4aa072234b18e96898ede"
    assert expanded[32:224].hex() == (
        "d2d151f1fe7b24519b55732865d26108c4683d17a5bebfeccb450fe64664a1883558747651393ab5e866955defff9ccd"
        "00926e75893b66aa57faafcfc16b709af7dc6e87206a14980e84599af918b0281eb6c3d17c3b3ac9d1ff50976de29de8"
        "3080389f5aa8e53c6a0e32d7c6c8a8189fe0f07717f23d8136248cf57f9fe605348efe34a8ab8b64ce105edb44718d9f"
        "04e9bd90a4cab44ad64260b946bf9b12d2347b47e7e14f00c419d9e785bf607767b6c824d73ecb95d68b2046421e3f66"
    )
    assert expanded[224:256].hex() == "e340b8eb8c3ee8aceb2a3aa9f1fdf50288954a3006a59185be69dedaf8ac31bc"


def test_final_padding_is_the_random_bytes_drawn_not_zeros() -> None:
    for hops in (1, 4, 5):
        route, processors = make_network(hops, seed=2)
        last_private = [generate_keypair(rng) for rng in [random.Random(2)] for _ in range(hops)][-1][0]
        packet = build_packet(
            route, DESTINATION, b"m", delays_ns=[0] * hops, payload_size=100, rng=random.Random(9)
        )
        other = build_packet(
            route, DESTINATION, b"m", delays_ns=[0] * hops, payload_size=100, rng=random.Random(10)
        )
        assert other[:348] != packet[:348]
        for processor in processors[:-1]:
            result = processor.process(packet)
            assert isinstance(result, ForwardHop)
            packet = result.packet
        # decrypt the final routing block as the last hop does, and look at its padding
        expanded = ref_hkdf(ref_x25519(last_private, packet[:32]), salt=b"", info=INFO, length=288)
        plain = ref_xor(packet[48:348] + bytes(60), ref_rho(expanded[:16]))
        _, padding = drawn_randomness(9, hops)
        assert plain[0] == 2
        assert plain[52 : 300 - 60 * (hops - 1)] == padding
        assert len(padding) == 248 - 60 * (hops - 1)
        assert any(padding)


# --- processing of packets only the reference can make -----------------------------------------


def crafted(hops: int = 2, **overrides: object) -> tuple[bytes, list[SphinxProcessor]]:
    route, processors = make_network(hops, seed=21)
    x, padding = drawn_randomness(1, hops)
    arguments: dict[str, object] = {
        "x": x,
        "padding": padding,
        "delays": [0] * hops,
        "identifier": bytes(16),
        "version": VERSION_258,
    }
    plaintext = overrides.pop("plaintext", ref_pad(b"hi", 64))
    arguments.update(overrides)
    return ref_build(route, DESTINATION, plaintext, **arguments), processors  # type: ignore[arg-type]


def test_reference_packet_is_processed() -> None:
    packet, processors = crafted()
    forward = processors[0].process(packet)
    assert isinstance(forward, ForwardHop)
    final = processors[1].process(forward.packet)
    assert isinstance(final, FinalHop)
    assert final.message == b"hi"


@pytest.mark.parametrize("flag", [0, 3, 0xFF])
def test_unknown_forward_flag_is_a_sphinx_error(flag: int) -> None:
    packet, processors = crafted(forward_flag=flag)
    with pytest.raises(SphinxError, match="flag") as caught:
        processors[0].process(packet)
    assert not isinstance(caught.value, MacMismatch)


def test_unknown_final_flag_is_a_sphinx_error() -> None:
    packet, processors = crafted(hops=1, final_flag=1 + 4)
    with pytest.raises(SphinxError, match="flag"):
        processors[0].process(packet)


@pytest.mark.parametrize("field", [b"\x00\x01\x01", b"\x00\x00\x01", b"\x00\x01\x05", b"\x01\x01\x02"])
def test_unknown_version_is_a_sphinx_error(field: bytes) -> None:
    packet, processors = crafted(hops=1, version_field=field)
    with pytest.raises(SphinxError, match="version"):
        processors[0].process(packet)


def test_version_260_is_processed_like_259() -> None:
    """nymtech/sphinx ``version.rs``: SINGLE_SEED_SURB (260) hops derive keys from the seed as 259."""
    packet, processors = crafted(hops=3, version=VERSION_259, version_field=b"\x00\x01\x04")
    for processor in processors[:-1]:
        forward = processor.process(packet)
        assert isinstance(forward, ForwardHop)
        packet = forward.packet
    final = processors[-1].process(packet)
    assert isinstance(final, FinalHop)
    assert final.message == b"hi"


@pytest.mark.parametrize(
    "plaintext",
    [
        b"\x01" + bytes(15) + b"hi\x01" + bytes(45),  # leading zeros broken
        bytes(16) + b"no marker" + bytes(39),  # no 01 after the zeros
        bytes(64),
    ],
)
def test_bad_final_padding_is_a_sphinx_error(plaintext: bytes) -> None:
    packet, processors = crafted(hops=1, plaintext=plaintext)
    with pytest.raises(SphinxError, match="malformed payload"):
        processors[0].process(packet)


def test_low_order_alpha_is_a_sphinx_error_not_a_mac_failure() -> None:
    _, processors = make_network(1, seed=1)
    low_order_points = [bytes(32), (1).to_bytes(32, "little"), ((1 << 255) - 20).to_bytes(32, "little")]
    for alpha in low_order_points:
        with pytest.raises(SphinxError, match="low-order") as caught:
            processors[0].process(alpha + bytes(316 + 100))
        assert not isinstance(caught.value, MacMismatch)


# --- fixed vectors -----------------------------------------------------------------------------

VECTORS = {
    # (hops, version, size) -> sha256 of the packet built below
    (1, VERSION_258, "ACK"): "c099be37006eb3e657fc07ce9821d141d29c3f4efe86b73ebf259a4434c6fd65",
    (4, VERSION_258, "REGULAR"): "0d149a02149a625c1721b68e243c4232e3573bae9161764c35ea13ffb80af211",
    (5, VERSION_258, "ACK"): "b1c6868464ec15f10ef150fd7dd15784378fbdcce2106ad0fbdb5990d2a19836",
    (4, VERSION_259, "REGULAR"): "f5cdd28d3f848857589770f73f30b5b1efd0d438d7f38b84daca9fa351a18043",
    (3, VERSION_259, "ACK"): "8b216c9817ede3ce3f7107f1986fa9d32a86e88dbc1015a15b5b8876c05d738f",
}
SURB_VECTORS = {
    VERSION_258: "684db232ead4196d3383a02d4f53fd8525d27f33a8fad13a15f7331e56445986",
    VERSION_259: "5e76e401ecf51a7419b4c815a0a279e5d69aa0991e8113471a3a296114c36188",
}


def vector_packet(hops: int, version: int, size: PacketSize) -> bytes:
    route, _ = make_network(hops, seed=2024)
    return build_packet(
        route,
        b"\xd5" * 32,
        b"smolmix fixed vector"[: size.plaintext_size],
        delays_ns=[10**6 * (i + 1) for i in range(hops)],
        payload_size=size.payload_size,
        identifier=b"\x1d" * 16,
        version=version,
        rng=random.Random(42),
    )


@pytest.mark.parametrize(("hops", "version", "size"), list(VECTORS))
def test_fixed_packet_vectors(hops: int, version: int, size: str) -> None:
    packet = vector_packet(hops, version, PacketSize[size])
    assert hashlib.sha256(packet).hexdigest() == VECTORS[(hops, version, size)]


@pytest.mark.parametrize("version", list(SURB_VECTORS))
def test_fixed_surb_vectors(version: int) -> None:
    route, _ = make_network(4, seed=2024)
    surb = build_surb(route, b"\xd5" * 32, delays_ns=[7, 8, 9, 10], version=version, rng=random.Random(43))
    assert hashlib.sha256(surb.to_bytes()).hexdigest() == SURB_VECTORS[version]


def test_fixed_one_hop_ack_packet_in_full() -> None:
    """One complete packet written out, so a reader can diff bytes rather than digests."""
    packet = vector_packet(1, VERSION_258, PacketSize.ACK)
    assert packet.hex() == ONE_HOP_ACK_HEX


ONE_HOP_ACK_HEX = (
    "0923b8779358776832f461aefbdb00a639fa06751daa754195b1d947162f50308e3b248552f6a783d0b76c164db4e1a7"
    "59971ea5984415ee2a5c4a7e3f63091468cad841a019771579d1fac03d33a3c3f226ef87e97604618505581a6d984d4c"
    "f3398d39597e170672f4b01a3f47d6ea09e11fae344e7372af1b3da558f675f58bf9b32498aa73b974afa2abe9391c3e"
    "58e63fd1a0beb1e63ef7e5f26e1142c4f664d7e2f811841e910d8c3cb58317cfd5b609a606232538df0053b253ab5f23"
    "bb006eb2ccdcfe6effe5ea6e035401b4ef74602a822b3105f87fcc1f01d3075e4ef265e134e868f6768932be694fbc37"
    "26a652d247b25cc80c9940c92bda06cac67f791fcf83ec1af7f799d2dd75cc9ed6bcd37b90e37ca3fe4af579bb8aec9f"
    "3f1681443ea504f1b129e596703abd365a761d59bae98de060ba3b690bae294ad9c8555b9bbbf5e03627bda32557e561"
    "33dd428bdabd7d12a34da7a27474e7a6b002e1fb57b1340f88649c2b54beb3f3e0fb970c407bb91fcbda72a54f1f2d00"
    "a34a"
)
