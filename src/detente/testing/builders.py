"""Fluent builders: every step is named, so a test reads as its scenario."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType

from detente.core.cluster import Cluster, Node, NodeCondition
from detente.core.queues import (
    ClusterQueue,
    LocalQueue,
    QueueConfig,
    QueueingStrategy,
    ResourceFlavor,
    ResourceGroup,
)
from detente.core.quota import Quota
from detente.core.resources import CPU, GPU, MEMORY, MILLI, Resources
from detente.core.snapshot import Snapshot
from detente.core.workload import NodeFilter, PodSet, TopologyMode, TopologyRequest, Workload

BLOCK = "topology.detente.dev/block"
RACK = "topology.detente.dev/rack"
LEVELS = (BLOCK, RACK)


class NodeBuilder:
    def __init__(self, name: str) -> None:
        self._name = name
        self._res = {GPU: 8 * MILLI, CPU: 64 * MILLI, MEMORY: 512 * 2**30}
        self._labels: dict[str, str] = {}
        self._cond = NodeCondition.UP

    def gpus(self, n: int) -> NodeBuilder:
        self._res[GPU] = n * MILLI
        return self

    def cpus(self, n: int) -> NodeBuilder:
        self._res[CPU] = n * MILLI
        return self

    def in_rack(self, rack: str, block: str = "b1") -> NodeBuilder:
        self._labels.update({BLOCK: block, RACK: rack})
        return self

    def label(self, key: str, value: str) -> NodeBuilder:
        self._labels[key] = value
        return self

    def down(self) -> NodeBuilder:
        self._cond = NodeCondition.DOWN
        return self

    def build(self) -> Node:
        return Node(
            self._name, Resources(self._res), MappingProxyType(dict(self._labels)), self._cond
        )


def a_node(name: str) -> NodeBuilder:
    return NodeBuilder(name)


def racks(counts: dict[str, int], gpus: int = 8, block: str = "b1") -> list[Node]:
    """Nodes named ``<rack>-n<i>`` in each rack, all in one block."""
    return [
        a_node(f"{r}-n{i}").gpus(gpus).in_rack(r, block).build()
        for r, n in counts.items()
        for i in range(n)
    ]


class JobBuilder:
    def __init__(self, name: str) -> None:
        self._w = Workload(name=name, queue="default/team", pod_sets=())
        self._count, self._gpus, self._per_node = 1, 0.0, False

    def nodes(self, n: int, gpus: float = 8) -> JobBuilder:
        self._count, self._gpus, self._per_node = n, gpus, True
        return self

    def replicas(self, n: int, gpus: float = 1) -> JobBuilder:
        self._count, self._gpus, self._per_node = n, gpus, False
        return self

    def queue(self, q: str) -> JobBuilder:
        self._w = replace(self._w, queue=q if "/" in q else f"default/{q}")
        return self

    def priority(self, p: int) -> JobBuilder:
        self._w = replace(self._w, priority=p)
        return self

    def submitted(self, t: float, seq: int | None = None) -> JobBuilder:
        self._w = replace(self._w, submit_time=t, seq=self._w.seq if seq is None else seq)
        return self

    def seq(self, s: int) -> JobBuilder:
        self._w = replace(self._w, seq=s)
        return self

    def exclusive(self) -> JobBuilder:
        self._w = replace(self._w, exclusive=True)
        return self

    def requires(self, level: str) -> JobBuilder:
        self._w = replace(self._w, topology=TopologyRequest(TopologyMode.REQUIRED, level))
        return self

    def prefers(self, level: str) -> JobBuilder:
        self._w = replace(self._w, topology=TopologyRequest(TopologyMode.PREFERRED, level))
        return self

    def only_on(
        self, names: tuple[str, ...] = (), exclude: tuple[str, ...] = (), features: str = ""
    ) -> JobBuilder:
        """Slurm's ``-w NAMES``, ``-x EXCLUDE`` and ``-C FEATURES`` (``a&b|c``)."""
        alts = tuple(frozenset(a.split("&")) for a in features.split("|") if a)
        f = NodeFilter(frozenset(names), frozenset(exclude), alts)
        self._w = replace(self._w, node_filter=f)
        return self

    def build(self) -> Workload:
        req = Resources.of(gpus=self._gpus, cpu_milli=1000, memory=2**30)
        ps = PodSet("main", self._count, req, one_per_node=self._per_node)
        return replace(self._w, pod_sets=(ps,))


def a_job(name: str) -> JobBuilder:
    return JobBuilder(name)


@dataclass
class CQBuilder:
    name: str
    cohort: str | None = None
    gpus: float = 1_000_000
    borrowing: float | None = None
    lending: float | None = None
    strategy: QueueingStrategy = QueueingStrategy.BEST_EFFORT_FIFO
    flavors: tuple[str, ...] = ("default",)

    def build(self) -> ClusterQueue:
        big = Quota(10**15)
        quotas = {}
        for f in self.flavors:
            quotas[(f, GPU)] = Quota(
                round(self.gpus * MILLI),
                None if self.borrowing is None else round(self.borrowing * MILLI),
                None if self.lending is None else round(self.lending * MILLI),
            )
            quotas[(f, CPU)] = big
            quotas[(f, MEMORY)] = big
        group = ResourceGroup((GPU, CPU, MEMORY), self.flavors)
        return ClusterQueue(self.name, (group,), quotas, self.cohort, self.strategy)


def a_cluster_queue(name: str, **kw: object) -> CQBuilder:
    return CQBuilder(name, **kw)  # type: ignore[arg-type]


@dataclass
class World:
    """A cluster plus queues: ``World(nodes).queue("team", a_cluster_queue("cq")).snapshot()``."""

    nodes: list[Node]
    levels: tuple[str, ...] = LEVELS
    cqs: list[ClusterQueue] = field(default_factory=list)
    lqs: list[LocalQueue] = field(default_factory=list)
    flavors: list[ResourceFlavor] = field(default_factory=lambda: [ResourceFlavor("default")])

    def queue(self, local: str, cq: CQBuilder) -> World:
        built = cq.build()
        if all(c.name != built.name for c in self.cqs):
            self.cqs.append(built)
        self.lqs.append(LocalQueue(local, built.name))
        return self

    def snapshot(self) -> Snapshot:
        if not self.cqs:
            self.queue("team", a_cluster_queue("cq"))
        cluster = Cluster(self.nodes, self.levels)
        cfg = QueueConfig(flavors=self.flavors, cluster_queues=self.cqs, local_queues=self.lqs)
        return Snapshot(cluster, cfg)
