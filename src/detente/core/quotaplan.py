"""Quota over time: the quota half of the availability profile.

A workload blocked by its ClusterQueue's quota, not by nodes, is reserved like one
blocked by nodes: its reservation starts no earlier than the moment running work's
time limits free enough quota, and from then on it *holds* that quota. Backfill may
start a workload now only if every hold its run would overlap still fits with it
charged, so a short job cannot take the quota a higher-priority head waits for (with
the default queue's quota equal to the cluster, a 10-minute job would otherwise start
ahead of a 4-node head for ever).

Worked example: quota 32 GPUs, 24 in use until t=3600. A 32-GPU head is quota-blocked
now; at 3600 the quota is free, so it holds 32 GPUs of quota from 3600. An 8-GPU job
with a 2-hour limit fits the quota now, but at 3600 it would still run, and the head's
32 would no longer fit: it waits. An 8-GPU job with a 30-minute limit ends before
3600: it starts now.

Approximations: a workload's first flavor assignment is the one checked; holds last
one cycle (an incremental cycle keeps node reservations, not quota holds).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass

from detente.core.admission import quota_fit
from detente.core.queues import ClusterQueue
from detente.core.quota import FR, QuotaState
from detente.core.snapshot import Snapshot, quota_charge
from detente.core.timeline import planned_end
from detente.core.workload import Workload


@dataclass(slots=True)
class QuotaHold:
    workload: Workload
    cq: ClusterQueue
    flavors: dict[str, str]
    start: float
    end: float
    #: Usage projected at ``start`` without this hold: what still runs then (by time
    #: limits), the other holds overlapping it, and admissions of this cycle that do.
    others: QuotaState
    #: What it charges (flavor, resource → amount).
    charge: dict[FR, int]


class QuotaPlan:
    """Per-cycle quota projection. Contract: used for one cycle on one snapshot."""

    def __init__(self, snap: Snapshot, now: float, default_limit: float | None) -> None:
        self.snap, self.now, self.default_limit = snap, now, default_limit
        self.holds: list[QuotaHold] = []
        self._ends: list[tuple[float, str]] | None = None
        #: Usage at time t after the releases due by then, holds not counted (the same
        #: checkpoints are asked for many workloads); cleared when an admission lands.
        self._released: dict[float, QuotaState] = {}
        self._charges: dict[str, dict[FR, int]] = {}
        self._binding: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}

    def _releases(self) -> list[tuple[float, str]]:
        if self._ends is None:
            self._ends = sorted(
                (planned_end(a, self.default_limit), name)
                for name, a in self.snap.running.items()
                if a.cluster_queue
            )
        return self._ends

    def binding(self, cq: ClusterQueue, flavors: Mapping[str, str]) -> bool:
        """Can this ClusterQueue's quota (with all it may ever borrow) bind before its
        flavors' nodes do? If not (the live default: quota = the cluster), a whole-node
        reservation already protects the quota, and no projection is needed."""
        key = (cq.name, tuple(sorted(flavors.items())))
        found = self._binding.get(key)
        if found is None:
            nodes = self.snap.flavor_nodes(frozenset(flavors.values()))
            cl = self.snap.cluster
            idx = range(len(cl.nodes)) if nodes is None else nodes
            ever = QuotaState(self.snap.quota.tree)
            found = any(
                ever.available(cq.name, (fl, res)) < sum(cl.nodes[i].capacity[res] for i in idx)
                for res, fl in flavors.items()
            )
            self._binding[key] = found
        return found

    def _charge(self, name: str) -> tuple[str, dict[FR, int]] | None:
        adm = self.snap.running.get(name)
        if adm is None:
            return None
        c = self._charges.get(name)
        if c is None:
            c = self._charges[name] = quota_charge(adm.workload, adm.flavors)
        return adm.cluster_queue, c

    def released(self, t: float) -> QuotaState:
        """Usage at ``t`` once running work has ended by its time limit; holds not
        counted. Shared: do not change it (or restore what you change)."""
        q = self._released.get(t)
        if q is None:
            q = self.snap.quota.clone()
            ends = self._releases()
            for _, name in ends[: bisect.bisect_right(ends, (t, "\uffff"))]:
                if (c := self._charge(name)) is not None:
                    q.add(c[0], c[1], -1)
            self._released[t] = q
        return q

    def _over(self, t: float, skip: QuotaHold | None = None) -> list[QuotaHold]:
        return [h for h in self.holds if h is not skip and h.start <= t < h.end]

    def at(self, t: float, skip: QuotaHold | None = None) -> QuotaState:
        """Projected usage at ``t`` (a copy): running work not ended by then, plus the
        holds over ``t`` (but ``skip``)."""
        q = self.released(t).clone()
        for h in self._over(t, skip):
            q.add(h.cq.name, h.charge)
        return q

    def fits_at(
        self, w: Workload, cq: ClusterQueue, flavors: Mapping[str, str], start: float,
        limit: float, borrowing: bool,
    ) -> bool:  # fmt: skip
        """Could ``w`` hold its quota from ``start`` to ``start + limit`` without taking
        quota an earlier hold needs?"""
        q, over = self.released(start), self._over(start)
        for h in over:
            q.add(h.cq.name, h.charge)
        try:
            ok = quota_fit(q, cq, w, flavors, borrowing).ok
        finally:
            for h in over:
                q.add(h.cq.name, h.charge, -1)
        return ok and self.breaks(w, cq, flavors, start, start + limit, borrowing) is None

    def breaks(
        self, w: Workload, cq: ClusterQueue, flavors: Mapping[str, str], start: float,
        end: float, borrowing: bool,
    ) -> QuotaHold | None:  # fmt: skip
        """The first hold starting inside [start, end) that would no longer fit with
        ``w`` charged meanwhile."""
        charge = quota_charge(w, flavors)
        for h in self.holds:
            if not start <= h.start < end:
                continue
            h.others.add(cq.name, charge)
            ok = quota_fit(h.others, h.cq, h.workload, h.flavors, borrowing).ok
            h.others.add(cq.name, charge, -1)
            if not ok:
                return h
        return None

    def hold(
        self, w: Workload, cq: ClusterQueue, flavors: Mapping[str, str], start: float, end: float
    ) -> None:
        charge = quota_charge(w, flavors)
        new = QuotaHold(w, cq, dict(flavors), start, end, self.snap.quota, charge)
        new.others = self.at(start, skip=new)
        for h in self.holds:  # the new hold is charged where it overlaps earlier ones
            if start <= h.start < end:
                h.others.add(cq.name, charge)
        self.holds.append(new)

    def admitted(
        self, w: Workload, cq: ClusterQueue, flavors: Mapping[str, str], end: float
    ) -> None:
        """Charges an admission of this cycle to every hold starting before it ends."""
        self._ends = None  # it runs now: projections release it at its time limit
        self._released.clear()
        for h in self.holds:
            if h.start < end:
                h.others.add(cq.name, quota_charge(w, flavors))
