"""The cycle's view of the world: node usage, quota usage and what is running.

A `Snapshot` is what Kueue's cache hands a cycle: `clone()` copies usage and shares
everything immutable (cluster, queue config), so a cycle may change its snapshot
freely. `admit` and `release` keep node usage, quota usage and ``running`` in step;
the control plane and the simulator use the same two calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from detente.core.cluster import Cluster
from detente.core.fairshare import Usage
from detente.core.queues import ClusterQueue, QueueConfig
from detente.core.quota import FR, QuotaState
from detente.core.state import ClusterState

if TYPE_CHECKING:
    from detente.core.timeline import Reservation
from detente.core.workload import Admission, Workload


def quota_charge(w: Workload, flavors: Mapping[str, str]) -> dict[FR, int]:
    """The (flavor, resource) amounts an admission holds; empty without flavors."""
    return {(flavors[r], r): v for r, v in w.total.items() if r in flavors}


class Snapshot:
    __slots__ = (
        "_assignments",
        "_flavor_nodes",
        "cluster",
        "config",
        "plan",
        "quota",
        "running",
        "state",
        "usage",
    )

    def __init__(self, cluster: Cluster, config: QueueConfig) -> None:
        self.cluster = cluster
        self.config = config
        self.state = ClusterState(cluster)
        self.quota = QuotaState(config.tree)
        #: Admitted workloads (and, for pod-by-pod profiles, partly placed ones) by name.
        self.running: dict[str, Admission] = {}
        #: Decayed fair-share usage per LocalQueue (see `detente.core.fairshare`).
        self.usage = Usage()
        #: Reservations of the last cycle, kept while their workloads stay parked.
        self.plan: list[Reservation] = []
        self._flavor_nodes: dict[frozenset[str], frozenset[int] | None] = {}
        self._assignments: dict[tuple[str, tuple[str, ...]], list[dict[str, str]] | str] = {}

    def clone(self) -> Snapshot:
        """An independent copy of the nodes' state, quota and plan. The running
        admissions are shared with this snapshot: a cycle never changes one in place
        (it puts a new one in `running`, as preemption marks a victim)."""
        c = Snapshot.__new__(Snapshot)
        c.cluster, c.config = self.cluster, self.config
        c.state = self.state.clone()
        c.quota = self.quota.clone()
        c.running = dict(self.running)
        c.usage = self.usage
        c.plan = list(self.plan)
        c._flavor_nodes = self._flavor_nodes  # pure functions of immutable inputs
        c._assignments = self._assignments
        return c

    def flavor_nodes(self, flavors: frozenset[str]) -> frozenset[int] | None:
        """Nodes that match every flavor's labels (cached); None means all."""
        if flavors not in self._flavor_nodes:
            self._flavor_nodes[flavors] = self.config.flavor_nodes(self.cluster, set(flavors))
        return self._flavor_nodes[flavors]

    def flavor_assignments(
        self, cq: ClusterQueue, resources: tuple[str, ...]
    ) -> list[dict[str, str]] | str:
        """`QueueConfig.flavor_assignments`, memoized per ClusterQueue and resource names."""
        key = (cq.name, resources)
        if key not in self._assignments:
            found = self.config.flavor_assignments(cq, resources)
            self._assignments[key] = found if isinstance(found, str) else list(found)
        return self._assignments[key]

    def first_flavors(self, cq: ClusterQueue, w: Workload) -> dict[str, str] | None:
        """The preferred flavor assignment of ``w`` in ``cq``, if it has one."""
        found = self.flavor_assignments(cq, tuple(w.total))
        return None if isinstance(found, str) or not found else found[0]

    def admit(self, adm: Admission, keep_devices: bool = False) -> None:
        """Charges an admission's pods to nodes and its quota to its ClusterQueue.

        Replaces an earlier admission of the same workload (pod-by-pod growth). With
        ``keep_devices`` the pods are charged on the GPU devices their placements name
        (a running job reloaded from a store), which must be free.
        """
        name = adm.workload.name
        if name in self.running:
            self.release(name)
        w = adm.workload
        excl = w.exclusive
        requests = {ps.name: ps.request for ps in w.pod_sets}
        placed = []
        for p in adm.placements:
            if keep_devices:
                devices = p.devices
                self.state.charge(p.node, requests[p.pod_set], devices, excl)
            else:
                devices = self.state.allocate(p.node, requests[p.pod_set], excl)
            placed.append(type(p)(p.pod_set, p.index, p.node, devices))
        adm.placements = placed
        self.quota.add(adm.cluster_queue, quota_charge(w, adm.flavors))
        self.running[name] = adm

    def release_pods(self, name: str, pods: set[tuple[str, int]]) -> Admission:
        """Frees some pods of a running workload (pod-level preemption); it stays admitted
        with the rest. Returns the admission as it is now."""
        adm = self.running[name]
        w = adm.workload
        requests = {ps.name: ps.request for ps in w.pod_sets}
        keep = []
        for p in adm.placements:
            if (p.pod_set, p.index) in pods:
                self.state.release(p.node, requests[p.pod_set], p.devices, w.exclusive)
            else:
                keep.append(p)
        adm = replace(adm, placements=keep)
        self.running[name] = adm
        return adm

    def release(self, name: str) -> Admission:
        """Frees a running workload's nodes and quota; returns its admission."""
        adm = self.running.pop(name)
        w = adm.workload
        requests = {ps.name: ps.request for ps in w.pod_sets}
        for p in reversed(adm.placements):
            self.state.release(p.node, requests[p.pod_set], p.devices, w.exclusive)
        self.quota.add(adm.cluster_queue, quota_charge(w, adm.flavors), -1)
        return adm
