"""A client's bounded queue of outgoing messages: ``scores`` are dropped first, updates never.

The sender task takes messages in order and writes them to the WebSocket; a client that reads slowly
makes the queue grow. Past ``limit`` messages the oldest queued ``scores`` message is dropped to make
room (or the new one, when no other is queued); onsets, offsets and errors are always kept. A client
that reads nothing at all would still grow the queue through updates: past ``hard_limit`` it is
:attr:`overflowed` and the connection closes it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]


class SendQueue:
    """FIFO of JSON messages with the drop rule above. Use from one event loop."""

    def __init__(self, limit: int, on_drop: Callable[[Message], Any] | None = None) -> None:
        self.limit = max(1, int(limit))
        self.hard_limit = 4 * self.limit
        self.on_drop = on_drop
        self.dropped = 0
        self._items: deque[Message] = deque()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def overflowed(self) -> bool:
        """True when even after dropping every ``scores`` message the queue is past its hard limit."""
        return len(self._items) > self.hard_limit

    def put(self, message: Message) -> None:
        """Queue ``message``, dropping ``scores`` (queued ones first) when the queue is full."""
        if len(self._items) >= self.limit:
            oldest = next((m for m in self._items if m.get("type") == "scores"), None)
            if oldest is not None:
                self._items.remove(oldest)
                self._drop(oldest)
            elif message.get("type") == "scores":
                self._drop(message)
                return
        self._items.append(message)
        self._ready.set()

    async def get(self) -> Message:
        """The next message (waits for one)."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def _drop(self, message: Message) -> None:
        self.dropped += 1
        if self.on_drop is not None:
            self.on_drop(message)
