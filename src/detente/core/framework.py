"""Extension points: one small protocol each, as in kube-scheduler's framework.

* `QueueSort` orders pending workloads.
* `Score` rates a node for one pod (0–100; higher is better).
* `Placement` chooses nodes for a pod set and stages them in a `Statement`.
* `QuotaFit` says which ClusterQueue a workload charges and whether it would borrow.
* `Admit` starts, per cycle, the step that admits now and, blocked, reserves for
  later (`detente.core.plugins.admit`: place now, Slurm's backfill, Kueue's quota
  reservation without TAS).
* `PostFilter` starts, per cycle, the step that frees room for a blocked workload
  (`detente.core.plugins.post_filter`: none, Kueue's preemption).

A `PlaceContext` carries what placement needs for one workload; plugins never
mutate anything but the statement they are given.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from detente.core.cluster import Cluster
from detente.core.resources import Resources
from detente.core.state import ClusterState
from detente.core.statement import Statement
from detente.core.status import Status
from detente.core.workload import PodSet, Workload

if TYPE_CHECKING:
    from detente.core.cycle import CycleResult
    from detente.core.preemption import Preemption
    from detente.core.profiles import Profile
    from detente.core.queue_manager import QueueManager
    from detente.core.queues import ClusterQueue
    from detente.core.snapshot import Snapshot
    from detente.core.workload import Admission

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


class QuotaFit(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def charges(self) -> bool:
        """Charges ClusterQueue quota at all (False: queues are ignored, as in plain k8s)."""
        ...

    @property
    def borrowing(self) -> bool:
        """Quota may be borrowed from the cohort (False: nominal quota is a hard cap)."""
        ...

    def resolve(self, snap: Snapshot, w: Workload) -> tuple[ClusterQueue | None, Status | None]:
        """The ClusterQueue ``w`` charges (None: none), or why it cannot be resolved.
        Depends on ``w.queue`` and the configuration alone (a cycle asks once per
        LocalQueue)."""
        ...

    def would_borrow(self, snap: Snapshot, w: Workload) -> bool:
        """Would ``w`` borrow from its cohort if admitted now (it then goes after those
        that fit within nominal quota)?"""
        ...


class AdmitCycle(Protocol):
    """One cycle's admission step. Contract: used for one cycle on one snapshot."""

    #: Placement is checked at admission, and nothing can be reserved: a workload
    #: needing more GPUs than are free may be rejected without trying. Once True in a
    #: cycle, True for the rest of it (the cycle remembers such rejections).
    def may_skip_when_full(self) -> bool: ...

    def admit_now(
        self, w: Workload, cq: ClusterQueue | None, rng: Rng
    ) -> tuple[Status, Admission | None]:
        """Admits ``w`` now, staged on the snapshot with quota charged, or says why not."""
        ...

    def blocked(self, w: Workload, cq: ClusterQueue | None, rng: Rng, why: Status) -> Status:
        """``w`` did not start: reserve for it where the step does; the status to report."""
        ...

    def finish(self, queues: QueueManager, rng: Rng, res: CycleResult) -> None:
        """Ends the cycle: restores cordoned state, records reservations, binds pods."""
        ...


class Admit(Protocol):
    @property
    def name(self) -> str: ...

    def start(
        self, snap: Snapshot, queues: QueueManager, profile: Profile, now: float
    ) -> AdmitCycle: ...


class Preempting(Protocol):
    """One cycle's preemption step."""

    def worth_trying(self, w: Workload, cq: ClusterQueue) -> bool:
        """Could any running workload be a victim for ``w``? Cheap; False when none could.
        Depends on ``w`` through its priority alone, and once False for a ClusterQueue
        and a priority, False for the rest of the cycle."""
        ...

    def run(
        self, w: Workload, cq: ClusterQueue, rng: Rng, now: float
    ) -> tuple[Status, list[Preemption]]:
        """Chooses victims and marks them evicting, or says why none would do."""
        ...


class PostFilter(Protocol):
    @property
    def name(self) -> str: ...

    def start(self, snap: Snapshot, profile: Profile) -> Preempting: ...
