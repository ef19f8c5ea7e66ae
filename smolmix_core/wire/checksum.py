"""The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-header sums.

No per-word loop: a buffer read as one big-endian integer is congruent, modulo 0xFFFF, to the sum
of its 16-bit words (because 2**16 ≡ 1), so ``int.from_bytes`` and one ``%`` give the
one's-complement sum in C. An odd-length buffer is padded with a zero byte, i.e. shifted left by 8.
The only case the congruence cannot see is "all words zero" versus "sum ≡ 0 but nonzero": the
first sums to 0 (checksum 0xFFFF), the second to 0xFFFF (checksum 0), exactly as RFC 1071 does.
"""

from __future__ import annotations

from smolmix_core.wire._types import BytesLike

_MODULUS = 0xFFFF


def word_sum(*parts: BytesLike) -> int:
    """An integer congruent (mod 0xFFFF) to the 16-bit word sum of the concatenated ``parts``.

    Parts need not be even-length; each is weighted by where it lands in the concatenation, so
    nothing is copied. The result is zero only if every byte is zero.
    """
    total = 0
    position = 0
    for part in parts:
        position += len(part)
        value = int.from_bytes(part, "big")
        total += (value << 8) if position & 1 else value
    return total


def buffer_remainder(data: BytesLike) -> int:
    """The word sum of one buffer modulo 0xFFFF: the form every codec's hot path adds up.

    Reducing before the odd-length shift and before adding the header terms keeps every later
    step on small integers (each operation on a big one copies it). A reduced sum can be 0 for
    nonzero data, so use it only where another term (a pseudo-header) makes the total nonzero.
    """
    remainder = int.from_bytes(data, "big") % _MODULUS
    return remainder << 8 if len(data) & 1 else remainder


def pseudo_header_sum(src: bytes, dst: bytes, protocol: int, length: int) -> int:
    """The word sum of the IPv4 (RFC 9293 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header.

    Both layouts reduce to ``src + dst + protocol + length`` modulo 0xFFFF, so one function serves
    both families; ``length`` is the upper-layer length (TCP header plus data, UDP length, …).
    The addresses are even-length, so reading ``src + dst`` as one integer sums them both.
    """
    return int.from_bytes(src + dst, "big") + protocol + length


def finish_checksum(total: int) -> int:
    """The checksum field value (one's complement of the folded sum) for a ``word_sum`` result."""
    remainder = total % _MODULUS
    if remainder:
        return _MODULUS - remainder
    return 0 if total else 0xFFFF


def checksum_ok(total: int) -> bool:
    """True if a word sum taken over data *including* its checksum field verifies (folds to -0)."""
    return total % _MODULUS == 0 and total != 0


def transport_checksum_ok(data: BytesLike, src: bytes, dst: bytes, protocol: int) -> bool:
    """True if the TCP/UDP/ICMPv6 message ``data`` (checksum field included) verifies.

    ``protocol`` is nonzero, so the true sum is too and "≡ 0" alone means it folds to -0.
    """
    return (buffer_remainder(data) + pseudo_header_sum(src, dst, protocol, len(data))) % _MODULUS == 0


def internet_checksum(*parts: BytesLike) -> int:
    """The RFC 1071 checksum over the concatenation of ``parts`` (0 means it verifies)."""
    return finish_checksum(word_sum(*parts))


def transport_checksum(src: bytes, dst: bytes, protocol: int, *parts: BytesLike) -> int:
    """The TCP/UDP/ICMPv6 checksum of ``parts`` (the whole upper-layer message) and its pseudo-header."""
    length = sum(len(part) for part in parts)
    return finish_checksum(pseudo_header_sum(src, dst, protocol, length) + word_sum(*parts))
