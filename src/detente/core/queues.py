"""Queue configuration: ResourceFlavors, ClusterQueues, LocalQueues, cohorts, priority classes.

Kueue's model: a LocalQueue (per team/namespace) points at a ClusterQueue; a
ClusterQueue holds nominal quota per flavor and resource, in resource groups, and
may belong to a cohort whose members lend and borrow unused quota.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from detente.core.cluster import Cluster
from detente.core.quota import FR, Quota, QuotaNode, QuotaTree


class QueueingStrategy(StrEnum):
    #: A head that does not fit blocks everything behind it in its ClusterQueue.
    STRICT_FIFO = "StrictFIFO"
    #: A head that does not fit is set aside; later workloads may go first (Kueue's default).
    BEST_EFFORT_FIFO = "BestEffortFIFO"


@dataclass(frozen=True, slots=True)
class ResourceFlavor:
    """A kind of node. ``node_labels`` select its nodes; empty selects all nodes."""

    name: str
    node_labels: Mapping[str, str] = field(default_factory=dict)
    topology: str | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.node_labels.items())


@dataclass(frozen=True, slots=True)
class ResourceGroup:
    """Resources that always take the same flavor; flavors are tried in order."""

    covered: tuple[str, ...]
    flavors: tuple[str, ...]


class WithinClusterQueue(StrEnum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    LOWER_OR_NEWER_EQUAL_PRIORITY = "LowerOrNewerEqualPriority"


class ReclaimWithinCohort(StrEnum):
    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"
    ANY = "Any"


@dataclass(frozen=True, slots=True)
class PreemptionPolicy:
    """Kueue's ClusterQueue ``spec.preemption``; Kueue's defaults are Never and Never."""

    within_cluster_queue: WithinClusterQueue = WithinClusterQueue.NEVER
    reclaim_within_cohort: ReclaimWithinCohort = ReclaimWithinCohort.NEVER


@dataclass(frozen=True, slots=True)
class ClusterQueue:
    name: str
    groups: tuple[ResourceGroup, ...] = ()
    quotas: Mapping[FR, Quota] = field(default_factory=dict)
    cohort: str | None = None
    strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO
    #: None: the profile's default policy applies.
    preemption: PreemptionPolicy | None = None


@dataclass(frozen=True, slots=True)
class Cohort:
    name: str
    parent: str | None = None
    quotas: Mapping[FR, Quota] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LocalQueue:
    """``namespace/name`` → ClusterQueue. Workloads name their LocalQueue by key."""

    name: str
    cluster_queue: str
    namespace: str = "default"
    #: Fair-share weight (Kueue's LocalQueue ``spec.fairSharing.weight``).
    weight: float = 1.0

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class PriorityClass:
    name: str
    value: int
    description: str = ""
    #: LocalQueue names whose jobs may use this class; None: every queue.
    allowed_queues: tuple[str, ...] | None = None


def cohort_node(name: str) -> str:
    """Cohorts and ClusterQueues share the quota tree's name space."""
    return f"cohort:{name}"


class QueueConfig:
    """All queue objects, checked for consistency and turned into a quota tree.

    Raises ValueError naming the object and field on a dangling reference.
    """

    def __init__(
        self,
        *,
        flavors: Sequence[ResourceFlavor] = (),
        cluster_queues: Sequence[ClusterQueue] = (),
        local_queues: Sequence[LocalQueue] = (),
        cohorts: Sequence[Cohort] = (),
        priority_classes: Sequence[PriorityClass] = (),
    ) -> None:
        self.flavors = {f.name: f for f in flavors}
        self.cluster_queues = {c.name: c for c in cluster_queues}
        self.local_queues = {lq.key: lq for lq in local_queues}
        self.priority_classes = {p.name: p for p in priority_classes}
        self._check_refs()
        self.tree = QuotaTree(self._quota_nodes(cohorts))

    def _check_refs(self) -> None:
        for lq in self.local_queues.values():
            if lq.cluster_queue not in self.cluster_queues:
                raise ValueError(
                    f"LocalQueue {lq.key}: spec.clusterQueue: unknown ClusterQueue "
                    f"{lq.cluster_queue!r}"
                )
        for cq in self.cluster_queues.values():
            for gi, g in enumerate(cq.groups):
                for f in g.flavors:
                    if f not in self.flavors:
                        raise ValueError(
                            f"ClusterQueue {cq.name}: spec.resourceGroups[{gi}].flavors: "
                            f"unknown ResourceFlavor {f!r}"
                        )

    def _quota_nodes(self, cohorts: Sequence[Cohort]) -> list[QuotaNode]:
        declared = {c.name: c for c in cohorts}
        for cq in self.cluster_queues.values():
            if cq.cohort and cq.cohort not in declared:
                declared[cq.cohort] = Cohort(cq.cohort)  # implicit, as in Kueue
        for c in list(declared.values()):
            if c.parent and c.parent not in declared:
                declared[c.parent] = Cohort(c.parent)
        nodes = [
            QuotaNode(cohort_node(c.name), cohort_node(c.parent) if c.parent else None, c.quotas)
            for c in declared.values()
        ]
        nodes += [
            QuotaNode(cq.name, cohort_node(cq.cohort) if cq.cohort else None, cq.quotas)
            for cq in self.cluster_queues.values()
        ]
        return nodes

    def cluster_queue_of(self, local_queue: str) -> ClusterQueue | None:
        lq = self.local_queues.get(local_queue)
        return self.cluster_queues[lq.cluster_queue] if lq else None

    def flavor_assignments(
        self, cq: ClusterQueue, resources: Sequence[str]
    ) -> Iterator[dict[str, str]] | str:
        """Yields resource → flavor maps in preference order, or the uncovered resource."""
        groups: list[ResourceGroup] = []
        for r in resources:
            g = next((g for g in cq.groups if r in g.covered), None)
            if g is None:
                return r
            if g not in groups:
                groups.append(g)
        combos = itertools.islice(itertools.product(*(g.flavors for g in groups)), 16)
        return ({r: combo[i] for i, g in enumerate(groups) for r in g.covered} for combo in combos)

    def flavor_nodes(self, cluster: Cluster, flavors: set[str]) -> frozenset[int] | None:
        """Nodes matching every flavor's labels; None means all nodes."""
        wanted = [self.flavors[f] for f in sorted(flavors) if self.flavors[f].node_labels]
        if not wanted:
            return None
        return frozenset(
            i for i, n in enumerate(cluster.nodes) if all(f.matches(n.labels) for f in wanted)
        )
