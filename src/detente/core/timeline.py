"""The availability profile: when running work releases its nodes, and what is reserved.

Slurm's backfill plans with *time limits*, not run times: a running workload ends,
for planning, at ``start + time limit``. The future is kept as a few checkpoint
states — copies of the cluster with every release up to that time applied — plus
a list of reservations, which (as in Slurm) hold **whole nodes** for an interval.

Worked example (4 nodes, ``n1``–``n2`` busy until t=3600, now t=0): the checkpoint
at 3600 has all four nodes free. A 4-node head job cannot start now; at 3600 it
fits, so it reserves ``n0``–``n3`` for [3600, 3600 + its limit). A 1-node job with a
30-minute limit may start now on ``n0``: its interval [0, 1800) does not overlap the
reservation. A 2-hour one would run past 3600 on a reserved node, so it may not.

The state "at time s" is the latest checkpoint at or before s: it assumes no more
releases than certain, so a reservation is never promised too early. Checkpoints
are built on first use, in time order, so a cycle whose reservations all fall soon
releases only the running work that ends before them.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from detente.core.resources import Resources
from detente.core.snapshot import Snapshot
from detente.core.state import ClusterState
from detente.core.workload import Admission, Workload

INF = math.inf


@dataclass(frozen=True, slots=True)
class Reservation:
    """Whole ``nodes`` held for ``workload`` over [start, end)."""

    workload: str
    start: float
    end: float
    nodes: frozenset[int]


def planned_end(adm: Admission, default_limit: float | None) -> float:
    limit = adm.workload.time_limit or default_limit
    return adm.start_time + limit if limit else INF


class Cordon:
    """Keeps a set of nodes unschedulable on one state, changing only the difference.

    Contract: `ensure` (frozenset()) restores every node this object cordoned.
    """

    __slots__ = ("applied", "last", "state")

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.applied: set[int] = set()
        self.last: frozenset[int] | set[int] | None = None

    def ensure(self, nodes: set[int] | frozenset[int]) -> None:
        if nodes is self.last:
            return  # memoized sets: the same object means the same cordon
        self.last = nodes
        st = self.state
        for n in self.applied - nodes:
            st.set_schedulable(n, True)
        self.applied &= nodes
        for n in nodes:
            if n not in self.applied and st.schedulable[n]:
                st.set_schedulable(n, False)
                self.applied.add(n)


@contextmanager
def cordoned(state: ClusterState, nodes: set[int] | frozenset[int]) -> Iterator[None]:
    """Makes ``nodes`` unschedulable inside the block, restoring exactly after it."""
    changed = [n for n in nodes if state.schedulable[n]]
    for n in changed:
        state.set_schedulable(n, False)
    try:
        yield
    finally:
        for n in changed:
            state.set_schedulable(n, True)


class Timeline:
    """The cycle's view of the future. Contract: only grows more pessimistic during a cycle
    (reservations and admissions are added, never removed), so "did not fit by time t"
    stays true for the rest of the cycle."""

    def __init__(
        self,
        snap: Snapshot,
        now: float,
        window: float,
        default_limit: float | None = None,
        max_points: int = 32,
    ) -> None:
        self.snap, self.now, self.window = snap, now, window
        self.default_limit = default_limit
        self.max_points = max_points
        self.reservations: list[Reservation] = []  # sorted by start
        self._starts: list[float] = []
        self.version = 0
        self._ws: ClusterState | None = None  # the state being advanced through time
        self._ws_time = now
        self._ri = 0
        self._releases: list[tuple[float, str]] = []
        self._point_times: list[float] = []
        self._states: list[ClusterState] = []
        self._cand_times: list[float] = []
        self._unions: dict[tuple[int, int, float], frozenset[int]] = {}
        self.cordons: dict[int, Cordon] = {}

    def limit(self, w: Workload) -> float:
        return w.time_limit or self.default_limit or INF

    # -- reservations ------------------------------------------------------------------

    def add(self, r: Reservation) -> None:
        i = bisect.bisect_right(self._starts, r.start)
        self._starts.insert(i, r.start)
        self.reservations.insert(i, r)
        self.version += 1
        if self._ws is not None:
            self._add_candidate(r.end)

    def blocking_now(self, limit: float) -> frozenset[int]:
        """Nodes reserved at any time during [now, now + limit) (memoized per version)."""
        return self.held(self.now, self.now + limit)

    def held(self, start: float, end: float) -> frozenset[int]:
        """Nodes of every reservation overlapping [start, end) (memoized per version)."""
        k = bisect.bisect_left(self._starts, end)
        key = (self.version, k, start)
        got = self._unions.get(key)
        if got is None:
            got = frozenset().union(*(r.nodes for r in self.reservations[:k] if r.end > start))
            self._unions[key] = got
        return got

    def overlapping(self, start: float, end: float) -> list[Reservation]:
        return [r for r in self.reservations if r.start < end and r.end > start]

    def cordon(self, st: ClusterState) -> Cordon:
        c = self.cordons.get(id(st))
        if c is None:
            c = self.cordons[id(st)] = Cordon(st)
        return c

    def restore(self) -> None:
        """Uncordons every state this timeline cordoned."""
        for c in self.cordons.values():
            c.ensure(frozenset())

    # -- checkpoints, built lazily in time order ----------------------------------------

    def note_admission(self, adm: Admission) -> None:
        """Charges a workload started now to every checkpoint before its planned end, and
        makes its end a checkpoint and a candidate start of its own."""
        if self._ws is None:
            return
        end = planned_end(adm, self.default_limit)
        requests = {ps.name: ps.request for ps in adm.workload.pod_sets}
        charged = [st for t, st in zip(self._point_times, self._states, strict=False) if t < end]
        if self._ws_time < end:
            charged.append(self._ws)
        for st in charged:
            for p in adm.placements:
                st.charge(p.node, requests[p.pod_set], p.devices, adm.workload.exclusive)
        if end > self.now + self.window:
            return
        if self._ws_time < end:
            bisect.insort(self._releases, (end, adm.workload.name))
            i = bisect.bisect_left(self._point_times, end)
            if i == len(self._point_times) or self._point_times[i] != end:
                self._point_times.insert(i, end)
        else:
            self._insert_built_point(end, adm)
        self._add_candidate(end)

    def _insert_built_point(self, end: float, adm: Admission) -> None:
        """A checkpoint at ``end`` among those already built: the one before it, plus every
        release up to ``end``, with this admission gone again."""
        k = bisect.bisect_right(self._point_times, end) - 1
        if self._point_times[k] == end:
            return
        self.cordon(self._states[k]).ensure(frozenset())
        st = self._states[k].clone()
        lo = bisect.bisect_right(self._releases, (self._point_times[k], "\uffff"))
        hi = bisect.bisect_right(self._releases, (end, "\uffff"))
        for _, name in self._releases[lo:hi]:
            self._release(st, self.snap.running[name])
        self._release(st, adm)
        self._point_times.insert(k + 1, end)
        self._states.insert(k + 1, st)

    def candidates(self, after: float) -> Iterator[tuple[float, ClusterState]]:
        """(start time, state at that time) for every start worth trying after ``after``:
        checkpoints and reservation ends, in time order."""
        self._init()
        i = bisect.bisect_right(self._cand_times, after)
        while i < len(self._cand_times):
            t = self._cand_times[i]
            j = bisect.bisect_right(self._point_times, t) - 1
            yield t, self._state(max(j, 0))
            i += 1

    def _add_candidate(self, t: float) -> None:
        if t > self.now + self.window:
            return
        i = bisect.bisect_left(self._cand_times, t)
        if i < len(self._cand_times) and self._cand_times[i] == t:
            return
        self._cand_times.insert(i, t)

    def _init(self) -> None:
        if self._ws is not None:
            return
        horizon = self.now + self.window
        self._releases = sorted(
            (end, name)
            for name, adm in self.snap.running.items()
            if adm.complete and (end := planned_end(adm, self.default_limit)) <= horizon
        )
        times = sorted({end for end, _ in self._releases})
        if len(times) > self.max_points:
            step = len(times) / self.max_points
            picks = {
                times[min(len(times) - 1, int((i + 1) * step) - 1)] for i in range(self.max_points)
            }
            times = sorted(picks)
        self._point_times = [self.now, *(max(t, self.now) for t in times)]
        self.cordon(self.snap.state).ensure(frozenset())
        # Point 0 is "now" on its own copy, so planning never cordons the live state.
        self._ws = self.snap.state.clone()
        self._ws_time = self.now
        self._states = [self._ws.clone()]
        for t in self._point_times[1:]:
            self._add_candidate(t)
        for r in self.reservations:
            self._add_candidate(r.end)

    def _state(self, j: int) -> ClusterState:
        """The state at checkpoint ``j``, applying releases up to it on first use."""
        assert self._ws is not None
        while len(self._states) <= j:
            t = self._point_times[len(self._states)]
            batch: list[tuple[int, Resources, tuple[int, ...], bool]] = []
            while self._ri < len(self._releases) and self._releases[self._ri][0] <= t:
                adm = self.snap.running[self._releases[self._ri][1]]
                requests = {ps.name: ps.request for ps in adm.workload.pod_sets}
                excl = adm.workload.exclusive
                batch += [(p.node, requests[p.pod_set], p.devices, excl) for p in adm.placements]
                self._ri += 1
            self._ws.release_many(batch)
            self._ws_time = t
            self._states.append(self._ws.clone())
        return self._states[j]

    @staticmethod
    def _release(st: ClusterState, adm: Admission) -> None:
        requests = {ps.name: ps.request for ps in adm.workload.pod_sets}
        for p in reversed(adm.placements):
            st.release(p.node, requests[p.pod_set], p.devices, adm.workload.exclusive)
