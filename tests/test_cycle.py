"""The admission cycle: quota with cohorts, queueing strategies, profiles."""

from __future__ import annotations

import pytest

from conftest import admitted, nodes_of, settle
from detente.core.queues import QueueingStrategy
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
    from detente.core.cycle import run_cycle
    from detente.core.profiles import custom
    from detente.core.queue_manager import QueueManager

    snap = World(racks({"r1": 4})).snapshot()
    prof = custom("one-head", scores={"GpuBinpack": 1}, heads_per_queue=1)
    jobs = [a_job(f"j{i}").nodes(1).seq(i).build() for i in range(3)]
    res = run_cycle(snap, QueueManager(prof.queue_sort, jobs), prof, 0.0)
    assert [a.workload.name for a in res.admissions] == ["j0"]
    assert "tries 1 per cycle" in str(res.pending["j1"])
