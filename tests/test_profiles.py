"""Each named profile shows the behaviour (and weakness) of the system it models."""

from __future__ import annotations

import pytest

from conftest import admitted, nodes_of, settle
from detente.core.cycle import run_cycle
from detente.core.profiles import PROFILES, build
from detente.core.queue_manager import QueueManager
from detente.testing import RACK, World, a_cluster_queue, a_job, racks


def two_gangs() -> list:  # type: ignore[type-arg]
    return [
        a_job("a").nodes(8, gpus=8).submitted(0, seq=0).build(),
        a_job("b").nodes(8, gpus=8).submitted(0, seq=1).build(),
    ]


@pytest.mark.parametrize("profile", ["detente", "slurm", "kueue-tas", "volcano"])
def test_gang_profiles_place_one_gang_whole_never_half(profile: str) -> None:
    snap = World(racks({"r1": 4, "r2": 4})).snapshot()
    settle(snap, two_gangs(), profile)
    assert admitted(snap) == {"a"}
    assert nodes_of(snap, "b") == []


def test_kueue_without_tas_reserves_quota_then_binds_pods_one_by_one() -> None:
    world = World(racks({"r1": 4, "r2": 4}))
    world.queue("a", a_cluster_queue("cq-a")).queue("b", a_cluster_queue("cq-b"))
    snap = world.snapshot()
    jobs = [
        a_job("a").nodes(8, gpus=8).queue("a").submitted(0, seq=0).build(),
        a_job("b").nodes(8, gpus=8).queue("b").submitted(0, seq=1).build(),
    ]
    res = settle(snap, jobs, "kueue")
    # Each ClusterQueue admits its head on quota in the same cycle; kube-scheduler then
    # binds their pods interleaved, and the two gangs deadlock (kueue#2796).
    assert len(nodes_of(snap, "a")) + len(nodes_of(snap, "b")) == 8
    assert admitted(snap) == set()
    assert "quota reserved" in str(res.pending["a"])


def test_kueue_pops_one_head_per_cluster_queue_per_cycle() -> None:
    snap = World(racks({"r1": 4})).snapshot()
    prof = build("kueue-tas")
    jobs = [a_job(f"j{i}").nodes(1).seq(i).build() for i in range(4)]
    res = run_cycle(snap, QueueManager(prof.queue_sort, jobs), prof, 0.0)
    assert [a.workload.name for a in res.admissions] == ["j0"]


def test_k8s_spreads_one_gpu_pods_where_detente_packs_them() -> None:
    jobs = [a_job(f"p{i}").replicas(1, gpus=1).seq(i).build() for i in range(4)]
    spread = World(racks({"r1": 4})).snapshot()
    settle(spread, jobs, "k8s")
    packed = World(racks({"r1": 4})).snapshot()
    settle(packed, jobs, "detente")
    used = lambda s: {n for j in jobs for n in nodes_of(s, j.name)}  # noqa: E731
    assert len(used(spread)) == 4  # LeastAllocated on cpu/memory ignores GPUs
    assert len(used(packed)) == 1


def test_volcano_ignores_topology_requests_kueue_tas_honours_them() -> None:
    job = a_job("g").nodes(3).requires(RACK).build()
    v = World(racks({"r1": 2, "r2": 2})).snapshot()
    settle(v, [job], "volcano")
    t = World(racks({"r1": 2, "r2": 2})).snapshot()
    settle(t, [job], "kueue-tas")
    assert len(nodes_of(v, "g")) == 3
    assert nodes_of(t, "g") == []


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_is_deterministic(name: str) -> None:
    def run() -> dict[str, list[str]]:
        snap = World(racks({"r1": 3, "r2": 3})).snapshot()
        jobs = [a_job(f"j{i}").nodes(1 + i % 3, gpus=4).seq(i).build() for i in range(8)]
        settle(snap, jobs, name)
        return {n: nodes_of(snap, n) for n in snap.running}

    assert run() == run()


def test_k8s_default_preemption_takes_single_pods_of_lower_priority() -> None:
    from dataclasses import replace as _replace

    from detente.core.workload import Admission, PodPlacement

    snap = World(racks({"r1": 2})).snapshot()
    low = a_job("low").nodes(2, gpus=8).priority(1).build()
    pl = [PodPlacement("main", i, i) for i in range(2)]
    snap.admit(Admission(low, "", {}, pl, 0.0))
    high = _replace(a_job("high").replicas(1, gpus=8).priority(9).seq(5).build())
    prof = build("k8s")
    res = run_cycle(snap, QueueManager(prof.queue_sort, [high]), prof, 10.0)
    (p,) = res.preemptions
    assert p.victim == "low" and len(p.pods) == 1 and p.deadline == 40.0  # 30 s default grace
    assert "preempting pods of low" in str(res.pending["high"])
    again = run_cycle(snap, QueueManager(prof.queue_sort, [high]), prof, 11.0)
    assert again.preemptions == []  # waits for the leaving pod instead of preempting more
