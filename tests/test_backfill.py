"""Reservations and backfill, named after the behaviour (Slurm's sched/backfill)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import admitted, nodes_of, settle
from detente.api.profiles import load
from detente.core.cycle import run_cycle
from detente.core.profiles import build
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Admission, PodPlacement, Workload
from detente.sim.driver import Simulation
from detente.testing import RACK, World, a_cluster_queue, a_job, racks

H = 3600.0


def limited(w: Workload, seconds: float) -> Workload:
    return replace(w, time_limit=seconds)


def with_running(snap: Snapshot, w: Workload, nodes: list[str], start: float = 0.0) -> None:
    ps = w.pod_sets[0]
    pl = [PodPlacement(ps.name, i, snap.cluster.index[n]) for i, n in enumerate(nodes)]
    snap.admit(Admission(w, "cq", {}, pl, start))


def four_nodes_two_busy_for_an_hour() -> Snapshot:
    snap = World(racks({"r0": 4})).snapshot()
    busy = limited(a_job("running").nodes(2).exclusive().seq(-1).build(), H)
    with_running(snap, busy, ["r0-n0", "r0-n1"])
    return snap


def test_backfill_never_delays_reservation() -> None:
    snap = four_nodes_two_busy_for_an_hour()
    head = limited(a_job("head").nodes(4).exclusive().seq(1).build(), H)
    short = limited(a_job("short").nodes(1).exclusive().seq(2).build(), H / 2)
    long = limited(a_job("long").nodes(1).exclusive().seq(3).build(), 2 * H)
    res = settle(snap, [head, short, long], "slurm")
    assert admitted(snap) == {"running", "short"}
    reserved = {r.workload: r for r in res.reservations}
    assert reserved["head"].start == H and len(reserved["head"].nodes) == 4
    assert "would delay the reservation of head (from t=3600)" in str(res.pending["long"])


def test_job_without_time_limit_is_never_backfilled_onto_reserved_nodes() -> None:
    snap = four_nodes_two_busy_for_an_hour()
    head = limited(a_job("head").nodes(4).exclusive().seq(1).build(), H)
    forever = a_job("forever").nodes(1).exclusive().seq(2).build()
    settle(snap, [head, forever], "slurm")
    assert "forever" not in admitted(snap)


def easy_vs_conservative_jobs() -> list[Workload]:
    return [
        limited(a_job("h1").nodes(3).exclusive().seq(1).build(), H),
        limited(a_job("h2").nodes(4).exclusive().seq(2).build(), H),
        limited(a_job("x").nodes(1).exclusive().seq(3).build(), 3 * H),
    ]


MODES = {
    "conservative reserves for every blocked job, so x would delay h2": ("slurm", set(), 3),
    "easy reserves only for the first, so x starts now": ("slurm-easy", {"x"}, 1),
}


@pytest.mark.parametrize("profile,started,reservations", MODES.values(), ids=MODES.keys())
def test_easy_and_conservative_modes(profile: str, started: set[str], reservations: int) -> None:
    snap = four_nodes_two_busy_for_an_hour()
    res = settle(snap, easy_vs_conservative_jobs(), profile)
    assert admitted(snap) - {"running"} == started
    assert len(res.reservations) == reservations


def test_bf_max_job_test_bounds_reservations() -> None:
    snap = four_nodes_two_busy_for_an_hour()
    slurm = build("slurm")
    prof = replace(slurm, admit=replace(slurm.admit, max_job_test=1))
    res = settle(snap, easy_vs_conservative_jobs(), prof)
    assert [r.workload for r in res.reservations] == ["h1"]


def test_reservation_outside_the_window_is_not_made() -> None:
    snap = four_nodes_two_busy_for_an_hour()
    slurm = build("slurm")
    prof = replace(slurm, admit=replace(slurm.admit, window=H / 2))
    res = settle(snap, [limited(a_job("head").nodes(4).exclusive().build(), H)], prof)
    assert res.reservations == []


def test_gang_reservation_honours_required_topology() -> None:
    snap = World(racks({"r1": 2, "r2": 3})).snapshot()
    filler = limited(a_job("filler").nodes(2).exclusive().seq(-1).build(), H)
    with_running(snap, filler, ["r2-n0", "r2-n1"])
    gang = limited(a_job("gang").nodes(3).requires(RACK).exclusive().seq(1).build(), H)
    res = settle(snap, [gang], "slurm")
    (r,) = res.reservations
    assert r.start == H
    assert {snap.cluster.nodes[n].labels[RACK] for n in r.nodes} == {"r2"}


def test_running_admissions_in_the_same_cycle_enter_the_future() -> None:
    snap = World(racks({"r0": 2})).snapshot()
    first = limited(a_job("first").nodes(2).exclusive().seq(1).build(), H)
    second = limited(a_job("second").nodes(2).exclusive().seq(2).build(), H)
    prof = build("slurm")
    res = run_cycle(snap, QueueManager(prof.queue_sort, [first, second]), prof, 0.0)
    assert [a.workload.name for a in res.admissions] == ["first"]
    assert [(r.workload, r.start) for r in res.reservations] == [("second", H)]


@st.composite
def small_runs(draw: st.DrawFn) -> tuple[dict[str, int], list[tuple[Workload, float]]]:
    shape = {f"r{i}": draw(st.integers(1, 3)) for i in range(draw(st.integers(1, 2)))}
    total = sum(shape.values())
    jobs = []
    for i in range(draw(st.integers(2, 9))):
        nodes = draw(st.integers(1, total))
        limit = float(draw(st.sampled_from([60, 120, 300, 600])))
        b = (
            a_job(f"j{i}")
            .nodes(nodes)
            .exclusive()
            .submitted(float(draw(st.integers(0, 120))), seq=i)
        )
        jobs.append((limited(b.build(), limit), limit))
    return shape, jobs


def simulate(shape: dict[str, int], jobs: list[tuple[Workload, float]], profile: str) -> Simulation:
    sim = Simulation(World(racks(shape)).snapshot(), build(profile))
    for w, run in jobs:
        sim.submit(w, run)
    sim.run()
    return sim


@settings(max_examples=80, deadline=None)
@given(small_runs())
def test_no_backfilled_workload_delays_a_reserved_one(
    case: tuple[dict[str, int], list[tuple[Workload, float]]],
) -> None:
    """Run times equal time limits, so plans are exact. Every workload that got a
    reservation starts no later than that reservation, and no later than it would
    without backfill."""
    shape, jobs = case
    with_bf = simulate(shape, jobs, "slurm").jobs
    without = simulate(shape, jobs, "slurm-builtin").jobs
    for name, rec in with_bf.items():
        assert rec.start is not None
        if rec.reserved_at:
            assert rec.start <= rec.reserved_at[0], name
            assert rec.start <= without[name].start, name  # type: ignore[operator]


def test_nodes_of_backfilled_short_job() -> None:
    snap = four_nodes_two_busy_for_an_hour()
    head = limited(a_job("head").nodes(4).exclusive().seq(1).build(), H)
    short = limited(a_job("short").nodes(1).exclusive().seq(2).build(), H / 2)
    settle(snap, [head, short], "detente")
    assert nodes_of(snap, "short") == ["r0-n2"]


# -- a head blocked by quota keeps its reservation (detente.core.quotaplan) ------------------


def _quota_world(nodes: int, quota_gpus: int) -> Snapshot:
    """``nodes`` × 8 GPUs; one ClusterQueue of ``quota_gpus``; three 8-GPU jobs hold
    node 0-2 (and 24 GPUs of quota) until t=3600."""
    snap = World(racks({"r0": nodes})).queue("team", a_cluster_queue("cq", gpus=quota_gpus))
    snap = snap.snapshot()
    cq = snap.config.cluster_queues["cq"]
    for i in range(3):
        w = limited(a_job(f"running{i}").nodes(1).seq(-10 + i).build(), H)
        flavors = snap.first_flavors(cq, w)
        assert flavors is not None
        pl = [PodPlacement(w.pod_sets[0].name, 0, snap.cluster.index[f"r0-n{i}"])]
        snap.admit(Admission(w, "cq", flavors, pl, 0.0))
    return snap


def _queued(head_priority: int = 100) -> list[Workload]:
    head = limited(a_job("head").nodes(4).priority(head_priority).seq(1).build(), H)
    long = limited(a_job("long").nodes(1).seq(2).build(), 2 * H)
    short = limited(a_job("short").nodes(1).seq(3).build(), H / 6)
    return [head, long, short]


@pytest.mark.parametrize("profile", ["detente", "slurm"])
def test_quota_blocked_head_keeps_its_reservation_when_quota_is_the_cluster(profile: str) -> None:
    """The live default: quota = the cluster (32 GPUs), 24 in use until 3600. The
    4-node head is blocked by quota, not nodes, and still reserves from 3600; a 2-hour
    job may not start ahead of it, a 10-minute one may (it ends before 3600)."""
    snap = _quota_world(nodes=4, quota_gpus=32)
    res = settle(snap, _queued(), profile)
    reserved = {r.workload: r for r in res.reservations}
    assert reserved["head"].start == H and len(reserved["head"].nodes) == 4
    assert "short" in admitted(snap) and "long" not in admitted(snap)


@pytest.mark.parametrize("profile", ["detente", "slurm"])
def test_backfill_may_not_take_quota_a_reserved_head_needs(profile: str) -> None:
    """Quota (32) smaller than the cluster (8 nodes): the 2-hour job could run on a
    node the head's reservation does not hold, but at 3600 its 8 GPUs plus the head's 32
    would exceed the quota: it waits, naming the hold. The 10-minute job starts."""
    snap = _quota_world(nodes=8, quota_gpus=32)
    res = settle(snap, _queued(), profile)
    reserved = {r.workload: r for r in res.reservations}
    assert reserved["head"].start == H
    assert "short" in admitted(snap) and "long" not in admitted(snap)
    assert "would take quota reserved for head (from t=3600)" in str(res.pending["long"])
    assert reserved["long"].start == 2 * H  # after the head, not beside it


def test_a_head_blocked_by_nodes_leaves_spare_quota_to_backfill() -> None:
    """The control: quota (64) above the demand, 6 nodes. The head is blocked by nodes,
    reserves 4 of them from 3600, and the 2-hour job runs now on a node it does not
    hold: at 3600 their 40 GPUs fit the quota."""
    snap = _quota_world(nodes=6, quota_gpus=64)
    res = settle(snap, _queued(), "detente")
    assert {r.workload for r in res.reservations} == {"head"}
    assert {"long", "short"} <= admitted(snap)


EASY_FILE = """apiVersion: detente.dev/v1
kind: Profile
metadata: {name: easy-from-a-file}
spec:
  queueSort: Multifactor
  scores: {GpuBinpack: 1}
  borrowing: false
  admit: {admit}
"""


@pytest.mark.parametrize("admit, started", [("EasyBackfill", {"x"}), ("PlaceNow", {"x"})])
def test_admit_extension_point_is_reachable_from_a_profile_file(
    tmp_path: Path, admit: str, started: set[str]
) -> None:
    """The backfill step is a plugin a Profile file names: EasyBackfill decides as the
    named slurm-easy profile; PlaceNow reserves nothing."""
    f = tmp_path / "p.yaml"
    f.write_text(EASY_FILE.replace("{admit}", admit))
    snap = four_nodes_two_busy_for_an_hour()
    res = settle(snap, easy_vs_conservative_jobs(), load(str(f)))
    assert admitted(snap) - {"running"} == started
    if admit == "EasyBackfill":
        ref_snap = four_nodes_two_busy_for_an_hour()
        ref = settle(ref_snap, easy_vs_conservative_jobs(), "slurm-easy")
        assert res.reservations == ref.reservations and len(res.reservations) == 1
    else:
        assert res.reservations == []


def test_a_higher_priority_arrival_is_not_held_behind_parked_reservations() -> None:
    """Slurm's scheduler starts a higher-priority arrival on free nodes whatever the
    backfill plan of lower-priority jobs held: the next cycle is a full one, in order.
    A later, lower-priority arrival keeps the incremental cycle (parked jobs stay)."""
    import random

    from detente.core.driver import schedule

    prof = build("detente")
    snap = four_nodes_two_busy_for_an_hour()
    head = limited(a_job("head").nodes(4).exclusive().seq(1).build(), H)
    queues = QueueManager(prof.queue_sort, [head])
    first = schedule(snap, queues, prof, 0.0, random.Random(0))
    assert {r.workload for r in first.reservations} == {"head"} and "head" in queues.parked
    low = a_job("low").nodes(1).exclusive().seq(3).build()  # no limit: overlaps the plan
    queues.add(low)
    assert "head" in queues.parked  # behind it: the standing reservation still holds
    urgent = limited(a_job("urgent").nodes(1).exclusive().priority(100).seq(2).build(), H / 2)
    queues.add(urgent)
    assert not queues.parked  # ahead of it: a full cycle
    schedule(snap, queues, prof, 1.0, random.Random(0))
    # urgent starts on a node head had reserved; head is reserved again (from t=H),
    # and low, with no time limit, still may not run into that reservation.
    assert "urgent" in admitted(snap) and "low" not in admitted(snap)
