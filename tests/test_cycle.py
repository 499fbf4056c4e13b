"""The admission cycle: quota with cohorts, queueing strategies, profiles."""

from __future__ import annotations

from dataclasses import replace

import pytest

from conftest import admitted, nodes_of, settle
from detente.core.cycle import CycleResult, run_cycle
from detente.core.plugins.post_filter import QueuePreemption
from detente.core.profiles import Profile, custom
from detente.core.queue_manager import QueueManager
from detente.core.queues import (
    PreemptionPolicy,
    QueueingStrategy,
    ReclaimWithinCohort,
    WithinClusterQueue,
)
from detente.core.snapshot import Snapshot
from detente.core.workload import Admission, PodPlacement, Workload
from detente.testing import World, a_cluster_queue, a_job, racks


def two_teams(borrowing: float | None, racks_: dict[str, int] | None = None) -> World:
    w = World(racks(racks_ or {"r1": 4, "r2": 4}))
    w.queue("a", a_cluster_queue("cq-a", cohort="lab", gpus=16, borrowing=borrowing))
    w.queue("b", a_cluster_queue("cq-b", cohort="lab", gpus=48))
    return w


BORROW = {
    # cq-a has 16 GPUs nominal; cq-b lends up to 48 while idle.
    "no limit borrows all idle quota": (None, 8),
    "limit 16 allows 32 GPUs in all": (16, 4),
    "limit 0 means no borrowing": (0, 2),
}


@pytest.mark.parametrize("limit,want", BORROW.values(), ids=BORROW.keys())
def test_borrowing_from_cohort_up_to_the_limit(limit: float | None, want: int) -> None:
    snap = two_teams(limit).snapshot()
    jobs = [a_job(f"j{i}").nodes(1).queue("a").seq(i).build() for i in range(10)]
    res = settle(snap, jobs)
    assert len(admitted(snap)) == want
    if want < 8:
        assert "QuotaFit" in str(res.pending[f"j{want}"])
    assert snap.quota.used("cq-a", ("default", "nvidia.com/gpu")) == want * 8000


def test_borrowed_quota_is_not_available_to_the_lender_twice() -> None:
    snap = two_teams(None).snapshot()
    a_jobs = [a_job(f"a{i}").nodes(1).queue("a").seq(i).build() for i in range(4)]
    settle(snap, a_jobs)  # a holds 32 GPUs: 16 own + 16 borrowed
    b_jobs = [a_job(f"b{i}").nodes(1).queue("b").seq(10 + i).build() for i in range(6)]
    res = settle(snap, b_jobs)
    assert sum(n.startswith("b") for n in admitted(snap)) == 4  # 64 − 32 = 32 GPUs left
    assert "b4" in res.pending


def test_strict_fifo_blocks_behind_the_head() -> None:
    w = World(racks({"r1": 2}))
    w.queue("q", a_cluster_queue("cq", strategy=QueueingStrategy.STRICT_FIFO))
    snap = w.snapshot()
    jobs = [
        a_job("big").nodes(3).queue("q").priority(1).seq(0).build(),
        a_job("small").nodes(1).queue("q").seq(1).build(),
    ]
    res = settle(snap, jobs)
    assert admitted(snap) == set()
    assert "behind big" in str(res.pending["small"])


def test_best_effort_fifo_lets_later_work_pass_a_blocked_head() -> None:
    snap = World(racks({"r1": 2})).snapshot()
    jobs = [a_job("big").nodes(3).seq(0).build(), a_job("small").nodes(1).seq(1).build()]
    settle(snap, jobs)
    assert admitted(snap) == {"small"}


def test_higher_priority_goes_first() -> None:
    snap = World(racks({"r1": 1})).snapshot()
    jobs = [a_job("old").nodes(1).seq(0).build(), a_job("vip").nodes(1).priority(5).seq(1).build()]
    settle(snap, jobs)
    assert admitted(snap) == {"vip"}


def test_unknown_local_queue_is_pending_with_reason() -> None:
    snap = World(racks({"r1": 1})).snapshot()
    res = settle(snap, [a_job("lost").nodes(1).queue("nowhere").build()])
    assert "LocalQueue 'default/nowhere' does not exist" in str(res.pending["lost"])


def deadlock_jobs() -> list:  # type: ignore[type-arg]
    # Two 8-pod training jobs submitted together on 8 free single-pod slots.
    return [
        a_job("a").nodes(8, gpus=8).submitted(0, seq=0).build(),
        a_job("b").nodes(8, gpus=8).submitted(0, seq=1).build(),
    ]


def test_k8s_profile_deadlocks_two_half_placed_gangs() -> None:
    snap = World(racks({"r1": 4, "r2": 4})).snapshot()
    res = settle(snap, deadlock_jobs(), "k8s")
    assert len(nodes_of(snap, "a")) == 4 and len(nodes_of(snap, "b")) == 4
    assert admitted(snap) == set()
    assert "4/8 pods bound" in str(res.pending["a"])


def test_detente_profile_places_one_gang_whole() -> None:
    snap = World(racks({"r1": 4, "r2": 4})).snapshot()
    res = settle(snap, deadlock_jobs(), "detente")
    assert admitted(snap) == {"a"}
    assert nodes_of(snap, "b") == []
    assert "needs 64 GPUs" in str(res.pending["b"])


def test_heads_per_queue_limits_admissions_per_cycle() -> None:
    snap = World(racks({"r1": 4})).snapshot()
    prof = custom("one-head", scores={"GpuBinpack": 1}, heads_per_queue=1)
    jobs = [a_job(f"j{i}").nodes(1).seq(i).build() for i in range(3)]
    res = run_cycle(snap, QueueManager(prof.queue_sort, jobs), prof, 0.0)
    assert [a.workload.name for a in res.admissions] == ["j0"]
    assert "tries 1 per cycle" in str(res.pending["j1"])


# -- the fast path's memory (`cycle._Rejected`): what it must not remember ------------


def one_cycle(snap: Snapshot, jobs: list[Workload], prof: Profile) -> CycleResult:
    return run_cycle(snap, QueueManager(prof.queue_sort, jobs), prof, 0.0)


FIFO = custom("fifo", sort="FifoSort", scores={"GpuBinpack": 1})
LOWER = PreemptionPolicy(WithinClusterQueue.LOWER_PRIORITY, ReclaimWithinCohort.NEVER)


def test_a_rejection_is_remembered_only_until_an_admission_changes_what_is_free() -> None:
    snap = World(racks({"r1": 2})).snapshot()  # 16 GPUs free
    jobs = [a_job("big0").nodes(3).seq(0).build(), a_job("small").nodes(1).seq(1).build(),
            a_job("big1").nodes(3).seq(2).build()]  # fmt: skip
    res = one_cycle(snap, jobs, FIFO)
    assert [a.workload.name for a in res.admissions] == ["small"]
    assert "needs 24 GPUs; 16 free" in str(res.pending["big0"])
    assert "needs 24 GPUs; 8 free" in str(res.pending["big1"])


def test_a_workload_past_its_queues_head_budget_is_not_given_a_remembered_rejection() -> None:
    snap = World(racks({"r1": 1})).snapshot()
    prof = replace(FIFO, heads_per_queue=2)
    res = one_cycle(snap, [a_job(f"j{i}").nodes(2).seq(i).build() for i in range(4)], prof)
    plugins = [res.pending[f"j{i}"].plugin for i in range(4)]
    assert plugins == ["NodeFit", "NodeFit", "QueueHeads", "QueueHeads"]


@pytest.mark.parametrize("strict", ["StrictFIFO queue", "strict priority"])
def test_a_workload_behind_a_blocked_head_is_not_given_a_remembered_rejection(strict: str) -> None:
    strategy = QueueingStrategy.STRICT_FIFO if strict == "StrictFIFO queue" else None
    w = World(racks({"r1": 2}))
    w.queue("q", a_cluster_queue("cq", **({"strategy": strategy} if strategy else {})))
    prof = FIFO if strategy else replace(FIFO, strict_priority=True)
    res = one_cycle(w.snapshot(), [a_job(f"big{i}").nodes(3).queue("q").seq(i).build()
                                   for i in range(2)], prof)  # fmt: skip
    assert res.pending["big0"].plugin == "NodeFit"
    assert "behind big0" in str(res.pending["big1"])


def test_a_rejection_is_not_remembered_for_a_workload_of_another_priority() -> None:
    snap = World(racks({"r1": 1})).snapshot()
    running = a_job("low").nodes(1).priority(1).build()
    snap.admit(Admission(running, "cq", {"nvidia.com/gpu": "default"},
                         [PodPlacement("main", 0, snap.cluster.index["r1-n0"])], 0.0))  # fmt: skip
    prof = replace(FIFO, post_filter=QueuePreemption(), preemption=LOWER)
    jobs = [a_job("same").nodes(1).priority(1).seq(0).build(),
            a_job("vip").nodes(1).priority(9).seq(1).build()]  # fmt: skip
    res = one_cycle(snap, jobs, prof)
    assert res.pending["same"].plugin == "NodeFit"
    assert [p.victim for p in res.preemptions] == ["low"]
