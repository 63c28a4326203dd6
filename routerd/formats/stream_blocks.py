"""Block bookkeeping shared by stream decoders whose upstream has no explicit block events.

OpenAI chunks and Gemini chunks only carry deltas; canonical events need numbered blocks that
open and close. A decoder subclasses `BlockTracker` to open one block at a time and close it.
"""

from __future__ import annotations

from routerd.formats.canonical import BlockKind, BlockStop, StreamEvent


class BlockTracker:
    def __init__(self) -> None:
        self._open: tuple[BlockKind, int] | None = None  # (kind, canonical index)
        self._next = 0

    def _open_block(self, kind: BlockKind) -> int:
        index = self._next
        self._next += 1
        self._open = (kind, index)
        return index

    def _close(self) -> list[StreamEvent]:
        if self._open is None:
            return []
        index = self._open[1]
        self._open = None
        return [BlockStop(index=index)]
