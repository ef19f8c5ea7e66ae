"""Sphinx packets in pure Python (sans-I/O): build, process, reply blocks, Lioness.

Byte-for-byte the format of nymtech/sphinx versions 258 and 259 (spec ``mixnet.md`` §2–§5, §12).
"""

from smolmix_core.mixnet.sphinx.constants import (
    HEADER_SIZE,
    IDENTIFIER_LENGTH,
    MAX_PATH_LENGTH,
    NODE_ADDRESS_LENGTH,
    PAYLOAD_OVERHEAD,
    VERSION_258,
    VERSION_259,
    PacketSize,
)
from smolmix_core.mixnet.sphinx.crypto import generate_keypair
from smolmix_core.mixnet.sphinx.lioness import lioness_decrypt, lioness_encrypt
from smolmix_core.mixnet.sphinx.packet import build_packet
from smolmix_core.mixnet.sphinx.processor import FinalHop, ForwardHop, SphinxProcessor
from smolmix_core.mixnet.sphinx.replay import ReplayFilter
from smolmix_core.mixnet.sphinx.route import RouteNode
from smolmix_core.mixnet.sphinx.surb import Surb, build_surb

__all__ = [
    "HEADER_SIZE",
    "IDENTIFIER_LENGTH",
    "MAX_PATH_LENGTH",
    "NODE_ADDRESS_LENGTH",
    "PAYLOAD_OVERHEAD",
    "VERSION_258",
    "VERSION_259",
    "FinalHop",
    "ForwardHop",
    "PacketSize",
    "ReplayFilter",
    "RouteNode",
    "SphinxProcessor",
    "Surb",
    "build_packet",
    "build_surb",
    "generate_keypair",
    "lioness_decrypt",
    "lioness_encrypt",
]
