"""Extension points: one small protocol each, as in kube-scheduler's framework.

* `QueueSort` orders pending workloads.
* `Score` rates a node for one pod (0–100; higher is better).
* `Placement` chooses nodes for a pod set and stages them in a `Statement`.

A `PlaceContext` carries what placement needs for one workload; plugins never
mutate anything but the statement they are given.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from detente.core.cluster import Cluster
from detente.core.resources import Resources
from detente.core.state import ClusterState
from detente.core.statement import Statement
from detente.core.status import Status
from detente.core.workload import PodSet, Workload

T = TypeVar("T")


class Rng(Protocol):
    """The random choices a plugin may make; `random.Random(seed)` satisfies it.

    The core never creates one: callers pass a seeded instance, so runs repeat.
    """

    def randrange(self, stop: int, /) -> int: ...

    def choice(self, seq: Sequence[T], /) -> T: ...


class FirstChoice:
    """A deterministic `Rng` for callers that give none: always the first option."""

    def randrange(self, stop: int, /) -> int:
        return 0

    def choice(self, seq: Sequence[T], /) -> T:
        return seq[0]


@dataclass(frozen=True, slots=True)
class PriorityContext:
    """What the factors are computed from; built by the caller once per calc period."""

    now: float = 0.0
    total_nodes: int = 1
    total_gpus: float = 1.0
    max_class_value: int = 0
    fairshare: Mapping[str, float] = field(default_factory=dict)
    #: Dominant share of current allocation per LocalQueue (Volcano's DRF order).
    allocation_share: Mapping[str, float] = field(default_factory=dict)


class QueueSort(Protocol):
    name: str

    def sort_key(self, w: Workload, ctx: PriorityContext) -> tuple[Hashable, ...]:
        """Smaller keys go first; must end in ``w.seq`` so keys are unique."""
        ...

    def explain(self, w: Workload, ctx: PriorityContext) -> dict[str, float]:
        """The named terms behind the order, for users (like Slurm's sprio)."""
        ...


class Score(Protocol):
    name: str

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        """0–100 for placing one pod of ``request`` on ``node``; the pod fits there."""
        ...


@dataclass(frozen=True, slots=True)
class WeightedScore:
    plugin: Score
    weight: float


@dataclass(slots=True)
class PlaceContext:
    """One workload's placement inputs. ``nodes`` None means every node is eligible."""

    state: ClusterState
    workload: Workload
    nodes: frozenset[int] | None
    scores: tuple[WeightedScore, ...]
    rng: Rng
    #: Nodes this workload already holds from earlier cycles (pod-by-pod profiles).
    taken: frozenset[int] = frozenset()

    @property
    def cluster(self) -> Cluster:
        return self.state.cluster

    def eligible(self, node: int) -> bool:
        return self.nodes is None or node in self.nodes

    def node_score(self, node: int, request: Resources) -> float:
        return sum(s.weight * s.plugin.score(self.state, node, request) for s in self.scores)


class Placement(Protocol):
    name: str

    def place(self, ctx: PlaceContext, pod_set: PodSet, count: int, stmt: Statement) -> Status:
        """Stages ``count`` pods of ``pod_set`` or as many as it can, returning why not all.

        On failure the plugin leaves partial pods staged; the caller decides whether
        to keep them (pod-by-pod profiles) or roll back (gangs).
        """
        ...
