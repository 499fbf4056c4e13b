"""Profiles: which plugins run, with which weights. A profile is data, not a branch.

Named profiles model real systems faithfully, weaknesses included (see
docs/profiles.md); ``detente`` is the best we can build. `build` is the one way to
get a profile by name; `SORTS`, `SCORES` and `PLACEMENTS` map plugin names to
factories, and `custom` assembles a profile from them (a Profile file names them:
`detente.api.profiles`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from detente.core.framework import Placement, QueueSort, Score, WeightedScore
from detente.core.plugins.binpack import GpuBinpack, GpuSpread
from detente.core.plugins.fgd import FragmentationGradient
from detente.core.plugins.k8s_resources import BalancedAllocation, CpuMemBinpack, LeastAllocated
from detente.core.plugins.podwise import PodByPod
from detente.core.plugins.priority_sort import DrfSort, FifoSort, PrioritySort
from detente.core.plugins.topology import TopologyBestFit
from detente.core.priority import MultifactorSort, Weights
from detente.core.queues import PreemptionPolicy, ReclaimWithinCohort, WithinClusterQueue


class BackfillMode(StrEnum):
    #: No look-ahead: what fits now starts now (Kueue, Volcano, kube-scheduler).
    NONE = "none"
    #: Reserve for the first ``reserve_limit`` blocked workloads only (EASY).
    EASY = "easy"
    #: Reserve for every blocked workload tested (Slurm's default).
    CONSERVATIVE = "conservative"


@dataclass(frozen=True, slots=True)
class Profile:
    """One scheduler configuration.

    ``gang``: admit all pods of a workload or none (False: pod by pod, partial holds).
    ``quota``: charge ClusterQueue quota (False: queues are ignored, as in plain k8s).
    ``heads_per_queue``: workloads a ClusterQueue may try per cycle (None: all).
    ``seed``: what callers should seed the run's RNG with (plugins that break ties at
    random use it; the core itself never creates one).
    """

    name: str
    queue_sort: QueueSort
    placement: Placement
    scores: tuple[WeightedScore, ...] = ()
    gang: bool = True
    quota: bool = True
    heads_per_queue: int | None = None
    seed: int = 0
    backfill: BackfillMode = BackfillMode.NONE
    #: Workloads backfill examines for a reservation per cycle (Slurm's bf_max_job_test).
    bf_max_job_test: int = 500
    #: How far ahead reservations may start, seconds (Slurm's bf_window, 1440 min).
    bf_window: float = 86_400.0
    #: EASY: how many blocked workloads get a reservation (bf_job_part_count_reserve).
    reserve_limit: int | None = None
    #: Planning limit for work without a time limit (None: it never ends, for planning).
    default_time_limit: float | None = None
    #: A blocked workload stops every later one in its ClusterQueue (Slurm sched/builtin).
    strict_priority: bool = False
    #: Admission checks placement too (False: Kueue without TAS — quota only, then
    #: pods bind one by one and may never all fit).
    placement_at_admission: bool = True
    #: Quota may be borrowed from the cohort (False: nominal quota is a hard cap).
    borrowing: bool = True
    #: Fair-share usage half-life, seconds (Slurm's PriorityDecayHalfLife, 7 days).
    half_life: float = 7 * 86_400.0
    #: How often drivers recompute priorities, seconds (Slurm's PriorityCalcPeriod).
    calc_period: float = 300.0
    #: Preempt at all (False: Slurm's preempt/none, Volcano without preempt/reclaim).
    preempts: bool = False
    #: Policy for ClusterQueues that set none (Kueue's defaults: Never, Never).
    preemption: PreemptionPolicy = field(default_factory=PreemptionPolicy)
    #: Only workloads marked preemptible may be victims.
    preemptible_only: bool = False
    #: Pod-by-pod binding preempts single lower-priority pods (kube's DefaultPreemption).
    pod_preemption: bool = False
    #: Grace for victims that declare none (kube's terminationGracePeriodSeconds, 30 s).
    default_grace: float = 0.0


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
        quota=False,
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
        backfill=BackfillMode.CONSERVATIVE,
        # Reservations are whole nodes (as Slurm's): past the first few dozen blocked
        # workloads they mostly hold nodes for small jobs far ahead, and each costs a
        # placement per cycle. Age still lifts everyone into this window.
        bf_max_job_test=32,
        preempts=True,
        preemption=PreemptionPolicy(WithinClusterQueue.LOWER_PRIORITY, ReclaimWithinCohort.ANY),
        preemptible_only=True,
    )


def _slurm(seed: int, backfill: BackfillMode = BackfillMode.CONSERVATIVE) -> Profile:
    """sched/backfill (conservative, bf_max_job_test 500, bf_window 1 day), select/cons_tres
    with topology/tree best fit; partitions are ClusterQueues without borrowing; no
    preemption (PreemptType=preempt/none). Priority weights default to 0 → FIFO."""
    return Profile(
        name="slurm" if backfill == BackfillMode.CONSERVATIVE else f"slurm-{backfill}",
        # Every PriorityWeight* defaults to 0: the order is submit time, then job id.
        queue_sort=MultifactorSort(Weights()),
        placement=TopologyBestFit(compact=True),
        scores=(WeightedScore(GpuBinpack(), 1),),
        seed=seed,
        backfill=backfill,
        bf_max_job_test=500,
        bf_window=86_400.0,
        reserve_limit=1 if backfill == BackfillMode.EASY else None,
        strict_priority=backfill == BackfillMode.NONE,
        borrowing=False,
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
        preempts=True,
        placement_at_admission=tas,
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
        "slurm-builtin": lambda seed: _slurm(seed, BackfillMode.NONE),
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
        quota=quota,
        heads_per_queue=heads_per_queue,
        seed=seed,
    )
