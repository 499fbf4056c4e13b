"""Topology best fit: pack a gang into the smallest topology domain that holds it.

Slurm's ``topology/tree`` and Kueue's TAS BestFit, on the domain tree of
`detente.core.cluster`. Per pod set of *n* pods:

1. Choose the levels to try: a ``required`` level alone; a ``preferred`` level and
   then every coarser one (climbing to the whole cluster); with no request, every
   level from the lowest up, so even unconstrained gangs stay compact.
2. At a level, walk down from the root choosing, at each step, children whose
   aggregates say they could hold all *n* pods, tightest first (fewest pod slots).
3. Inside the chosen domain, fill children best fit: the tightest child that holds
   the remainder; if none does, the child with the most room, taken whole, then
   repeat (Slurm's ``_topo_choose_best_switch``). In a leaf domain, nodes are ranked
   by the profile's scores.

Example: racks with room for 3, 3, 2, 1 eight-GPU pods and a 2-pod gang → the rack
with 2. A 7-pod gang that may split → 3 + 3 + 1, the last taken from the rack with 1.

Aggregates ignore CPU, memory and flavor labels, so a domain they allow may still
fail at the node check; the statement is rolled back and the next domain tried.
"""

from __future__ import annotations

from collections.abc import Iterator

from detente.core.cluster import Domain
from detente.core.framework import PlaceContext, Placement
from detente.core.resources import MILLI
from detente.core.statement import Statement
from detente.core.status import OK, Status, unresolvable, unschedulable
from detente.core.workload import PodSet, TopologyMode

NAME = "TopologyBestFit"


def level_name(label: str) -> str:
    """``topology.detente.dev/rack`` → ``rack``."""
    return label.rsplit("/", 1)[-1]


class TopologyBestFit:
    name = NAME

    def __init__(self, compact: bool = True) -> None:
        #: Keep gangs without a topology request compact (False: whole cluster at once).
        self.compact = compact

    def place(self, ctx: PlaceContext, pod_set: PodSet, count: int, stmt: Statement) -> Status:
        levels = self._levels(ctx)
        if isinstance(levels, Status):
            return levels
        for level in levels:
            for dom in self._candidates(ctx, ctx.cluster.domains[0], level, pod_set, count):
                mark = stmt.mark()
                if self._fill(ctx, dom, pod_set, count, stmt, level) == count:
                    return OK
                stmt.rollback(mark)
        return self._why(ctx, pod_set, count, levels[0])

    def _levels(self, ctx: PlaceContext) -> list[int] | Status:
        cl = ctx.cluster
        req = ctx.workload.topology
        deepest = len(cl.levels) - 1
        if req is None:
            return list(range(deepest, -2, -1)) if self.compact else [-1]
        lv = cl.level_index(req.level)
        if lv is None:
            return unresolvable(NAME, f"topology level {req.level!r} is not a level of the cluster")
        if req.mode == TopologyMode.REQUIRED:
            return [lv]
        return list(range(lv, -2, -1))

    def _candidates(
        self, ctx: PlaceContext, d: Domain, level: int, ps: PodSet, n: int
    ) -> Iterator[Domain]:
        """Domains at ``level`` that may hold ``n`` pods, tightest first at every step."""
        if d.level == level or (level > d.level and not d.children):
            yield d
            return
        slots = self._slots
        kids = sorted((s, c) for c in d.children if (s := slots(ctx, c, ps)) >= n)
        for _, c in kids:
            yield from self._candidates(ctx, ctx.cluster.domains[c], level, ps, n)

    def _slots(self, ctx: PlaceContext, domain: int, ps: PodSet) -> int:
        if ctx.workload.exclusive:
            return ctx.state.idle[domain]
        return ctx.state.pod_slots(domain, ps.request, ps.one_per_node)

    def _fill(
        self, ctx: PlaceContext, d: Domain, ps: PodSet, k: int, stmt: Statement, level: int
    ) -> int:
        """Stages up to ``k`` pods inside ``d``; returns how many it staged."""
        if not d.children:
            return fill_nodes(ctx, d.nodes, ps, k, stmt, single=level == len(ctx.cluster.levels))
        placed, used = 0, set()
        while placed < k:
            rem = k - placed
            kids = [(s, c) for c in d.children if c not in used and (s := self._slots(ctx, c, ps))]
            if not kids:
                break
            fitting = [x for x in kids if x[0] >= rem]
            s, c = min(fitting) if fitting else max(kids, key=lambda x: (x[0], -x[1]))
            used.add(c)
            placed += self._fill(ctx, ctx.cluster.domains[c], ps, min(rem, s), stmt, level)
        return placed

    def _why(self, ctx: PlaceContext, ps: PodSet, n: int, level: int) -> Status:
        cl, st = ctx.cluster, ctx.state
        per = ps.request.gpu_milli / MILLI
        need = f"{n * per:g} GPUs ({n} × {per:g})" if per else f"{n} pods"
        if level < 0 or level >= len(cl.levels):
            free = st.free_milli[0] / MILLI
            return unschedulable(NAME, f"needs {need}; {free:g} GPUs free in the cluster")
        name = level_name(cl.levels[level])
        doms = cl.domains_at(level)
        best = max(doms, key=lambda d: (st.free_milli[d.id], -d.id))
        free = st.free_milli[best.id] / MILLI
        return unschedulable(
            NAME, f"needs {need} in one {name}; largest free {name} ({best.name}) has {free:g}"
        )


def fill_nodes(
    ctx: PlaceContext, nodes: tuple[int, ...], ps: PodSet, k: int, stmt: Statement, single: bool
) -> int:
    """Stages up to ``k`` pods on ``nodes``, best score first; ties go to the lower index.

    ``single`` puts all pods on one node (the hostname level) or none.
    """
    st, excl, req = ctx.state, ctx.workload.exclusive, ps.request
    cand = [i for i in nodes if ctx.eligible(i) and st.fits(i, req, excl)]
    if not cand:
        return 0
    if ps.one_per_node or excl:
        if ctx.scores:
            cand.sort(key=lambda i: (-ctx.node_score(i, req), i))
        for i in cand[:k]:
            stmt.stage(ps.name, i, req, excl)
        return min(k, len(cand))
    if single:
        return _fill_one_node(ctx, cand, ps, k, stmt)
    placed = 0
    while placed < k and cand:
        best = max(cand, key=lambda i: (ctx.node_score(i, req), -i)) if ctx.scores else cand[0]
        stmt.stage(ps.name, best, req, excl)
        placed += 1
        if placed < k and not st.fits(best, req, excl):
            cand.remove(best)
    return placed


def _fill_one_node(ctx: PlaceContext, cand: list[int], ps: PodSet, k: int, stmt: Statement) -> int:
    """All ``k`` pods on the best node that holds them all, else nothing."""
    st, excl, req = ctx.state, ctx.workload.exclusive, ps.request
    cand.sort(key=lambda i: (-ctx.node_score(i, req), i))
    for i in cand:
        mark = stmt.mark()
        for _ in range(k):
            if not st.fits(i, req, excl):
                break
            stmt.stage(ps.name, i, req, excl)
        if stmt.mark() - mark == k:
            return k
        stmt.rollback(mark)
    return 0


_: Placement = TopologyBestFit()
