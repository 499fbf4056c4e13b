"""kube-scheduler's DefaultPreemption, per pod (``framework/preemption``).

Runs when a pod fits no node. On every node holding lower-priority pods: remove
them all; if the pod still does not fit, the node is out; otherwise add victims
back, highest priority first, while the pod still fits — the rest are victims.
Among nodes, pick: lowest highest-victim priority → smallest sum of victim
priorities → fewest victims → latest start of the highest-priority victims →
lowest node index. Victims are single pods, so a gang can lose some pods and keep
the others. Pods already being evicted count as free, so a preemptor waiting for
them does not preempt again (the effect of ``nominatedNodeName``).

Not modelled: PodDisruptionBudgets, the candidate-node sample (every node with
lower-priority pods is examined), and the nominated node being held for the
preemptor against other pods.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from detente.core.resources import Resources
from detente.core.snapshot import Snapshot
from detente.core.workload import PodSet, Workload

NAME = "DefaultPreemption"


@dataclass(frozen=True, slots=True)
class PodVictim:
    workload: str
    pod_set: str
    index: int
    node: int
    priority: int
    start: float
    request: Resources
    devices: tuple[int, ...]
    exclusive: bool
    evicting: bool


def pods_by_node(snap: Snapshot) -> dict[int, list[PodVictim]]:
    out: dict[int, list[PodVictim]] = {}
    for adm in snap.running.values():
        w = adm.workload
        req = {ps.name: ps.request for ps in w.pod_sets}
        for p in adm.placements:
            v = PodVictim(
                w.name, p.pod_set, p.index, p.node, w.priority, adm.start_time,
                req[p.pod_set], p.devices, w.exclusive, p.evicting_until is not None,
            )  # fmt: skip
            out.setdefault(p.node, []).append(v)
    return out


def choose_victims(
    snap: Snapshot, w: Workload, ps: PodSet, by_node: dict[int, list[PodVictim]]
) -> tuple[int, list[PodVictim]] | None:
    """The node and pods to evict so one pod of ``ps`` fits; [] means "wait, pods are
    already leaving"; None means no node works. ``snap`` is restored before returning."""
    best: tuple[Hashable, int, list[PodVictim]] | None = None
    for node, pods in by_node.items():
        free = [p for p in pods if p.evicting]
        lower = [p for p in pods if not p.evicting and p.priority < w.priority]
        if not lower and not free:
            continue
        victims = _on_node(snap, w, ps, node, free, lower)
        if victims is None:
            continue
        if not victims:
            return node, []
        top = max(v.priority for v in victims)
        latest = max(v.start for v in victims if v.priority == top)
        key = (top, sum(v.priority for v in victims), len(victims), -latest, node)
        if best is None or key < best[0]:  # type: ignore[operator]
            best = (key, node, victims)
    return None if best is None else (best[1], best[2])


def _on_node(
    snap: Snapshot,
    w: Workload,
    ps: PodSet,
    node: int,
    free: list[PodVictim],
    lower: list[PodVictim],
) -> list[PodVictim] | None:
    st = snap.state
    out = [*free, *lower]
    for v in out:
        st.release(node, v.request, v.devices, v.exclusive)
    victims: list[PodVictim] | None = None
    if st.fits(node, ps.request, w.exclusive):
        victims = []
        for v in sorted(lower, key=lambda v: (-v.priority, v.workload, v.index)):
            st.charge(node, v.request, v.devices, v.exclusive)
            if not st.fits(node, ps.request, w.exclusive):
                st.release(node, v.request, v.devices, v.exclusive)
                victims.append(v)
    back = set(map(id, victims or [])) | {id(v) for v in free}
    if victims is None:
        back = {id(v) for v in out}
    for v in out:
        if id(v) in back:
            st.charge(node, v.request, v.devices, v.exclusive)
    return victims
