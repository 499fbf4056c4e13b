"""Profiles: which plugins run, with which weights. A profile is data, not a branch.

Named profiles model real systems faithfully, weaknesses included (see
docs/profiles.md); ``detente`` is the best we can build. `build` is the one way to
get a profile by name; `SORTS`, `SCORES`, `PLACEMENTS`, `ADMITS` and
`POST_FILTERS` map plugin names to factories, and `custom` assembles a profile from
them (a Profile file names them: `detente.api.profiles`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from detente.core.framework import (
    Admit,
    Placement,
    PostFilter,
    QueueSort,
    QuotaFit,
    Score,
    WeightedScore,
)
from detente.core.plugins.admit import BackfillMode, PlaceNow, QuotaThenBind, SlurmBackfill
from detente.core.plugins.binpack import GpuBinpack, GpuSpread
from detente.core.plugins.fgd import FragmentationGradient
from detente.core.plugins.k8s_resources import BalancedAllocation, CpuMemBinpack, LeastAllocated
from detente.core.plugins.podwise import PodByPod
from detente.core.plugins.post_filter import NoPreemption, QueuePreemption
from detente.core.plugins.priority_sort import DrfSort, FifoSort, PrioritySort
from detente.core.plugins.quota_fit import CohortQuota, NoQuota
from detente.core.plugins.topology import TopologyBestFit
from detente.core.priority import MultifactorSort, Weights
from detente.core.queues import PreemptionPolicy, ReclaimWithinCohort, WithinClusterQueue


@dataclass(frozen=True, slots=True)
class Profile:
    """One scheduler configuration.

    ``gang``: admit all pods of a workload or none (False: pod by pod, partial holds).
    ``quota_fit``, ``admit``, ``post_filter``: the cycle's extension points for quota,
    admission now (with or without backfill) and preemption (`detente.core.framework`).
    ``heads_per_queue``: workloads a ClusterQueue may try per cycle (None: all).
    ``seed``: what callers should seed the run's RNG with (plugins that break ties at
    random use it; the core itself never creates one).
    """

    name: str
    queue_sort: QueueSort
    placement: Placement
    scores: tuple[WeightedScore, ...] = ()
    gang: bool = True
    quota_fit: QuotaFit = field(default_factory=CohortQuota)
    admit: Admit = field(default_factory=PlaceNow)
    post_filter: PostFilter = field(default_factory=NoPreemption)
    heads_per_queue: int | None = None
    seed: int = 0
    #: Planning limit for work without a time limit (None: it never ends, for planning).
    default_time_limit: float | None = None
    #: A blocked workload stops every later one in its ClusterQueue (Slurm sched/builtin).
    strict_priority: bool = False
    #: Fair-share usage half-life, seconds (Slurm's PriorityDecayHalfLife, 7 days).
    half_life: float = 7 * 86_400.0
    #: How often drivers recompute priorities, seconds (Slurm's PriorityCalcPeriod).
    calc_period: float = 300.0
    #: Policy for ClusterQueues that set none (Kueue's defaults: Never, Never).
    preemption: PreemptionPolicy = field(default_factory=PreemptionPolicy)
    #: Only workloads marked preemptible may be victims.
    preemptible_only: bool = False
    #: Pod-by-pod binding preempts single lower-priority pods (kube's DefaultPreemption).
    pod_preemption: bool = False
    #: Grace for victims that declare none (kube's terminationGracePeriodSeconds, 30 s).
    default_grace: float = 0.0

    @property
    def quota(self) -> bool:
        """Charges ClusterQueue quota (False: queues are ignored, as in plain k8s)."""
        return self.quota_fit.charges

    @property
    def borrowing(self) -> bool:
        """Quota may be borrowed from the cohort (False: nominal quota is a hard cap)."""
        return self.quota_fit.borrowing


SORTS: Mapping[str, Callable[[], QueueSort]] = MappingProxyType(
    {
        "PrioritySort": PrioritySort,
        "FifoSort": FifoSort,
        "DrfSort": DrfSort,
        "Multifactor": MultifactorSort,
    }
)
SCORES: Mapping[str, Callable[[], Score]] = MappingProxyType(
    {
        "GpuBinpack": GpuBinpack,
        "GpuSpread": GpuSpread,
        "FGD": FragmentationGradient,
        "NodeResourcesFit": LeastAllocated,
        "NodeResourcesBalancedAllocation": BalancedAllocation,
        "VolcanoBinpack": CpuMemBinpack,
    }
)
PLACEMENTS: Mapping[str, Callable[[], Placement]] = MappingProxyType(
    {"TopologyBestFit": TopologyBestFit, "PodByPod": PodByPod}
)
ADMITS: Mapping[str, Callable[[], Admit]] = MappingProxyType(
    {
        "PlaceNow": PlaceNow,
        "SlurmBackfill": SlurmBackfill,
        "EasyBackfill": lambda: SlurmBackfill(BackfillMode.EASY, reserve_limit=1),
        "QuotaThenBind": QuotaThenBind,
    }
)
POST_FILTERS: Mapping[str, Callable[[], PostFilter]] = MappingProxyType(
    {"NoPreemption": NoPreemption, "QueuePreemption": QueuePreemption}
)


def _k8s(seed: int) -> Profile:
    return Profile(
        name="k8s",
        queue_sort=PrioritySort(),
        placement=PodByPod(),
        scores=(
            WeightedScore(LeastAllocated(), 1),
            WeightedScore(BalancedAllocation(), 1),
        ),
        gang=False,
        quota_fit=NoQuota(),
        seed=seed,
        pod_preemption=True,
        default_grace=30.0,
    )


def _detente(seed: int) -> Profile:
    return Profile(
        name="detente",
        # Class first; then small declared work (GPUs × time limit: shortest job first
        # from what users declare), decayed fair share and age; each term visible in plan.
        # Reservations keep the large jobs this order puts last from starving.
        queue_sort=MultifactorSort(Weights(qos=10_000, work=8_000, fairshare=2_000, age=2_000)),
        placement=TopologyBestFit(compact=True),
        scores=(WeightedScore(GpuBinpack(), 1),),
        seed=seed,
        # Reservations are whole nodes (as Slurm's): past the first few dozen blocked
        # workloads they mostly hold nodes for small jobs far ahead, and each costs a
        # placement per cycle. Age still lifts everyone into this window.
        admit=SlurmBackfill(BackfillMode.CONSERVATIVE, max_job_test=32),
        post_filter=QueuePreemption(),
        preemption=PreemptionPolicy(WithinClusterQueue.LOWER_PRIORITY, ReclaimWithinCohort.ANY),
        preemptible_only=True,
    )


def _slurm(seed: int, backfill: BackfillMode | None = BackfillMode.CONSERVATIVE) -> Profile:
    """sched/backfill (conservative, bf_max_job_test 500, bf_window 1 day), select/cons_tres
    with topology/tree best fit; partitions are ClusterQueues without borrowing; no
    preemption (PreemptType=preempt/none). Priority weights default to 0 → FIFO."""
    names = {BackfillMode.CONSERVATIVE: "slurm", BackfillMode.EASY: "slurm-easy"}
    return Profile(
        name="slurm-builtin" if backfill is None else names[backfill],
        # Every PriorityWeight* defaults to 0: the order is submit time, then job id.
        queue_sort=MultifactorSort(Weights()),
        placement=TopologyBestFit(compact=True),
        scores=(WeightedScore(GpuBinpack(), 1),),
        seed=seed,
        admit=(
            SlurmBackfill(
                backfill,
                max_job_test=500,
                window=86_400.0,
                reserve_limit=1 if backfill == BackfillMode.EASY else None,
            )
            if backfill
            else PlaceNow()
        ),
        strict_priority=backfill is None,
        quota_fit=CohortQuota(borrowing=False),
    )


def _kueue(seed: int, tas: bool = False) -> Profile:
    """ClusterQueue quota with cohorts, BestEffortFIFO, one head per ClusterQueue per
    cycle, all-or-nothing quota reservation; preemption as each ClusterQueue says
    (Kueue's defaults: Never). Without TAS, admission checks quota only and
    kube-scheduler then binds pods one by one; with TAS, placement is checked at
    admission with topology BestFit."""
    k8s = _k8s(seed)
    return Profile(
        name="kueue-tas" if tas else "kueue",
        queue_sort=PrioritySort(),
        placement=TopologyBestFit(compact=False) if tas else k8s.placement,
        scores=() if tas else k8s.scores,
        heads_per_queue=1,
        seed=seed,
        post_filter=QueuePreemption(),
        admit=PlaceNow() if tas else QuotaThenBind(),
    )


def _volcano(seed: int) -> Profile:
    """Helm defaults: gang (commit only when minMember tasks place), DRF queue order,
    proportion queues (nominal quota as deserved, capability by borrowing), binpack on
    cpu and memory, predicates; preempt and reclaim not enabled; no reservations."""
    return Profile(
        name="volcano",
        queue_sort=DrfSort(),
        placement=PodByPod(),
        scores=(WeightedScore(CpuMemBinpack(), 1), WeightedScore(LeastAllocated(), 1)),
        seed=seed,
    )


PROFILES: Mapping[str, Callable[[int], Profile]] = MappingProxyType(
    {
        "k8s": _k8s,
        "kueue": _kueue,
        "kueue-tas": lambda seed: _kueue(seed, tas=True),
        "volcano": _volcano,
        "detente": _detente,
        "slurm": _slurm,
        "slurm-easy": lambda seed: _slurm(seed, BackfillMode.EASY),
        "slurm-builtin": lambda seed: _slurm(seed, None),
    }
)


def build(name: str, seed: int = 0) -> Profile:
    """The named profile; raises KeyError listing the known names."""
    try:
        return PROFILES[name](seed)
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def custom(
    name: str,
    *,
    sort: str = "PrioritySort",
    placement: str = "TopologyBestFit",
    scores: Mapping[str, float] | None = None,
    gang: bool = True,
    quota: bool = True,
    borrowing: bool = True,
    admit: str = "PlaceNow",
    post_filter: str = "NoPreemption",
    heads_per_queue: int | None = None,
    seed: int = 0,
) -> Profile:
    """A profile assembled from plugin names (KeyError on an unknown name)."""
    return Profile(
        name=name,
        queue_sort=SORTS[sort](),
        placement=PLACEMENTS[placement](),
        scores=tuple(WeightedScore(SCORES[s](), w) for s, w in (scores or {}).items()),
        gang=gang,
        quota_fit=CohortQuota(borrowing) if quota else NoQuota(),
        admit=ADMITS[admit](),
        post_filter=POST_FILTERS[post_filter](),
        heads_per_queue=heads_per_queue,
        seed=seed,
    )
