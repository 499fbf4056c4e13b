"""Preemption within a ClusterQueue and reclaim across a cohort, named after the behaviour."""

from __future__ import annotations

from dataclasses import replace

from detente.core.cycle import run_cycle
from detente.core.profiles import build
from detente.core.queue_manager import QueueManager
from detente.core.queues import PreemptionPolicy, ReclaimWithinCohort, WithinClusterQueue
from detente.core.snapshot import Snapshot
from detente.core.workload import Admission, PodPlacement, Workload
from detente.sim.driver import Simulation
from detente.testing import World, a_cluster_queue, a_job, racks

LOWER = PreemptionPolicy(WithinClusterQueue.LOWER_PRIORITY, ReclaimWithinCohort.ANY)


def run_on(snap: Snapshot, w: Workload, nodes: list[str], start: float, cq: str = "cq") -> None:
    ps = w.pod_sets[0]
    pl = [PodPlacement(ps.name, i, snap.cluster.index[n]) for i, n in enumerate(nodes)]
    flavors = {r: "default" for r in w.total}
    snap.admit(Admission(w, cq, flavors, pl, start))


def low(name: str, seq: int, grace: float = 30.0) -> Workload:
    return replace(
        a_job(name).nodes(1).priority(1).seq(seq).build(), preemptible=True, checkpoint_grace=grace
    )


def cycle(snap: Snapshot, jobs: list[Workload], profile: str = "detente", now: float = 100.0):  # type: ignore[no-untyped-def]
    prof = build(profile)
    return run_cycle(snap, QueueManager(prof.queue_sort, jobs), prof, now)


def three_low_jobs() -> Snapshot:
    snap = World(racks({"r0": 3})).snapshot()
    for i, start in enumerate([0.0, 50.0, 20.0]):
        run_on(snap, low(f"low{i}", i), [f"r0-n{i}"], start)
    return snap


def test_preempts_fewest_victims_least_progress_first() -> None:
    snap = three_low_jobs()
    res = cycle(snap, [a_job("high").nodes(1).priority(10).seq(9).build()])
    assert [(p.victim, p.deadline) for p in res.preemptions] == [("low1", 130.0)]
    assert "waiting for preempted low1 to end" in str(res.pending["high"])


def test_never_preempts_for_a_workload_that_still_would_not_fit() -> None:
    snap = three_low_jobs()
    res = cycle(snap, [a_job("huge").nodes(4).priority(10).seq(9).build()])
    assert res.preemptions == []


def test_does_not_preempt_equal_priority_or_non_preemptible_work() -> None:
    snap = World(racks({"r0": 1})).snapshot()
    run_on(snap, a_job("steady").nodes(1).priority(1).build(), ["r0-n0"], 0.0)
    res = cycle(snap, [a_job("high").nodes(1).priority(10).seq(9).build()])
    assert res.preemptions == []  # not preemptible: detente protects it


def test_already_evicting_victims_are_not_preempted_twice() -> None:
    snap = three_low_jobs()
    high = a_job("high").nodes(1).priority(10).seq(9).build()
    first = cycle(snap, [high])
    second = cycle(snap, [high], now=110.0)
    assert len(first.preemptions) == 1 and second.preemptions == []


def test_kueue_defaults_never_preempt() -> None:
    snap = three_low_jobs()
    prof = replace(build("detente"), preemption=PreemptionPolicy())
    res = run_cycle(
        snap, QueueManager(prof.queue_sort, [a_job("h").nodes(1).priority(10).build()]), prof, 0.0
    )
    assert res.preemptions == []


def lab(borrow_a: float | None = None) -> World:
    w = World(racks({"r0": 4}))
    w.queue("a", a_cluster_queue("cq-a", cohort="lab", gpus=16, borrowing=borrow_a))
    w.queue("b", a_cluster_queue("cq-b", cohort="lab", gpus=16))
    return w


def borrowers(preemptible: bool) -> Snapshot:
    snap = lab().snapshot()
    for i in range(4):  # cq-a runs 32 GPUs: 16 own + 16 borrowed from cq-b
        w = replace(a_job(f"a{i}").nodes(1).queue("a").seq(i).build(), preemptible=preemptible)
        run_on(snap, w, [f"r0-n{i}"], i, "cq-a")
    return snap


def test_reclaim_returns_lent_quota() -> None:
    res = cycle(borrowers(preemptible=True), [a_job("b0").nodes(1).queue("b").seq(9).build()])
    assert [p.victim for p in res.preemptions] == ["a3"]  # least progress of the borrowers
    assert "reclaim" in res.preemptions[0].reason


def test_reclaim_takes_only_preemptible_borrowers() -> None:
    """A borrower that never opted in (no --requeue, not preemptible) keeps its GPUs
    until it ends: the lender waits rather than restart work that did not agree."""
    res = cycle(borrowers(preemptible=False), [a_job("b0").nodes(1).queue("b").seq(9).build()])
    assert res.preemptions == []


def test_borrower_cannot_reclaim_from_another_borrower() -> None:
    snap = lab().snapshot()
    for i in range(2):
        run_on(snap, a_job(f"a{i}").nodes(1).queue("a").seq(i).build(), [f"r0-n{i}"], i, "cq-a")
    for i in range(2, 4):
        run_on(snap, a_job(f"b{i}").nodes(1).queue("b").seq(i).build(), [f"r0-n{i}"], i, "cq-b")
    # cq-a at nominal asks for more: it would borrow, so it may not reclaim from cq-b.
    res = cycle(snap, [a_job("a9").nodes(1).queue("a").seq(9).build()])
    assert res.preemptions == []


def test_no_preemption_ping_pong() -> None:
    """Two teams in one cohort, each with reclaim Any, submitting long jobs in turn:
    every reclaim leaves the reclaimer within nominal, so nobody is preempted twice."""
    world = lab()
    sim = Simulation(world.snapshot(), build("detente"))
    for i in range(12):
        q = "a" if i % 2 == 0 else "b"
        w = a_job(f"{q}{i}").nodes(1).queue(q).submitted(float(i * 10), seq=i).build()
        sim.submit(replace(w, time_limit=3600.0, checkpoint_grace=5.0), 3000.0)
    jobs = sim.run()
    counts = [len(j.preempted_at) for j in jobs.values()]
    assert max(counts) <= 1
    assert sum(counts) <= 4
    assert all(j.end is not None for j in jobs.values())


def test_preempted_workload_requeues_keeping_submit_time() -> None:
    world = World(racks({"r0": 1}))
    sim = Simulation(world.snapshot(), build("detente"))
    sim.submit(replace(low("low", 0, grace=60.0), time_limit=7200.0, submit_time=0.0), 5000.0)
    high = a_job("high").nodes(1).priority(10).submitted(100.0, seq=1).build()
    sim.submit(replace(high, time_limit=3600.0), 1000.0)
    jobs = sim.run()
    assert jobs["low"].preempted_at == [160.0]  # 60 s of checkpoint grace
    assert jobs["high"].start == 160.0
    assert jobs["low"].start == 1160.0 and jobs["low"].workload.submit_time == 0.0
