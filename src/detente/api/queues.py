"""Kueue queue documents → `QueueConfig`, checking every cross reference with its path.

With no ClusterQueue at all, a default one is made (flavor ``default``, unlimited
quota for every resource, LocalQueue ``default/default``) so a file of nodes and
jobs plans on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel

from detente.api import manifests as m
from detente.api.quantity import canonical
from detente.core.queues import (
    ClusterQueue,
    Cohort,
    LocalQueue,
    PreemptionPolicy,
    PriorityClass,
    QueueConfig,
    QueueingStrategy,
    ReclaimWithinCohort,
    ResourceFlavor,
    ResourceGroup,
    WithinClusterQueue,
)
from detente.core.quota import FR, Quota

if TYPE_CHECKING:
    from detente.api.problems import Problems, Source

DEFAULT_RESOURCES = ("nvidia.com/gpu", "cpu", "memory")


class QueueBuilder:
    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.docs: list[tuple[Source, BaseModel]] = []
        self.levels: tuple[str, ...] = ()

    def add(self, src: Source, doc: BaseModel) -> None:
        self.docs.append((src, doc))

    def _of(self, kind: type[BaseModel]) -> list[tuple[Source, BaseModel]]:
        return [(s, d) for s, d in self.docs if isinstance(d, kind)]

    def build(self) -> QueueConfig | None:
        topologies = {d.metadata.name: (s, d) for s, d in self._of(m.TopologyDoc)}  # type: ignore[attr-defined]
        flavors = [self._flavor(s, d, topologies) for s, d in self._of(m.ResourceFlavorDoc)]  # type: ignore[arg-type]
        self._pick_levels(flavors, topologies)
        cqs = [self._cq(s, d) for s, d in self._of(m.ClusterQueueDoc)]  # type: ignore[arg-type]
        cohorts = [self._cohort(s, d) for s, d in self._of(m.CohortDoc)]  # type: ignore[arg-type]
        lqs = [
            LocalQueue(
                d.metadata.name,  # type: ignore[attr-defined]
                d.spec.clusterQueue,  # type: ignore[attr-defined]
                d.metadata.namespace,  # type: ignore[attr-defined]
                d.spec.fairSharing.weight if d.spec.fairSharing else 1.0,  # type: ignore[attr-defined]
            )
            for _, d in self._of(m.LocalQueueDoc)
        ]
        pcs = [
            PriorityClass(
                d.metadata.name,
                d.value,
                d.description,  # type: ignore[attr-defined]
                None if d.allowedQueues is None else tuple(d.allowedQueues),  # type: ignore[attr-defined]
            )
            for _, d in self._of(m.WorkloadPriorityClassDoc)
        ]
        if not cqs:
            flavors = flavors or [ResourceFlavor("default")]
            cqs = [self._default_cq(flavors[0].name)]
            lqs = lqs or [LocalQueue("default", "default")]
        self._check_refs(flavors, cqs)
        if self.problems.items:
            return None
        try:
            return QueueConfig(
                flavors=flavors, cluster_queues=cqs, local_queues=lqs, cohorts=cohorts,
                priority_classes=pcs,
            )  # fmt: skip
        except ValueError as e:
            self.problems.items.append(f"queues: {e}")
            return None

    def _pick_levels(
        self, flavors: list[ResourceFlavor], topologies: dict[str, tuple[Source, m.TopologyDoc]]
    ) -> None:
        """The cluster's levels: the first flavor's topology, else the only Topology."""
        name = next((f.topology for f in flavors if f.topology), None)
        if name is None and len(topologies) == 1:
            name = next(iter(topologies))
        if name is not None and name in topologies:
            self.levels = tuple(lv.nodeLabel for lv in topologies[name][1].spec.levels)

    def _flavor(
        self, src: Source, d: m.ResourceFlavorDoc, topologies: dict[str, object]
    ) -> ResourceFlavor:
        if d.spec.topologyName and d.spec.topologyName not in topologies:
            self.problems.add(src, "spec.topologyName", "unknown Topology", d.spec.topologyName)
        return ResourceFlavor(d.metadata.name, dict(d.spec.nodeLabels), d.spec.topologyName)

    def _quotas(
        self, src: Source, groups: list[m.ResourceGroupDoc]
    ) -> tuple[tuple[ResourceGroup, ...], dict[FR, Quota]]:
        out: dict[FR, Quota] = {}
        built = []
        for gi, g in enumerate(groups):
            for fi, f in enumerate(g.flavors):
                for ri, r in enumerate(f.resources):
                    path = f"spec.resourceGroups[{gi}].flavors[{fi}].resources[{ri}]"
                    if r.name not in g.coveredResources:
                        self.problems.add(src, f"{path}.name", "not in coveredResources", r.name)
                    out[(f.name, r.name)] = Quota(
                        self._qty(src, f"{path}.nominalQuota", r.name, r.nominalQuota) or 0,
                        self._qty(src, f"{path}.borrowingLimit", r.name, r.borrowingLimit),
                        self._qty(src, f"{path}.lendingLimit", r.name, r.lendingLimit),
                    )
            built.append(ResourceGroup(tuple(g.coveredResources), tuple(f.name for f in g.flavors)))
        return tuple(built), out

    def _qty(self, src: Source, path: str, res: str, value: m.Qty | None) -> int | None:
        if value is None:
            return None
        try:
            return canonical(res, value)
        except ValueError as e:
            self.problems.add(src, path, str(e))
            return None

    def _cq(self, src: Source, d: m.ClusterQueueDoc) -> ClusterQueue:
        groups, quotas = self._quotas(src, d.spec.resourceGroups)
        cohort = d.spec.cohortName or d.spec.cohort
        pre = d.spec.preemption
        policy = (
            PreemptionPolicy(
                WithinClusterQueue(pre.withinClusterQueue),
                ReclaimWithinCohort(pre.reclaimWithinCohort),
            )
            if pre is not None
            else None
        )
        strategy = QueueingStrategy(d.spec.queueingStrategy)
        return ClusterQueue(d.metadata.name, groups, quotas, cohort, strategy, policy)

    def _cohort(self, src: Source, d: m.CohortDoc) -> Cohort:
        _, quotas = self._quotas(src, d.spec.resourceGroups)
        return Cohort(d.metadata.name, d.spec.parentName or d.spec.parent, quotas)

    def _default_cq(self, flavor: str) -> ClusterQueue:
        unlimited = Quota(1 << 60)
        return ClusterQueue(
            "default",
            (ResourceGroup(DEFAULT_RESOURCES, (flavor,)),),
            {(flavor, r): unlimited for r in DEFAULT_RESOURCES},
        )

    def _check_refs(self, flavors: list[ResourceFlavor], cqs: list[ClusterQueue]) -> None:
        known_f = {f.name for f in flavors}
        known_cq = {c.name for c in cqs}
        for src, d in self._of(m.ClusterQueueDoc):
            for gi, g in enumerate(d.spec.resourceGroups):  # type: ignore[attr-defined]
                for fi, f in enumerate(g.flavors):
                    if f.name not in known_f:
                        path = f"spec.resourceGroups[{gi}].flavors[{fi}].name"
                        self.problems.add(src, path, "unknown ResourceFlavor", f.name)
        for src, d in self._of(m.LocalQueueDoc):
            if d.spec.clusterQueue not in known_cq:  # type: ignore[attr-defined]
                self.problems.add(
                    src, "spec.clusterQueue", "unknown ClusterQueue", d.spec.clusterQueue
                )  # type: ignore[attr-defined]
