"""The whole simulation engine: a heap of (time, sequence, event).

The sequence number makes events at the same time fire in the order they were
scheduled, so a run is a pure function of its inputs (as SimPy's core).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

Handler = Callable[[float], None]


@dataclass(order=True, slots=True)
class _Entry:
    time: float
    seq: int
    handler: Handler = field(compare=False)


class Engine:
    """Runs handlers in time order. Handlers may schedule more events (never in the past)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[_Entry] = []
        self._seq = itertools.count()

    def at(self, time: float, handler: Handler) -> None:
        if time < self.now:
            raise ValueError(f"event at {time} is before now ({self.now})")
        heapq.heappush(self._heap, _Entry(time, next(self._seq), handler))

    def peek(self) -> float | None:
        return self._heap[0].time if self._heap else None

    def step(self) -> None:
        e = heapq.heappop(self._heap)
        self.now = e.time
        e.handler(e.time)

    def run(self, until: float | None = None) -> None:
        while self._heap and (until is None or self._heap[0].time <= until):
            self.step()

    def __len__(self) -> int:
        return len(self._heap)
