"""The byte-buffer types every codec accepts."""

from __future__ import annotations

from typing import TypeAlias

BytesLike: TypeAlias = bytes | bytearray | memoryview
"""Parsers take any of these (a ``memoryview`` must have byte items); they return ``bytes``."""
