"""Remembering replay tags so that a hop processes each packet once."""

from __future__ import annotations

from smolmix_core.mixnet.sphinx.constants import REPLAY_TAG_SIZE


class ReplayFilter:
    """Replay tags seen recently, in two rotating generations; memory is bounded by ``capacity`` tags.

    Policy: a new tag goes into the current generation. When that holds ``capacity // 2`` tags,
    the previous generation is forgotten and the current one takes its place. So the most recent
    ``capacity // 2`` tags are always remembered and never more than ``capacity``; a packet replayed
    after that many newer ones is not detected. There are no false positives. Nym pairs replay
    detection with Sphinx key rotation: give each key its own filter and drop it with the key.
    Each remembered tag costs about 100 bytes.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        if capacity < 2:
            raise ValueError("a replay filter needs a capacity of at least 2 tags")
        self.capacity = capacity
        self._generation_size = capacity // 2
        self._current: set[bytes] = set()
        self._previous: set[bytes] = set()

    def check_and_add(self, tag: bytes) -> bool:
        """True if ``tag`` is new (and now remembered), False if it was seen within the window."""
        if len(tag) != REPLAY_TAG_SIZE:
            raise ValueError(f"a replay tag has {REPLAY_TAG_SIZE} bytes, not {len(tag)}")
        if tag in self._current or tag in self._previous:
            return False
        if len(self._current) >= self._generation_size:
            self._previous = self._current
            self._current = set()
        self._current.add(tag)
        return True

    def __contains__(self, tag: object) -> bool:
        return tag in self._current or tag in self._previous

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def clear(self) -> None:
        """Forget every tag (for example after a key rotation)."""
        self._current = set()
        self._previous = set()
