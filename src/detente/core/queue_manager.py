"""Pending workloads, kept in queue order (Kueue's queue manager; it knows no capacity).

Order is the profile's `QueueSort` key, fixed at insertion; a new sort (e.g. after
priorities are recomputed) is `resort()`. Removal is lazy: removed names are
dropped the next time the order is read, so a cycle that admits k of n workloads
costs O(n) once, not O(k·n).
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable

from detente.core.framework import PriorityContext, QueueSort
from detente.core.workload import Workload


class QueueManager:
    def __init__(
        self,
        sort: QueueSort,
        workloads: Iterable[Workload] = (),
        ctx: PriorityContext | None = None,
        unsorted: bool = False,
    ) -> None:
        """With ``unsorted``, ``workloads`` are queued without computing their keys: the
        caller sorts them once with the real context (`resort`) before reading the
        order (reading it first sorts them with ``ctx``)."""
        self.sort = sort
        #: What priorities were last computed from (see `resort`).
        self.ctx = ctx or PriorityContext()
        self._by_name: dict[str, Workload] = {}
        self._order: list[tuple[tuple[Hashable, ...], Workload]] = []
        self._stale = 0
        #: Inadmissible workloads (Kueue's inadmissible set, kube's unschedulable queue):
        #: left out of `active` until an event frees capacity (`unpark_all`).
        self._parked: set[str] = set()
        self._unsorted = unsorted
        if unsorted:
            self._by_name.update((w.name, w) for w in workloads)
            return
        for w in workloads:
            self.add(w)

    def __len__(self) -> int:
        return len(self._by_name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def workloads(self) -> list[Workload]:
        """Every queued workload, in no particular order (no sort is needed for it)."""
        return list(self._by_name.values())

    def get(self, name: str) -> Workload | None:
        return self._by_name.get(name)

    def add(self, w: Workload) -> None:
        """Queues ``w`` (active); re-adding a name replaces the old entry."""
        if self._unsorted:
            self.resort()
        if w.name in self._by_name:
            self.remove(w.name)
        self._by_name[w.name] = w
        key = self.sort.sort_key(w, self.ctx)
        at = bisect.bisect_right(self._order, key, key=lambda e: e[0])
        if self._parked and any(e[1].name in self._parked for e in self._order[at:]):
            # It goes ahead of parked workloads, whose standing reservations were made
            # without it: the next cycle is a full one, in order (Slurm's scheduler
            # starts a higher-priority arrival on free nodes whatever backfill planned).
            self._parked.clear()
        self._order.insert(at, (key, w))

    def remove(self, name: str) -> Workload | None:
        w = self._by_name.pop(name, None)
        if w is not None:
            self._stale += 1
            self._parked.discard(name)
        return w

    def park(self, names: Iterable[str]) -> None:
        """Sets workloads aside until capacity frees up: a cycle then skips them."""
        self._parked.update(n for n in names if n in self._by_name)

    def unpark_all(self) -> None:
        self._parked.clear()

    @property
    def parked(self) -> set[str]:
        return self._parked

    def active(self) -> list[Workload]:
        """Pending workloads not parked, first to be considered first."""
        if not self._parked:
            return self.ordered()
        return [w for w in self.ordered() if w.name not in self._parked]

    def ordered(self) -> list[Workload]:
        """Pending workloads, first to be considered first."""
        if self._unsorted:
            self.resort()
        if self._stale:
            live = self._by_name
            self._order = [e for e in self._order if live.get(e[1].name) is e[1]]
            self._stale = 0
        return [w for _, w in self._order]

    def resort(
        self,
        ctx: PriorityContext | None = None,
        sort: QueueSort | None = None,
        memo: dict[str, tuple[Hashable, ...]] | None = None,
    ) -> None:
        """Recomputes every key (Slurm recomputes priorities each PriorityCalcPeriod).
        ``memo`` keeps keys by workload name across calls: the caller must pass the same
        sort and context with it, and a name must always stand for the same workload."""
        self.sort = sort or self.sort
        self.ctx = ctx or self.ctx
        self._unsorted = False
        key, c = self.sort.sort_key, self.ctx
        if memo is None:
            pairs = [(key(w, c), w) for w in self._by_name.values()]
        else:
            pairs = [(memo[w.name] if w.name in memo else memo.setdefault(w.name, key(w, c)), w)
                     for w in self._by_name.values()]  # fmt: skip
        self._order = sorted(pairs, key=lambda e: e[0])
        self._stale = 0

    def explain(self, w: Workload) -> dict[str, float]:
        return self.sort.explain(w, self.ctx)
