"""Multifactor priority and decayed fair share, named after the behaviour."""

from __future__ import annotations

import math

import pytest

from conftest import admitted, settle
from detente.core.fairshare import Usage, accrue, decay, factors
from detente.core.framework import PriorityContext
from detente.core.priority import MultifactorSort, Weights, priority_context
from detente.core.resources import CPU, GPU, Resources
from detente.core.workload import Admission, PodPlacement
from detente.testing import World, a_cluster_queue, a_job, racks

CAP = Resources({GPU: 8000, CPU: 64_000})
HOUR = 3600.0


def usage(**gpu_hours: float) -> Usage:
    return Usage(0.0, {q: {GPU: h * HOUR} for q, h in gpu_hours.items()})


def test_fair_share_factor_follows_slurm_classic_formula() -> None:
    f = factors(usage(a=3, b=1), {"a": 1, "b": 1}, CAP)
    assert f["a"] == pytest.approx(2**-1.5)
    assert f["b"] == pytest.approx(2**-0.5)


def test_no_usage_means_full_fair_share() -> None:
    assert factors(Usage(), {"a": 1, "b": 2}, CAP) == {"a": 1.0, "b": 1.0}


def test_usage_equal_to_share_gives_one_half() -> None:
    f = factors(usage(a=2, b=1), {"a": 2, "b": 1}, CAP)
    assert f == pytest.approx({"a": 0.5, "b": 0.5})


def test_usage_halves_after_the_half_life() -> None:
    d = decay(usage(a=4), 7 * 86_400.0, 7 * 86_400.0)
    assert d.by_queue["a"][GPU] == pytest.approx(2 * HOUR)


def test_dominant_resource_charges_cpu_heavy_teams_for_cpu() -> None:
    u = Usage(0.0, {"cpu-team": {CPU: 64 * HOUR}, "gpu-team": {GPU: 1 * HOUR}})
    f = factors(u, {"cpu-team": 1, "gpu-team": 1}, CAP)
    assert f["cpu-team"] < f["gpu-team"]  # all CPUs for an hour outweigh 1 of 8 GPUs


def _running(name: str, queue: str, gpus: int, start: float) -> Admission:
    w = a_job(name).nodes(1, gpus=gpus).queue(queue).build()
    return Admission(w, "cq", {}, [PodPlacement("main", 0, 0)], start)


def test_accrual_charges_each_second_once() -> None:
    run = [_running("j", "team", 8, 0.0)]
    once = accrue(Usage(), run, HOUR, half_life=0)
    twice = accrue(accrue(Usage(), run, HOUR / 2, half_life=0), run, HOUR, half_life=0)
    assert once.by_queue["default/team"][GPU] == pytest.approx(8 * HOUR)
    assert twice.by_queue["default/team"][GPU] == pytest.approx(8 * HOUR)


def test_multifactor_terms_are_visible_and_sum_to_the_priority() -> None:
    sort = MultifactorSort(Weights(age=1000, size=100, fairshare=5000, qos=10_000))
    ctx = PriorityContext(
        now=3.5 * 86_400, total_nodes=4, total_gpus=32, max_class_value=100,
        fairshare={"default/team": 0.25},
    )  # fmt: skip
    w = a_job("w").nodes(2).priority(50).submitted(0.0).queue("team").build()
    terms = sort.explain(w, ctx)
    assert terms == pytest.approx({"age": 500, "size": 50, "fairshare": 1250, "qos": 5000})
    assert sort.sort_key(w, ctx)[0] == pytest.approx(-sum(terms.values()))


def test_all_weights_zero_is_fifo() -> None:
    sort = MultifactorSort(Weights())
    old = a_job("old").submitted(5.0, seq=2).build()
    new = a_job("new").priority(9).submitted(6.0, seq=1).build()
    ctx = PriorityContext()
    assert sorted([new, old], key=lambda w: sort.sort_key(w, ctx)) == [old, new]


def test_lighter_user_goes_first_under_fair_share() -> None:
    w = World(racks({"r0": 2}))
    w.queue("heavy", a_cluster_queue("cq")).queue("light", a_cluster_queue("cq"))
    snap = w.snapshot()
    snap.usage = usage(**{"default/heavy": 100.0})
    jobs = [
        a_job("h").nodes(2).queue("heavy").submitted(0, seq=0).build(),
        a_job("l").nodes(2).queue("light").submitted(10, seq=1).build(),
    ]
    settle(snap, jobs, "detente", now=20)
    assert admitted(snap) == {"l"}


def test_priority_context_normalizes_qos_by_largest_class() -> None:
    snap = World(racks({"r0": 1})).snapshot()
    ctx = priority_context(snap, 0.0, pending=400)
    assert ctx.max_class_value == 400 and ctx.total_gpus == 8
    assert math.isclose(ctx.fairshare["default/team"], 1.0)
