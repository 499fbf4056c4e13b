"""Cluster usage: what is free on each node and in each topology domain.

`ClusterState` is the cycle's snapshot of usage. It is a handful of flat arrays
(one entry per node, one per domain), so `clone()` is a few list copies and a
what-if is `allocate` followed by the exact inverse `release`.

Domain aggregates let placement answer "which racks could hold 4 pods of 8 GPUs"
without scanning nodes: per domain, a histogram of schedulable nodes by whole free
GPUs, the count of idle nodes (for exclusive jobs) and the free GPU total. They are
upper bounds for CPU and memory, which only a node check confirms.
"""

from __future__ import annotations

from detente.core.cluster import Cluster, NodeCondition
from detente.core.resources import CPU, GPU, MEMORY, MILLI, Resources

_CORE = (GPU, CPU, MEMORY)


class ClusterState:
    """Mutable usage over an immutable `Cluster`.

    Contract: `allocate` then `release` with the same arguments restores the state
    exactly. Callers check `fits` before `allocate`; `allocate` does not re-check.
    """

    __slots__ = (
        "cluster",
        "devices",
        "extra",
        "free_cpu",
        "free_mem",
        "free_milli",
        "hist",
        "idle",
        "pods",
        "schedulable",
        "whole",
    )

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        nodes = cluster.nodes
        self.free_cpu = [n.capacity[CPU] for n in nodes]
        self.free_mem = [n.capacity[MEMORY] for n in nodes]
        self.devices: list[tuple[int, ...]] = [(MILLI,) * n.gpu_devices for n in nodes]
        self.whole = [n.gpu_devices for n in nodes]
        self.pods = [0] * len(nodes)
        self.extra: list[dict[str, int] | None] = [
            {k: v for k, v in n.capacity.items() if k not in _CORE} or None for n in nodes
        ]
        self.schedulable = [n.condition == NodeCondition.UP for n in nodes]
        nd = len(cluster.domains)
        self.hist: list[dict[int, int]] = [{} for _ in range(nd)]
        self.idle = [0] * nd
        self.free_milli = [0] * nd
        for i in range(len(nodes)):
            if self.schedulable[i]:
                self._account(i, +1)

    def clone(self) -> ClusterState:
        """A copy whose changes never reach this state (the cluster is shared)."""
        c = ClusterState.__new__(ClusterState)
        c.cluster = self.cluster
        c.free_cpu = self.free_cpu[:]
        c.free_mem = self.free_mem[:]
        c.devices = self.devices[:]
        c.whole = self.whole[:]
        c.pods = self.pods[:]
        c.extra = self.extra[:]
        c.schedulable = self.schedulable[:]
        c.hist = [h.copy() for h in self.hist]
        c.idle = self.idle[:]
        c.free_milli = self.free_milli[:]
        return c

    # -- queries ---------------------------------------------------------------

    def fits(self, node: int, request: Resources, exclusive: bool = False) -> bool:
        """Could one pod with ``request`` start on ``node`` now?"""
        if not self.schedulable[node]:
            return False
        if exclusive and self.pods[node]:
            return False
        if self.pods[node] and self.whole[node] < 0:  # held by an exclusive pod
            return False
        g = request.gpu_milli
        if g >= MILLI:
            if self.whole[node] < g // MILLI:
                return False
        elif g and max(self.devices[node], default=0) < g:
            return False
        if request[CPU] > self.free_cpu[node] or request[MEMORY] > self.free_mem[node]:
            return False
        if len(request) > sum(1 for k in _CORE if request[k]):
            ex = self.extra[node] or {}
            return all(v <= ex.get(k, 0) for k, v in request.items() if k not in _CORE)
        return True

    def pod_slots(self, domain: int, request: Resources, per_node_one: bool) -> int:
        """Upper bound on pods of ``request`` that could start in ``domain`` now."""
        g = request.gpu_milli
        hist = self.hist[domain]
        if g >= MILLI:
            need = g // MILLI
            if per_node_one:
                return sum(c for free, c in hist.items() if free >= need)
            return sum(c * (free // need) for free, c in hist.items() if free >= need)
        nodes = sum(hist.values())
        if g:
            return self.free_milli[domain] // g if not per_node_one else nodes
        return nodes if per_node_one else nodes * 1_000_000

    def free_gpus(self, domain: int = 0) -> float:
        return self.free_milli[domain] / MILLI

    def is_idle(self, node: int) -> bool:
        return self.pods[node] == 0

    # -- changes -----------------------------------------------------------------

    def allocate(self, node: int, request: Resources, exclusive: bool = False) -> tuple[int, ...]:
        """Charges one pod to ``node``; returns the GPU devices it got."""
        devs = self.devices[node]
        g = request.gpu_milli
        got: tuple[int, ...]
        if exclusive:
            got = tuple(i for i, d in enumerate(devs) if d == MILLI)
        elif g >= MILLI:
            got = tuple([i for i, d in enumerate(devs) if d == MILLI][: g // MILLI])
        elif g:
            # Best fit among devices keeps large holes for large shares.
            got = (min((d, i) for i, d in enumerate(devs) if d >= g)[1],)
        else:
            got = ()
        self.charge(node, request, got, exclusive)
        return got

    def charge(
        self, node: int, request: Resources, devices: tuple[int, ...], exclusive: bool = False
    ) -> None:
        """Charges one pod on exactly ``devices`` (they must be free), as `allocate` chose."""
        self._apply(node, request, devices, exclusive, -1)

    def release(
        self, node: int, request: Resources, devices: tuple[int, ...], exclusive: bool = False
    ) -> None:
        """The exact inverse of `allocate` with the same arguments and its result."""
        self._apply(node, request, devices, exclusive, +1)

    def _apply(
        self, node: int, request: Resources, devices: tuple[int, ...], exclusive: bool, sign: int
    ) -> None:
        """Frees (``sign`` +1) or takes (−1) one pod's resources; each undoes the other."""
        self._account(node, -1)
        self._apply_raw(node, request, devices, exclusive, sign)
        self._account(node, +1)

    def release_many(self, pods: list[tuple[int, Resources, tuple[int, ...], bool]]) -> None:
        """`release` for many (node, request, devices, exclusive) pods, updating each touched
        node's domain aggregates once instead of once per pod."""
        nodes = {p[0] for p in pods}
        for n in nodes:
            self._account(n, -1)
        for node, request, devices, exclusive in pods:
            self._apply_raw(node, request, devices, exclusive, +1)
        for n in nodes:
            self._account(n, +1)

    def _apply_raw(
        self, node: int, request: Resources, devices: tuple[int, ...], exclusive: bool, sign: int
    ) -> None:
        """`_apply` without the domain aggregates; callers account the node around it."""
        devs = list(self.devices[node])
        g = request.gpu_milli
        if exclusive:  # an exclusive pod holds every device; it needed an idle node
            devs = [MILLI if sign > 0 else 0] * len(devs)
        elif g >= MILLI:
            for i in devices:
                devs[i] = MILLI if sign > 0 else 0
        elif g:
            devs[devices[0]] += sign * g
        self._set_devices(node, devs)
        if exclusive and sign < 0:
            self.whole[node] = -1  # marks "held whole" so nothing else fits
        self.free_cpu[node] += sign * request[CPU]
        self.free_mem[node] += sign * request[MEMORY]
        self._charge_extra(node, request, sign)
        self.pods[node] -= sign

    def set_schedulable(self, node: int, value: bool) -> None:
        """Cordons or uncordons a node (draining, down, repaired)."""
        if self.schedulable[node] == value:
            return
        if self.schedulable[node]:
            self._account(node, -1)
        self.schedulable[node] = value
        if value:
            self._account(node, +1)

    def _set_devices(self, node: int, devs: list[int]) -> None:
        self.devices[node] = tuple(devs)
        self.whole[node] = sum(1 for d in devs if d == MILLI)

    def _charge_extra(self, node: int, request: Resources, sign: int) -> None:
        names = [k for k in request if k not in _CORE]
        if not names:
            return
        ex = dict(self.extra[node] or {})
        for k in names:
            ex[k] = ex.get(k, 0) + sign * request[k]
        self.extra[node] = ex

    def _account(self, node: int, sign: int) -> None:
        """Adds (+1) or removes (-1) this node's current figures from its domains."""
        if not self.schedulable[node]:
            return
        whole = max(self.whole[node], 0)
        idle = 1 if self.pods[node] == 0 else 0
        milli = sum(self.devices[node])
        for d in self.cluster.node_domains[node]:
            h = self.hist[d]
            c = h.get(whole, 0) + sign
            if c:
                h[whole] = c
            else:
                del h[whole]
            self.idle[d] += sign * idle
            self.free_milli[d] += sign * milli
