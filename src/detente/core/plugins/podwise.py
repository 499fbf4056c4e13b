"""Pod-by-pod placement, as the Kubernetes default scheduler does it.

One pod at a time: filter nodes from a rotating start until
``numFeasibleNodesToFind`` feasible ones are found (all below 100 nodes, else
``max(100, N × p / 100)`` with the adaptive ``p = max(5, 50 − N/125)``), score them,
take the best, and break ties uniformly at random (with the profile's seeded RNG,
so runs repeat). There is no gang: a job keeps the pods it got and waits for the
rest, which is how two jobs can each hold half a cluster and deadlock.
"""

from __future__ import annotations

from detente.core.framework import PlaceContext, Placement
from detente.core.statement import Statement
from detente.core.status import OK, Status, unschedulable
from detente.core.workload import PodSet

NAME = "PodByPod"


def feasible_to_find(n: int) -> int:
    if n < 100:
        return n
    pct = max(5, 50 - n // 125)
    return max(100, n * pct // 100)


class PodByPod:
    name = NAME

    def place(self, ctx: PlaceContext, pod_set: PodSet, count: int, stmt: Statement) -> Status:
        for _ in range(count):
            status = self._one(ctx, pod_set, stmt)
            if not status.ok:
                return status
        return OK

    def _one(self, ctx: PlaceContext, ps: PodSet, stmt: Statement) -> Status:
        st, excl, req = ctx.state, ctx.workload.exclusive, ps.request
        n = len(ctx.cluster.nodes)
        want = feasible_to_find(n)
        start = ctx.rng.randrange(n) if n else 0
        taken = ctx.taken | stmt.nodes_used() if ps.one_per_node else frozenset()
        feasible: list[int] = []
        for j in range(n):
            i = (start + j) % n
            if ctx.eligible(i) and i not in taken and st.fits(i, req, excl):
                feasible.append(i)
                if len(feasible) >= want:
                    break
        if not feasible:
            return unschedulable(NAME, f"0/{n} nodes are available for pod of {ps.name}")
        scores = [(ctx.node_score(i, req), i) for i in feasible]
        top = max(s for s, _ in scores)
        best = [i for s, i in scores if s == top]
        stmt.stage(ps.name, ctx.rng.choice(best), req, excl)
        return OK


_: Placement = PodByPod()
