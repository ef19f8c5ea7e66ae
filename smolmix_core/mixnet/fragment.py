"""Fragments: a padded message cut into Sphinx-sized pieces, and put back together (spec §6).

A fragment is ``header ‖ payload``. Unlinked headers are 7 bytes; a linked header (10 bytes)
points from fragment 1 to the previous set or from fragment 255/255 to the next one, so a
message of any length becomes a chain of sets of at most 255 fragments. Every fragment the
sender produces has the same serialized size (the padding makes them full), so packets are
indistinguishable by length.
"""

from __future__ import annotations

import random
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

from smolmix_core.errors import FragmentError

UNLINKED_HEADER_SIZE = 7
LINKED_HEADER_SIZE = 10
MAX_FRAGMENTS_PER_SET = 255
FRAGMENT_ID_SIZE = 5
_FLAG = 0x8000_0000
_MAX_SET_ID = 0x7FFF_FFFF


@dataclass(frozen=True, slots=True, order=True)
class FragmentIdentifier:
    """``set_id i32 BE ‖ position u8``: what a SURB-ACK carries back to the sender."""

    set_id: int
    position: int

    def to_bytes(self) -> bytes:
        return struct.pack(">iB", self.set_id, self.position)

    @classmethod
    def from_bytes(cls, data: bytes) -> FragmentIdentifier:
        if len(data) != FRAGMENT_ID_SIZE:
            raise FragmentError(f"a fragment identifier is {FRAGMENT_ID_SIZE} bytes, got {len(data)}")
        set_id, position = struct.unpack(">iB", data)
        if set_id < 0:
            raise FragmentError(f"fragment identifier has a negative set id {set_id}")
        return cls(set_id, position)


COVER_FRAGMENT_ID = FragmentIdentifier(0, 0)


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """Position of a fragment in its set and, at the set's edges, the neighbouring set."""

    set_id: int
    total: int
    current: int
    previous_set_id: int | None = None
    next_set_id: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.set_id <= _MAX_SET_ID:
            raise FragmentError(f"fragment set id {self.set_id} outside (0, 2^31)")
        if not 1 <= self.current <= self.total <= MAX_FRAGMENTS_PER_SET:
            raise FragmentError(f"fragment {self.current} of {self.total} is not a valid position")
        if self.previous_set_id is not None and self.next_set_id is not None:
            raise FragmentError("a fragment links to one neighbouring set at most")
        if self.previous_set_id is not None:
            self._check_link(self.previous_set_id)
            if self.current != 1:
                raise FragmentError("only fragment 1 may link to the previous set")
        if self.next_set_id is not None:
            self._check_link(self.next_set_id)
            if not self.current == self.total == MAX_FRAGMENTS_PER_SET:
                raise FragmentError("only fragment 255 of 255 may link to the next set")

    def _check_link(self, linked: int) -> None:
        if not 0 < linked <= _MAX_SET_ID or linked == self.set_id:
            raise FragmentError(f"linked set id {linked} is invalid for set {self.set_id}")

    @property
    def is_linked(self) -> bool:
        return self.previous_set_id is not None or self.next_set_id is not None

    @property
    def size(self) -> int:
        return LINKED_HEADER_SIZE if self.is_linked else UNLINKED_HEADER_SIZE

    def to_bytes(self) -> bytes:
        prefix = struct.pack(">IBB", self.set_id | _FLAG, self.total, self.current)
        linked = self.previous_set_id if self.previous_set_id is not None else self.next_set_id
        if linked is None:
            return prefix + b"\x00"
        return prefix + struct.pack(">I", linked | _FLAG)

    @classmethod
    def parse(cls, data: bytes) -> tuple[FragmentHeader, int]:
        """Parse a header at the start of ``data``; returns it and its size."""
        if len(data) < UNLINKED_HEADER_SIZE:
            raise FragmentError(f"fragment header needs {UNLINKED_HEADER_SIZE} bytes, got {len(data)}")
        flagged_id, total, current = struct.unpack_from(">IBB", data)
        if not flagged_id & _FLAG:
            raise FragmentError("fragment header flag bit is not set")
        set_id = flagged_id & _MAX_SET_ID
        if data[6] == 0:
            return cls(set_id, total, current), UNLINKED_HEADER_SIZE
        if len(data) < LINKED_HEADER_SIZE:
            raise FragmentError(f"linked fragment header needs {LINKED_HEADER_SIZE} bytes, got {len(data)}")
        (flagged_link,) = struct.unpack_from(">I", data, 6)
        if not flagged_link & _FLAG:
            raise FragmentError("linked set id flag bit is not set")
        linked = flagged_link & _MAX_SET_ID
        if current == 1:
            return cls(set_id, total, current, previous_set_id=linked), LINKED_HEADER_SIZE
        return cls(set_id, total, current, next_set_id=linked), LINKED_HEADER_SIZE


@dataclass(frozen=True, slots=True)
class Fragment:
    """A header and a slice of the padded message."""

    header: FragmentHeader
    payload: bytes

    @property
    def identifier(self) -> FragmentIdentifier:
        return FragmentIdentifier(self.header.set_id, self.header.current)

    def to_bytes(self) -> bytes:
        return self.header.to_bytes() + self.payload

    @classmethod
    def from_bytes(cls, data: bytes) -> Fragment:
        header, used = FragmentHeader.parse(data)
        return cls(header, bytes(data[used:]))


# --- splitting -------------------------------------------------------------------------------


def _unlinked_capacity(fragment_size: int) -> int:
    return fragment_size - UNLINKED_HEADER_SIZE


def _linked_capacity(fragment_size: int) -> int:
    return fragment_size - LINKED_HEADER_SIZE


def _full_set(fragment_size: int) -> int:
    return MAX_FRAGMENTS_PER_SET * _unlinked_capacity(fragment_size)


def _edge_set(fragment_size: int) -> int:
    """Payload of a set linked at one end (the first set of a chain carries exactly this)."""
    return _full_set(fragment_size) - (LINKED_HEADER_SIZE - UNLINKED_HEADER_SIZE)


def _middle_set(fragment_size: int) -> int:
    return _full_set(fragment_size) - 2 * (LINKED_HEADER_SIZE - UNLINKED_HEADER_SIZE)


def number_of_sets(message_len: int, fragment_size: int) -> int:
    if message_len <= _full_set(fragment_size):
        return 1
    edge = _edge_set(fragment_size)
    if message_len <= 2 * edge:
        return 2
    return -(-(message_len - 2 * edge) // _middle_set(fragment_size)) + 2


def number_of_fragments(message_len: int, fragment_size: int) -> tuple[int, int]:
    """How many fragments carry ``message_len`` bytes, and the free bytes left in the last one."""
    unlinked = _unlinked_capacity(fragment_size)
    linked = _linked_capacity(fragment_size)
    sets = number_of_sets(message_len, fragment_size)
    if sets == 1:
        count = max(1, -(-message_len // unlinked))
        return count, count * unlinked - message_len
    before_last = (sets - 1) * MAX_FRAGMENTS_PER_SET
    linked_before_last = 2 * sets - 3
    last_set_len = message_len - linked_before_last * linked - (before_last - linked_before_last) * unlinked
    if last_set_len <= linked:
        return before_last + 1, linked - last_set_len
    tail = last_set_len - linked
    tail_count = -(-tail // unlinked)
    return before_last + 1 + tail_count, tail_count * unlinked - tail


def generate_set_id(rng: random.Random) -> int:
    """A set id in (0, 2^31 - 1]; 0 is the cover id and never used for data."""
    return rng.randrange(1, _MAX_SET_ID + 1)


def split_into_sets(message: bytes, fragment_size: int, rng: random.Random) -> list[list[Fragment]]:
    """Cut a (padded) message into linked sets of fragments of ``fragment_size`` bytes at most."""
    if fragment_size <= LINKED_HEADER_SIZE:
        raise FragmentError(f"fragment size {fragment_size} leaves no room for data")
    sets = number_of_sets(len(message), fragment_size)
    ids = _distinct_ids(rng, sets)
    if sets == 1:
        return [_split_set(message, ids[0], None, None, fragment_size)]
    result: list[list[Fragment]] = []
    start = 0
    for index, set_id in enumerate(ids):
        first, last = index == 0, index == sets - 1
        length = _edge_set(fragment_size) if first or last else _middle_set(fragment_size)
        chunk = message[start : start + length]
        start += len(chunk)
        previous = None if first else ids[index - 1]
        following = None if last else ids[index + 1]
        result.append(_split_set(chunk, set_id, previous, following, fragment_size))
    return result


def _distinct_ids(rng: random.Random, count: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        candidate = generate_set_id(rng)
        if candidate not in ids:
            ids.append(candidate)
    return ids


def _split_set(
    chunk: bytes, set_id: int, previous: int | None, following: int | None, fragment_size: int
) -> list[Fragment]:
    unlinked = _unlinked_capacity(fragment_size)
    linked = _linked_capacity(fragment_size)
    sizes: list[int] = []
    remaining = len(chunk)
    position = 1
    while True:
        capacity = unlinked
        if (position == 1 and previous is not None) or (
            position == MAX_FRAGMENTS_PER_SET and following is not None
        ):
            capacity = linked
        take = min(capacity, remaining)
        sizes.append(take)
        remaining -= take
        position += 1
        if remaining == 0 and (following is None or position > MAX_FRAGMENTS_PER_SET):
            break
        if position > MAX_FRAGMENTS_PER_SET:
            raise FragmentError("message chunk does not fit in one set")
    total = len(sizes)
    fragments = []
    offset = 0
    for index, size in enumerate(sizes, start=1):
        header = FragmentHeader(
            set_id,
            total,
            index,
            previous_set_id=previous if index == 1 else None,
            next_set_id=following if index == total and following is not None else None,
        )
        fragments.append(Fragment(header, chunk[offset : offset + size]))
        offset += size
    return fragments


# --- reassembly ------------------------------------------------------------------------------


@dataclass(eq=False)
class _Chain:
    """The sets known to belong to one message; they live and expire together."""

    set_ids: set[int]
    last_activity: float
    size: int = 0


@dataclass(eq=False)
class _SetBuffer:
    total: int
    slots: list[bytes | None]
    chain: _Chain
    received: int = 0
    previous_set_id: int | None = None
    next_set_id: int | None = None
    named_unseen: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.received == self.total


class Reassembler:
    """Puts fragments back into messages, tolerating reordering, duplicates and loss.

    Memory is bounded: a message's sets expire ``timeout`` seconds after its last fragment
    arrived; when more than ``max_bytes`` of payload or ``max_sets`` sets are held, the least
    recently active messages are evicted (drop-and-count). Ids of recently completed sets are
    remembered (``completed_memory`` of them, for ``completed_ttl`` seconds) so that late
    duplicates — retransmissions whose ack was lost — do not start a new, never-finished set.
    """

    def __init__(
        self,
        *,
        timeout: float = 300.0,
        max_bytes: int = 64 * 1024 * 1024,
        max_sets: int = 4096,
        completed_memory: int = 65536,
        completed_ttl: float = 900.0,
    ) -> None:
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_sets = max_sets
        self.completed_memory = completed_memory
        self.completed_ttl = completed_ttl
        self._sets: dict[int, _SetBuffer] = {}
        self._chains: OrderedDict[int, _Chain] = OrderedDict()  # keyed by id(); oldest activity first
        self._named: dict[int, int] = {}  # a set id seen only as a link -> the set that named it
        self._completed: OrderedDict[int, float] = OrderedDict()
        self._bytes = 0
        self.counters: dict[str, int] = {
            "fragments_accepted": 0,
            "fragments_duplicate": 0,
            "fragments_late": 0,
            "fragments_inconsistent": 0,
            "messages_completed": 0,
            "messages_expired": 0,
            "messages_evicted": 0,
        }

    @property
    def held_bytes(self) -> int:
        return self._bytes

    @property
    def held_sets(self) -> int:
        return len(self._sets)

    def add(self, fragment: Fragment, now: float) -> bytes | None:
        """Store a fragment; returns the whole (still padded) message once every set is in."""
        header = fragment.header
        if header.set_id in self._completed:
            self.counters["fragments_late"] += 1
            return None
        buffer = self._sets.get(header.set_id)
        if buffer is None:
            buffer = self._new_set(header.set_id, header.total, now)
        elif buffer.total != header.total or not self._links_agree(buffer, header):
            self.counters["fragments_inconsistent"] += 1
            return None
        self._record_links(header.set_id, buffer, header)
        slot = header.current - 1
        previous = buffer.slots[slot]
        if previous is None:
            buffer.received += 1
            self.counters["fragments_accepted"] += 1
        else:
            self.counters["fragments_duplicate"] += 1
            self._account(buffer.chain, -len(previous))
        buffer.slots[slot] = fragment.payload
        self._account(buffer.chain, len(fragment.payload))
        self._touch(buffer.chain, now)
        if buffer.complete:
            message = self._try_complete(header.set_id, now)
            if message is not None:
                return message
        self._enforce_caps()
        return None

    def _new_set(self, set_id: int, total: int, now: float) -> _SetBuffer:
        chain = _Chain({set_id}, now)
        self._chains[id(chain)] = chain
        buffer = _SetBuffer(total, [None] * total, chain)
        self._sets[set_id] = buffer
        namer = self._named.pop(set_id, None)
        if namer is not None and namer in self._sets:
            self._merge(self._sets[namer].chain, chain)
        return buffer

    @staticmethod
    def _links_agree(buffer: _SetBuffer, header: FragmentHeader) -> bool:
        return (
            header.previous_set_id is None
            or buffer.previous_set_id is None
            or header.previous_set_id == buffer.previous_set_id
        ) and (
            header.next_set_id is None
            or buffer.next_set_id is None
            or header.next_set_id == buffer.next_set_id
        )

    def _record_links(self, set_id: int, buffer: _SetBuffer, header: FragmentHeader) -> None:
        if header.previous_set_id is not None:
            buffer.previous_set_id = header.previous_set_id
        if header.next_set_id is not None:
            buffer.next_set_id = header.next_set_id
        for linked in (header.previous_set_id, header.next_set_id):
            if linked is None:
                continue
            other = self._sets.get(linked)
            if other is not None:
                self._merge(other.chain, buffer.chain)
            elif linked not in self._completed and linked not in self._named:
                self._named[linked] = set_id
                buffer.named_unseen.append(linked)

    def _merge(self, a: _Chain, b: _Chain) -> None:
        if a is b:
            return
        keep, gone = (a, b) if len(a.set_ids) >= len(b.set_ids) else (b, a)
        for set_id in gone.set_ids:
            self._sets[set_id].chain = keep
        keep.set_ids |= gone.set_ids
        keep.size += gone.size
        keep.last_activity = max(keep.last_activity, gone.last_activity)
        del self._chains[id(gone)]
        self._chains.move_to_end(id(keep))

    def _account(self, chain: _Chain, delta: int) -> None:
        chain.size += delta
        self._bytes += delta

    def _touch(self, chain: _Chain, now: float) -> None:
        chain.last_activity = max(chain.last_activity, now)
        self._chains.move_to_end(id(chain))

    def _try_complete(self, set_id: int, now: float) -> bytes | None:
        head = set_id
        steps = 0
        while (buffer := self._sets.get(head)) is not None and buffer.complete:
            if buffer.previous_set_id is None:
                break
            head = buffer.previous_set_id
            steps += 1
            if steps > len(self._sets):
                return None
        else:
            return None
        order: list[int] = []
        current: int | None = head
        while current is not None:
            buffer = self._sets.get(current)
            if buffer is None or not buffer.complete or len(order) > len(self._sets):
                return None
            if order and buffer.previous_set_id != order[-1]:
                return None
            order.append(current)
            current = buffer.next_set_id
        chain = self._sets[head].chain
        if set(order) != chain.set_ids:
            self.counters["fragments_inconsistent"] += 1
        message = b"".join(slot for member in order for slot in self._sets[member].slots if slot is not None)
        self._drop_chain(chain)
        for member in order:
            self._remember_completed(member, now)
        self.counters["messages_completed"] += 1
        return message

    def _remember_completed(self, set_id: int, now: float) -> None:
        self._completed[set_id] = now
        self._completed.move_to_end(set_id)
        while len(self._completed) > self.completed_memory:
            self._completed.popitem(last=False)

    def _drop_chain(self, chain: _Chain) -> None:
        for set_id in chain.set_ids:
            buffer = self._sets.pop(set_id)
            for named in buffer.named_unseen:
                if self._named.get(named) == set_id:
                    del self._named[named]
        self._bytes -= chain.size
        del self._chains[id(chain)]

    def _enforce_caps(self) -> None:
        """Evict the least recently active messages (the one just touched goes last)."""
        while self._chains and (self._bytes > self.max_bytes or len(self._sets) > self.max_sets):
            self._drop_chain(next(iter(self._chains.values())))
            self.counters["messages_evicted"] += 1

    def next_deadline(self) -> float | None:
        """When the least recently active incomplete message expires."""
        oldest = next(iter(self._chains.values()), None)
        return None if oldest is None else oldest.last_activity + self.timeout

    def expire(self, now: float) -> int:
        """Drop messages idle for ``timeout`` and forget old completed ids; returns how many dropped."""
        dropped = 0
        while self._chains:
            oldest = next(iter(self._chains.values()))
            if oldest.last_activity + self.timeout > now:
                break
            self._drop_chain(oldest)
            dropped += 1
        self.counters["messages_expired"] += dropped
        while self._completed:
            set_id, completed_at = next(iter(self._completed.items()))
            if completed_at + self.completed_ttl > now:
                break
            del self._completed[set_id]
        return dropped
