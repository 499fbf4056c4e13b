"""Admission checks for one workload: quota fit and placement fit, in the same step.

A workload is admitted only when its ClusterQueue has the quota *and* its pods can
be placed; quota never admits what cannot run (the complaint of kueue#4329, #2796).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING

from detente.core.cluster import Cluster, Node, NodeCondition
from detente.core.framework import PlaceContext, Rng
from detente.core.queues import ClusterQueue
from detente.core.quota import QuotaState
from detente.core.resources import MILLI, Resources, describe
from detente.core.snapshot import Snapshot, quota_charge
from detente.core.state import ClusterState
from detente.core.statement import Statement
from detente.core.status import OK, Code, Status, unresolvable, unschedulable
from detente.core.workload import Admission, PodPlacement, Workload

if TYPE_CHECKING:
    from detente.core.profiles import Profile

QUOTA = "QuotaFit"
FIT = "NodeFit"


class ShapeCache:
    """Shapes that failed in this cycle, with the shortest time limit they failed at.

    Capacity only shrinks during a cycle, and with backfill a longer time limit meets
    more reservations, so a failure at limit L stands for every limit ≥ L for the rest
    of the cycle. Without backfill every limit is 0.
    """

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: dict[Hashable, tuple[float, Status]] = {}

    def get(self, key: Hashable, limit: float = 0.0) -> Status | None:
        e = self._d.get(key)
        return e[1] if e is not None and limit >= e[0] else None

    def put(self, key: Hashable, limit: float, status: Status) -> Status:
        e = self._d.get(key)
        if e is None or limit < e[0]:
            self._d[key] = (limit, status)
        return status


def quota_fit(
    quota: QuotaState,
    cq: ClusterQueue,
    w: Workload,
    flavors: Mapping[str, str],
    borrowing: bool = True,
) -> Status:
    """Fits under nominal quota, or borrows within the cohort up to the borrowing limit
    (``borrowing`` False: nominal quota is a hard cap, as a Slurm partition's nodes)."""
    for (flavor, res), need in quota_charge(w, flavors).items():
        avail = quota.available(cq.name, (flavor, res))
        if not borrowing:
            avail = min(
                avail,
                quota.tree.nominal(cq.name, (flavor, res)) - quota.used(cq.name, (flavor, res)),
            )
        if need <= avail:
            continue
        ever = QuotaState(quota.tree).available(cq.name, (flavor, res))
        msg = (
            f"ClusterQueue {cq.name} needs {describe(res, need)} of flavor {flavor}; "
            f"{describe(res, max(avail, 0))} available"
        )
        if need > ever:
            return unresolvable(QUOTA, f"{msg}, at most {describe(res, ever)} ever")
        return unschedulable(QUOTA, msg)
    return OK


def shape(w: Workload, nodes: frozenset[int] | None) -> Hashable:
    """Workloads with equal shapes fit or fail alike within a cycle."""
    return (w.shape, nodes)


def place_workload(
    snap: Snapshot,
    w: Workload,
    nodes: frozenset[int] | None,
    profile: Profile,
    failed: ShapeCache,
    rng: Rng,
    limit: float = 0.0,
) -> tuple[Status, list[PodPlacement]]:
    """Stages every pod set on ``snap.state``; keeps them on success, else discards all.

    ``failed`` remembers shapes that did not fit in this cycle: capacity only shrinks
    during a cycle, so they cannot fit later in it.
    """
    key = shape(w, nodes)
    hit = failed.get(key, limit)
    if hit is not None:
        return hit, []
    st = snap.state
    need = w.total.gpu_milli
    if need > st.free_milli[0] and w.topology is None:
        status = _never_or(snap, w) or unschedulable(
            FIT, f"needs {need / MILLI:g} GPUs; {st.free_milli[0] / MILLI:g} free in the cluster"
        )
        return failed.put(key, limit, status), []
    status, stmt = stage_workload(st, w, nodes, profile, rng)
    if stmt is None:
        return failed.put(key, limit, _never_or(snap, w) or status), []
    counters: dict[str, int] = {}
    out = []
    for s in stmt.staged:
        idx = counters.get(s.pod_set, 0)
        counters[s.pod_set] = idx + 1
        out.append(PodPlacement(s.pod_set, idx, s.node, s.devices))
    return OK, out


def stage_workload(
    state: ClusterState, w: Workload, nodes: frozenset[int] | None, profile: Profile, rng: Rng
) -> tuple[Status, Statement | None]:
    """Stages every pod set of ``w`` on ``state`` as one transaction.

    Returns the statement (pods still staged) on success; on failure nothing stays.
    """
    ctx = PlaceContext(state, w, eligible(state.cluster, w, nodes), profile.scores, rng)
    stmt = Statement(state)
    for ps in w.pod_sets:
        status = profile.placement.place(ctx, ps, ps.count, stmt)
        if not status.ok:
            stmt.rollback()
            return status, None
    return OK, stmt


def eligible(cl: Cluster, w: Workload, nodes: frozenset[int] | None) -> frozenset[int] | None:
    """``nodes`` (None: every node) narrowed to those ``w``'s node filter allows."""
    f = w.node_filter
    if f is None:
        return nodes
    allowed = cl.allowed(f, f.allows)
    return allowed if nodes is None else nodes & allowed


def _never_or(snap: Snapshot, w: Workload) -> Status | None:
    """An unresolvable status if ``w`` could not fit even on the empty cluster."""
    return never_fits(snap.cluster, w)


def never_fits(cl: Cluster, w: Workload) -> Status | None:
    """Why ``w`` could not be placed even on ``cl`` empty (its topology level included),
    or None. Down nodes count as absent: ask it of the cluster with every node up to
    know whether a job could ever run."""
    if w.node_filter is not None:
        return _never_on_allowed(cl, w)
    level = 0 if w.topology is None else cl.level_index(w.topology.level)
    required = w.topology is not None and w.topology.mode == "required"
    for ps in w.pod_sets:
        if not cl.fits_some_node(ps.request):
            return unresolvable(FIT, f"no node is big enough for one pod of {ps.name}")
        one = ps.one_per_node or w.exclusive
        if required and level is not None and 0 <= level < len(cl.levels):
            best = max(cl.ever_slots(d.id, ps.request, one) for d in cl.domains_at(level))
            where = f"one {cl.levels[level].rsplit('/', 1)[-1]}"
        else:
            best, where = cl.ever_slots(0, ps.request, one), "the cluster"
        if best < ps.count:
            return unresolvable(
                FIT, f"{ps.name} needs {ps.count} pods; {where} can hold at most {best}"
            )
    return None


def _never_on_allowed(cl: Cluster, w: Workload) -> Status | None:
    """`never_fits` for a workload limited to some nodes: counted on those alone."""
    assert w.node_filter is not None
    allowed = [cl.nodes[i] for i in sorted(cl.allowed(w.node_filter, w.node_filter.allows))]
    up = [n for n in allowed if n.condition != NodeCondition.DOWN]
    if not allowed:
        return unresolvable(FIT, "no node matches its node list, exclusions and constraint")
    for ps in w.pod_sets:
        one = ps.one_per_node or w.exclusive
        slots = sum(_node_slots(n, ps.request, one) for n in up)
        if slots < ps.count:
            return unresolvable(FIT, f"{ps.name} needs {ps.count} pods; the {len(allowed)} "
                                f"node(s) it may use can hold at most {slots}")  # fmt: skip
    return None


def _node_slots(node: Node, request: Resources, one_per_node: bool) -> int:
    """Pods of ``request`` that ``node`` empty could hold (by GPUs, once it fits one)."""
    if not request.fits_in(node.capacity):
        return 0
    g = request.gpu_milli
    if one_per_node:
        return 1
    return node.gpu_devices // (g // MILLI) if g >= MILLI else 1_000_000


def _quota(
    snap: Snapshot,
    cq: ClusterQueue | None,
    w: Workload,
    flavors: Mapping[str, str],
    borrowing: bool,
    failed: ShapeCache,
) -> Status:
    if cq is None:
        return OK
    # Quota only shrinks during a cycle too: a request that failed fails again.
    key = ("quota", cq.name, tuple(sorted(flavors.items())), w.total)
    hit = failed.get(key)
    if hit is not None:
        return hit
    status = quota_fit(snap.quota, cq, w, flavors, borrowing)
    if status.code == Code.UNSCHEDULABLE:
        # A shape that can never be placed says so, rather than blaming quota.
        status = _never_or(snap, w) or status
    if not status.ok:
        failed.put(key, 0.0, status)
    return status


def reserve_quota(
    snap: Snapshot, w: Workload, cq: ClusterQueue | None, now: float
) -> tuple[Status, Admission | None]:
    """Kueue without TAS: admit on quota alone, placing nothing (pods bind later)."""
    if cq is None:
        return OK, Admission(w, "", {}, [], now)
    found = snap.flavor_assignments(cq, tuple(w.total))
    if isinstance(found, str):
        return unresolvable(QUOTA, f"ClusterQueue {cq.name} has no quota for {found}"), None
    first: Status | None = None
    for flavors in found:
        status = quota_fit(snap.quota, cq, w, flavors)
        if status.ok:
            snap.quota.add(cq.name, quota_charge(w, flavors))
            return OK, Admission(w, cq.name, dict(flavors), [], now)
        first = first or status
    return first or OK, None


def cached_failure(
    snap: Snapshot, w: Workload, cq: ClusterQueue | None, failed: ShapeCache, limit: float
) -> Status | None:
    """The cached failure of ``w``'s shape under every flavor it could take, if all failed."""
    if cq is None:
        flavor_sets: list[frozenset[str]] = [frozenset()]
    else:
        found = snap.flavor_assignments(cq, tuple(w.total))
        if isinstance(found, str):
            return None
        flavor_sets = [frozenset(f.values()) for f in found]
    first: Status | None = None
    for fs in flavor_sets:
        hit = failed.get(shape(w, snap.flavor_nodes(fs)), limit)
        if hit is None:
            return None
        first = first or hit
    return first


def try_admit(
    snap: Snapshot,
    w: Workload,
    cq: ClusterQueue | None,
    profile: Profile,
    failed: ShapeCache,
    rng: Rng,
    now: float,
    limit: float = 0.0,
) -> tuple[Status, Admission | None]:
    """Quota then placement for each flavor assignment in order; first fit wins.

    On success the pods stay staged on ``snap.state`` and the quota is charged.
    """
    if cq is None:
        assignments: list[dict[str, str]] = [{}]
    else:
        found = snap.flavor_assignments(cq, tuple(w.total))
        if isinstance(found, str):
            return unresolvable(QUOTA, f"ClusterQueue {cq.name} has no quota for {found}"), None
        assignments = found
    first: Status | None = None
    for flavors in assignments:
        nodes = snap.flavor_nodes(frozenset(flavors.values()))
        status = failed.get(shape(w, nodes), limit) or _quota(
            snap, cq, w, flavors, profile.borrowing, failed
        )
        if status.ok:
            status, placements = place_workload(snap, w, nodes, profile, failed, rng, limit)
            if status.ok:
                if cq is not None:
                    snap.quota.add(cq.name, quota_charge(w, flavors))
                return OK, Admission(w, cq.name if cq else "", dict(flavors), placements, now)
        if first is None or (first.code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE > status.code):
            first = status
    assert first is not None
    return first, None
