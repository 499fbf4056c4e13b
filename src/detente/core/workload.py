"""Workloads: the unit of admission (a Kueue Workload, a Slurm job, a service replica set)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from detente.core.cluster import Node
from detente.core.resources import Resources


class TopologyMode(StrEnum):
    """How a pod set asks to be packed into a topology domain (Kueue's TAS annotations)."""

    #: All pods inside one domain of the level, or wait.
    REQUIRED = "required"
    #: Try one domain of the level, climb up the tree if none fits, finally split.
    PREFERRED = "preferred"


@dataclass(frozen=True, slots=True)
class TopologyRequest:
    mode: TopologyMode
    #: The level's node label key, e.g. ``topology.detente.dev/rack``.
    level: str


@dataclass(frozen=True, slots=True)
class NodeFilter:
    """Which nodes a workload may use (Slurm's ``-w``, ``-x`` and ``-C``): one of
    ``names`` if any are given, none of ``exclude``, and only nodes whose features
    (`detente.core.cluster.Node.features`) hold one of the ``features`` sets whole
    (``a&b|c`` is ``({a, b}, {c})``; empty: any node)."""

    names: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    features: tuple[frozenset[str], ...] = ()

    def allows(self, node: Node) -> bool:
        if (self.names and node.name not in self.names) or node.name in self.exclude:
            return False
        return not self.features or any(f <= node.features for f in self.features)


@dataclass(frozen=True, slots=True)
class PodSet:
    """``count`` identical pods, each requesting ``request``.

    ``one_per_node`` places each pod on a different node (Slurm's ``--nodes=N``).
    ``min_count`` is the gang minimum; ``None`` means all ``count`` pods.
    """

    name: str
    count: int
    request: Resources
    one_per_node: bool = False
    min_count: int | None = None

    @property
    def total(self) -> Resources:
        return self.request.scaled(self.count)


@dataclass(frozen=True, slots=True)
class Workload:
    """What a user submitted, as the scheduler sees it. Immutable; state lives elsewhere.

    ``seq`` is the submission sequence number; it breaks every tie, so equal inputs
    always give equal decisions.
    """

    name: str
    queue: str
    pod_sets: tuple[PodSet, ...]
    seq: int = 0
    submit_time: float = 0.0
    priority: int = 0
    priority_class: str = ""
    time_limit: float | None = None
    exclusive: bool = False
    topology: TopologyRequest | None = None
    gang: bool = True
    preemptible: bool = False
    checkpoint_grace: float = 0.0
    user: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    #: Nodes it may use (None: any).
    node_filter: NodeFilter | None = None
    #: Summed requests of every pod of every pod set (what quota is charged).
    total: Resources = field(init=False, repr=False, compare=False)
    #: Equal for workloads that fit or fail alike (pod sets, exclusivity, topology).
    shape: Hashable = field(init=False, repr=False, compare=False)
    pod_count: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        out = Resources()
        for ps in self.pod_sets:
            out = out + ps.total
        object.__setattr__(self, "total", out)
        sets = tuple((ps.count, ps.request, ps.one_per_node) for ps in self.pod_sets)
        object.__setattr__(self, "shape", (sets, self.exclusive, self.topology, self.node_filter))
        object.__setattr__(self, "pod_count", sum(ps.count for ps in self.pod_sets))

    @property
    def gpus(self) -> float:
        return self.total.gpu_milli / 1000


@dataclass(frozen=True, slots=True)
class PodPlacement:
    """Where one pod runs: node index in the cluster and the GPU devices it holds."""

    pod_set: str
    index: int
    node: int
    devices: tuple[int, ...] = ()
    #: Set when this pod alone was preempted (pod-by-pod profiles): gone by this time.
    evicting_until: float | None = None


@dataclass(slots=True)
class Admission:
    """A workload's granted quota (per flavor) and pod placements.

    For a gang this is all pods; for the ``k8s`` profile it may be a prefix of them
    (``complete`` is then False and the workload keeps waiting for the rest).
    """

    workload: Workload
    cluster_queue: str
    #: resource → flavor charged for it; empty when the profile has no quota.
    flavors: Mapping[str, str]
    placements: list[PodPlacement] = field(default_factory=list)
    start_time: float = 0.0
    #: Set when preempted: the workload keeps its pods until this time (its checkpoint grace).
    evicting_until: float | None = None

    @property
    def complete(self) -> bool:
        return len(self.placements) == self.workload.pod_count
