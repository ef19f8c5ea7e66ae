"""Anonymous replies (spec §12): reply SURBs, sender tags, and the stores on both sides.

The *creator* (who sends Repliable messages) makes ReplySurbs — a 16-byte AES key plus a Sphinx
SURB to itself — and keeps each key, filed by its BLAKE3 digest, until a reply uses it. The
*replier* files received SURBs under the creator's sender tag and spends one per reply fragment,
keeping a reserve for asking the creator for more.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from smolmix_core.errors import RoutingAddressError, SphinxError, SurbError
from smolmix_core.mixnet.base58 import b58decode, b58encode
from smolmix_core.mixnet.encryption import REPLY_KEY_SIZE, reply_key_digest
from smolmix_core.mixnet.message import SENDER_TAG_SIZE
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.routing import NymNodeRoutingAddress
from smolmix_core.mixnet.sphinx import (
    HEADER_SIZE,
    MAX_PATH_LENGTH,
    NODE_ADDRESS_LENGTH,
    VERSION_258,
    VERSION_259,
    PacketSize,
    Surb,
    build_surb,
)
from smolmix_core.mixnet.sphinx.constants import PAYLOAD_KEY_SIZE
from smolmix_core.mixnet.topology import Node

_MAX_REPLY_SURB_SIZE = REPLY_KEY_SIZE + HEADER_SIZE + NODE_ADDRESS_LENGTH + MAX_PATH_LENGTH * PAYLOAD_KEY_SIZE


@dataclass(frozen=True, slots=True)
class ReplySurb:
    """``encryption_key(16) ‖ Sphinx SURB``: lets its holder send one packet back to the creator."""

    encryption_key: bytes
    surb: Surb

    def __post_init__(self) -> None:
        if len(self.encryption_key) != REPLY_KEY_SIZE:
            raise SurbError(f"a reply SURB key is {REPLY_KEY_SIZE} bytes, got {len(self.encryption_key)}")

    @classmethod
    def build(
        cls,
        route: Sequence[Node],
        destination: bytes,
        *,
        delays_ns: Sequence[int],
        rng: random.Random,
        legacy: bool = True,
    ) -> ReplySurb:
        """A SURB over ``route`` (mixes, then the creator's gateway) to ``destination`` (the creator)."""
        surb = build_surb(
            [node.route_node for node in route],
            destination,
            delays_ns=delays_ns,
            version=VERSION_258 if legacy else VERSION_259,
            rng=rng,
        )
        return cls(rng.randbytes(REPLY_KEY_SIZE), surb)

    @property
    def legacy(self) -> bool:
        return self.surb.version == VERSION_258

    @property
    def first_hop(self) -> NymNodeRoutingAddress:
        """Where to send the packet; like upstream, the bytes after the address are not inspected."""
        return NymNodeRoutingAddress.parse_prefix(self.surb.first_hop_address)[0]

    def to_bytes(self) -> bytes:
        return self.encryption_key + self.surb.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, legacy: bool = True) -> ReplySurb:
        """Parse; ``legacy`` selects Sphinx 258 key material (v1) over 259 seeds (v2).

        As upstream ``ReplySurb::from_bytes`` does, the first hop must be a routing address.
        """
        if len(data) <= REPLY_KEY_SIZE:
            raise SurbError("reply SURB too short")
        try:
            surb = Surb.from_bytes(
                bytes(data[REPLY_KEY_SIZE:]), version=VERSION_258 if legacy else VERSION_259
            )
            NymNodeRoutingAddress.parse_prefix(surb.first_hop_address)
        except (SphinxError, RoutingAddressError) as exc:
            raise SurbError(f"malformed reply SURB: {exc}") from None
        return cls(bytes(data[:REPLY_KEY_SIZE]), surb)

    def to_base58(self) -> str:
        return b58encode(self.to_bytes())

    @classmethod
    def from_base58(cls, text: str, *, legacy: bool = True) -> ReplySurb:
        try:
            raw = b58decode(text, max_size=_MAX_REPLY_SURB_SIZE)
        except ValueError as exc:
            raise SurbError(f"reply SURB text is not base58: {exc}") from None
        return cls.from_bytes(raw, legacy=legacy)

    def apply(self, plaintext: bytes, packet_size: PacketSize) -> bytes:
        """The Sphinx packet carrying ``plaintext`` (exactly the packet size's plaintext) to the creator."""
        if len(plaintext) != packet_size.plaintext_size:
            raise SurbError(
                f"a reply plaintext must be {packet_size.plaintext_size} bytes, got {len(plaintext)}"
            )
        return self.surb.use(plaintext, payload_size=packet_size.payload_size)


class SenderTags:
    """Our random 16-byte tag per recipient, so a recipient files all our SURBs together.

    Bounded LRU (``capacity`` recipients); a forgotten recipient gets a new tag next time.
    """

    def __init__(self, rng: random.Random, *, capacity: int = 10_000) -> None:
        self._rng = rng
        self._capacity = capacity
        self._tags: OrderedDict[Recipient, bytes] = OrderedDict()

    def tag_for(self, recipient: Recipient) -> bytes:
        tag = self._tags.get(recipient)
        if tag is None:
            tag = self._rng.randbytes(SENDER_TAG_SIZE)
            self._tags[recipient] = tag
            while len(self._tags) > self._capacity:
                self._tags.popitem(last=False)
        self._tags.move_to_end(recipient)
        return tag


class ReplyKeyStore:
    """The creator's reply keys by BLAKE3 digest; each is used once, or forgotten after ``max_age``.

    Bounded: beyond ``capacity`` keys the oldest are forgotten (drop-and-count ``evicted``).
    """

    def __init__(self, *, max_age: float = 24 * 3600.0, capacity: int = 100_000) -> None:
        self.max_age = max_age
        self.capacity = capacity
        self._keys: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()
        self.evicted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._keys)

    def insert(self, key: bytes, now: float) -> None:
        self._keys[reply_key_digest(key)] = (key, now)
        while len(self._keys) > self.capacity:
            self._keys.popitem(last=False)
            self.evicted += 1

    def pop(self, digest: bytes) -> bytes | None:
        entry = self._keys.pop(bytes(digest), None)
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        oldest = next(iter(self._keys.values()), None)
        return None if oldest is None else oldest[1] + self.max_age

    def expire(self, now: float) -> None:
        while self._keys:
            digest, (_, created) = next(iter(self._keys.items()))
            if created + self.max_age > now:
                break
            del self._keys[digest]
            self.expired += 1


@dataclass(eq=False)
class _TagSurbs:
    surbs: deque[tuple[ReplySurb, float]] = field(default_factory=deque)
    pending_reception: int = 0
    last_received: float = 0.0
    last_request: float | None = None


class ReceivedSurbStore:
    """The replier's SURBs per sender tag, with the supply rules of nym-client's reply controller.

    * ``reserve`` SURBs per tag are spent only on SURB requests (``take(..., use_reserve=True)``).
    * At most ``max_per_tag`` are held (the oldest are dropped when more arrive) and requests stop
      once held plus requested reach it; SURBs older than ``max_age`` are discarded.
    * At most ``max_tags`` tags are tracked; the least recently active is forgotten.
    """

    def __init__(
        self,
        *,
        reserve: int = 10,
        max_per_tag: int = 200,
        min_request: int = 10,
        max_request: int = 100,
        max_age: float = 12 * 3600.0,
        max_tags: int = 10_000,
    ) -> None:
        self.reserve = reserve
        self.max_per_tag = max_per_tag
        self.min_request = min_request
        self.max_request = max_request
        self.max_age = max_age
        self.max_tags = max_tags
        self._tags: OrderedDict[bytes, _TagSurbs] = OrderedDict()
        self.dropped_full = 0
        self.expired = 0

    def knows(self, tag: bytes) -> bool:
        return tag in self._tags

    def tags(self) -> list[bytes]:
        return list(self._tags)

    def available(self, tag: bytes) -> int:
        entry = self._tags.get(tag)
        return 0 if entry is None else len(entry.surbs)

    def pending_reception(self, tag: bytes) -> int:
        entry = self._tags.get(tag)
        return 0 if entry is None else entry.pending_reception

    def last_received(self, tag: bytes) -> float | None:
        entry = self._tags.get(tag)
        return None if entry is None else entry.last_received

    def last_request(self, tag: bytes) -> float | None:
        entry = self._tags.get(tag)
        return None if entry is None else entry.last_request

    def insert(self, tag: bytes, surbs: Iterable[ReplySurb], now: float, *, requested: bool = False) -> int:
        """File SURBs under ``tag``; ``requested`` ones count down the outstanding request."""
        entry = self._entry(tag)
        count = 0
        for surb in surbs:
            entry.surbs.append((surb, now))
            count += 1
        while len(entry.surbs) > self.max_per_tag:
            entry.surbs.popleft()
            self.dropped_full += 1
        if requested:
            entry.pending_reception = max(0, entry.pending_reception - count)
        entry.last_received = now
        return count

    def _entry(self, tag: bytes) -> _TagSurbs:
        entry = self._tags.get(tag)
        if entry is None:
            entry = self._tags[tag] = _TagSurbs()
            while len(self._tags) > self.max_tags:
                self._tags.popitem(last=False)
        self._tags.move_to_end(tag)
        return entry

    def spendable(self, tag: bytes, *, use_reserve: bool = False) -> int:
        available = self.available(tag)
        return available if use_reserve else max(0, available - self.reserve)

    def take(self, tag: bytes, count: int, *, use_reserve: bool = False) -> list[ReplySurb]:
        """Up to ``count`` SURBs, oldest first, never dipping into the reserve unless told to."""
        entry = self._tags.get(tag)
        if entry is None:
            return []
        count = min(count, self.spendable(tag, use_reserve=use_reserve))
        return [entry.surbs.popleft()[0] for _ in range(count)]

    def give_back(self, tag: bytes, surbs: Iterable[ReplySurb], now: float) -> None:
        """Return unused SURBs (their lane was closed) to the front of the queue."""
        entry = self._entry(tag)
        entry.surbs.extendleft((surb, now) for surb in reversed(list(surbs)))
        while len(entry.surbs) > self.max_per_tag:
            entry.surbs.pop()
            self.dropped_full += 1

    def should_request(self, tag: bytes, queued: int) -> bool:
        """More are needed when queued work plus the reserve exceeds what is held and on its way."""
        held = self.available(tag) + self.pending_reception(tag)
        return held < self.max_per_tag and held < queued + self.reserve

    def request_size(self, queued: int) -> int:
        return min(self.max_request, max(queued, self.min_request))

    def note_request(self, tag: bytes, amount: int, now: float) -> None:
        entry = self._entry(tag)
        entry.pending_reception += amount
        entry.last_request = now

    def reset_pending(self, tag: bytes) -> None:
        entry = self._tags.get(tag)
        if entry is not None:
            entry.pending_reception = 0

    def next_deadline(self) -> float | None:
        oldest = [entry.surbs[0][1] for entry in self._tags.values() if entry.surbs]
        return min(oldest) + self.max_age if oldest else None

    def expire(self, now: float) -> None:
        for entry in self._tags.values():
            while entry.surbs and entry.surbs[0][1] + self.max_age <= now:
                entry.surbs.popleft()
                self.expired += 1
