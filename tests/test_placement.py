"""Topology best fit, gang transactions and scorers, as named cases."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from conftest import nodes_of, settle
from detente.core.resources import Resources
from detente.core.state import ClusterState
from detente.core.status import Code
from detente.core.workload import Workload
from detente.testing import BLOCK, RACK, World, a_job, a_node, racks


def rack_of(name: str) -> str:
    return name.split("-")[0]


@dataclass
class Case:
    racks: dict[str, int]
    job: Workload
    busy: list[str] = field(default_factory=list)  # nodes taken by an exclusive filler
    want_racks: set[str] | None = None  # None: stays pending
    want_reason: str = ""


GANG = a_job("gang").nodes(4, gpus=8).requires(RACK)

CASES = {
    "4x8 gang required rack lands in one rack": Case(
        {"r1": 3, "r2": 4}, GANG.build(), want_racks={"r2"}
    ),
    "4x8 gang picks the tightest rack that holds it": Case(
        {"r1": 8, "r2": 4, "r3": 6}, GANG.build(), want_racks={"r2"}
    ),
    "4x8 gang pending with reason when no rack holds it": Case(
        {"r1": 4, "r2": 4},
        GANG.build(),
        busy=["r1-n0", "r2-n0"],
        want_reason="needs 32 GPUs (4 × 8) in one rack; largest free rack (b1/r1) has 24",
    ),
    "gang wider than any rack can never fit": Case(
        {"r1": 3, "r2": 3}, GANG.build(), want_reason="one rack can hold at most 3"
    ),
    "preferred rack climbs to the block": Case(
        {"r1": 2, "r2": 3}, a_job("p").nodes(4).prefers(RACK).build(), want_racks={"r1", "r2"}
    ),
    "unconstrained gang stays compact": Case(
        {"r1": 5, "r2": 2, "r3": 3}, a_job("u").nodes(2).build(), want_racks={"r2"}
    ),
    "split gang fills the roomiest rack whole, then the tightest that holds the rest": Case(
        {"r1": 3, "r2": 3, "r3": 2, "r4": 1},
        a_job("s").nodes(7).build(),
        want_racks={"r1", "r2", "r4"},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_topology_placement(case: Case) -> None:
    snap = World(racks(case.racks)).snapshot()
    fillers = [a_job(f"fill-{n}").nodes(1).exclusive().seq(-1).build() for n in case.busy]
    for f, n in zip(fillers, case.busy, strict=True):
        snap.state.allocate(snap.cluster.index[n], f.pod_sets[0].request, exclusive=True)
    res = settle(snap, [case.job])
    got = nodes_of(snap, case.job.name)
    if case.want_racks is None:
        assert got == []
        assert case.want_reason in str(res.pending[case.job.name])
    else:
        assert {rack_of(n) for n in got} == case.want_racks
        assert len(set(got)) == case.job.pod_count


def test_unresolvable_gang_is_marked_so() -> None:
    snap = World(racks({"r1": 2})).snapshot()
    res = settle(snap, [GANG.build()])
    assert res.pending["gang"].code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE


def test_binpack_puts_small_pods_on_the_fullest_node() -> None:
    snap = World(racks({"r1": 3})).snapshot()
    st = snap.state
    st.allocate(1, Resources.of(gpus=6))
    st.allocate(2, Resources.of(gpus=3))
    settle(snap, [a_job("one").replicas(1, gpus=1).build()])
    assert nodes_of(snap, "one") == ["r1-n1"]


def test_exclusive_needs_an_idle_node() -> None:
    snap = World(racks({"r1": 2})).snapshot()
    snap.state.allocate(0, Resources.of(gpus=0.5))
    settle(snap, [a_job("x").nodes(1, gpus=1).exclusive().build()])
    assert nodes_of(snap, "x") == ["r1-n1"]
    assert not snap.state.fits(1, Resources.of(gpus=1))  # the rest of r1-n1 is held


def test_hostname_level_puts_all_pods_on_one_node() -> None:
    snap = World(racks({"r1": 2})).snapshot()
    snap.state.allocate(0, Resources.of(gpus=2))
    job = a_job("h").replicas(4, gpus=2).requires("kubernetes.io/hostname").build()
    settle(snap, [job])
    assert set(nodes_of(snap, "h")) == {"r1-n1"}


def test_fractional_shares_best_fit_a_device() -> None:
    st = ClusterState(World(racks({"r1": 1}, gpus=2)).snapshot().cluster)
    first = st.allocate(0, Resources.of(gpus=0.75))
    second = st.allocate(0, Resources.of(gpus=0.25))
    assert first == second == (0,)  # the 0.25 fills device 0's hole; device 1 stays whole
    assert st.whole[0] == 1


def test_fgd_prefers_the_placement_that_fragments_least() -> None:
    from detente.core.plugins.fgd import FragmentationGradient

    st = ClusterState(World(racks({"r1": 2}, gpus=2)).snapshot().cluster)
    st.allocate(0, Resources.of(gpus=0.5))  # r1-n0: one device half used
    fgd = FragmentationGradient()
    half = Resources.of(gpus=0.5)
    assert fgd.score(st, 0, half) > fgd.score(st, 1, half)


def test_down_nodes_take_nothing() -> None:
    nodes = [a_node("a").in_rack("r1").down().build(), a_node("b").in_rack("r1").build()]
    snap = World(nodes).snapshot()
    settle(snap, [a_job("j").nodes(1).build()])
    assert nodes_of(snap, "j") == ["b"]


def test_topology_level_must_exist() -> None:
    snap = World(racks({"r1": 2}), levels=(BLOCK,)).snapshot()
    res = settle(snap, [a_job("j").nodes(1).requires(RACK).build()])
    assert "not a level" in str(res.pending["j"])
