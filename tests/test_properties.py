"""Invariants over random small clusters and workloads (hypothesis)."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import settle
from detente.core.resources import CPU, GPU, MEMORY, MILLI, Resources
from detente.core.snapshot import Snapshot
from detente.core.state import ClusterState
from detente.core.statement import Statement
from detente.core.workload import Workload
from detente.testing import RACK, World, a_cluster_queue, a_job, a_node

SHARES = [0.25, 0.5, 1, 2, 4, 8]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[World, list[Workload]]:
    nodes = []
    for r in range(draw(st.integers(1, 3))):
        for i in range(draw(st.integers(1, 4))):
            gpus = draw(st.sampled_from([2, 4, 8]))
            nodes.append(a_node(f"r{r}-n{i}").gpus(gpus).in_rack(f"r{r}", f"b{r % 2}").build())
    world = World(nodes)
    for q in ("a", "b"):
        nominal = draw(st.integers(0, 32))
        limit = draw(st.one_of(st.none(), st.integers(0, 16)))
        world.queue(q, a_cluster_queue(f"cq-{q}", cohort="lab", gpus=nominal, borrowing=limit))
    jobs = []
    for i in range(draw(st.integers(1, 12))):
        b = a_job(f"j{i}").queue(draw(st.sampled_from(["a", "b"]))).seq(i)
        b = b.priority(draw(st.integers(0, 2))).submitted(draw(st.integers(0, 3)), seq=i)
        per = draw(st.sampled_from(SHARES))
        if per >= 1 and draw(st.booleans()):
            b = b.nodes(draw(st.integers(1, 4)), gpus=per)
            if draw(st.booleans()):
                b = b.requires(RACK)
            if draw(st.booleans()):
                b = b.exclusive()
        else:
            b = b.replicas(draw(st.integers(1, 6)), gpus=per)
        jobs.append(b.build())
    return world, jobs


def assert_no_node_overcommitted(snap: Snapshot) -> None:
    gpu: dict[tuple[int, int], int] = defaultdict(int)
    cpu: dict[int, int] = defaultdict(int)
    mem: dict[int, int] = defaultdict(int)
    exclusive_nodes: set[int] = set()
    pods: dict[int, int] = defaultdict(int)
    for adm in snap.running.values():
        w = adm.workload
        req = {ps.name: ps.request for ps in w.pod_sets}
        for p in adm.placements:
            r = req[p.pod_set]
            share = r.gpu_milli if r.gpu_milli < MILLI else MILLI
            for d in p.devices:
                gpu[(p.node, d)] += share
            cpu[p.node] += r[CPU]
            mem[p.node] += r[MEMORY]
            pods[p.node] += 1
            if w.exclusive:
                exclusive_nodes.add(p.node)
    for (node, dev), used in gpu.items():
        assert used <= MILLI, f"device {dev} of node {node} holds {used}"
        assert dev < snap.cluster.nodes[node].gpu_devices
    for node, used in cpu.items():
        assert used <= snap.cluster.nodes[node].capacity[CPU]
        assert mem[node] <= snap.cluster.nodes[node].capacity[MEMORY]
    for node in exclusive_nodes:
        assert pods[node] == 1, f"exclusive node {node} shared by {pods[node]} pods"


def assert_quota_within_limits(snap: Snapshot) -> None:
    tree = snap.quota.tree
    fr = ("default", GPU)
    total = 0
    for name in ("cq-a", "cq-b"):
        used = snap.quota.used(name, fr)
        q = tree.nodes[name].quotas[fr]
        if q.borrowing_limit is not None:
            assert used <= q.nominal + q.borrowing_limit
        total += used
    assert total <= tree.nodes["cohort:lab"].subtree[fr]


def decisions(snap: Snapshot) -> dict[str, list[tuple[int, tuple[int, ...]]]]:
    return {n: [(p.node, p.devices) for p in a.placements] for n, a in snap.running.items()}


@settings(max_examples=150, deadline=None)
@given(worlds())
def test_detente_invariants(case: tuple[World, list[Workload]]) -> None:
    world, jobs = case
    snap = world.snapshot()
    settle(snap, jobs, "detente")
    assert_no_node_overcommitted(snap)
    assert_quota_within_limits(snap)
    for adm in snap.running.values():  # a gang is all or nothing
        assert adm.complete
        if adm.workload.topology is not None:
            racks = {snap.cluster.nodes[p.node].labels[RACK] for p in adm.placements}
            assert len(racks) == 1
    again = world.snapshot()
    settle(again, jobs, "detente")
    assert decisions(again) == decisions(snap)  # same input, same decisions


@settings(max_examples=60, deadline=None)
@given(worlds())
def test_k8s_profile_never_overcommits_and_repeats(case: tuple[World, list[Workload]]) -> None:
    world, jobs = case
    snap = world.snapshot()
    settle(snap, jobs, "k8s")
    assert_no_node_overcommitted(snap)
    again = world.snapshot()
    settle(again, jobs, "k8s")
    assert decisions(again) == decisions(snap)


def state_tuple(s: ClusterState) -> tuple[object, ...]:
    return (s.free_cpu, s.free_mem, s.devices, s.whole, s.pods, s.hist, s.idle, s.free_milli)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(SHARES), st.booleans()), max_size=12))
def test_rollback_restores_state_exactly(steps: list[tuple[int, float, bool]]) -> None:
    nodes = [a_node(f"n{i}").gpus(8).in_rack("r1").build() for i in range(4)]
    state = ClusterState(World(nodes).snapshot().cluster)
    state.allocate(0, Resources.of(gpus=0.5))
    before = state_tuple(state.clone())
    stmt = Statement(state)
    for node, gpus, excl in steps:
        req = Resources.of(gpus=gpus, cpu_milli=1000)
        if state.fits(node, req, excl):
            stmt.stage("p", node, req, excl)
    stmt.rollback()
    assert state_tuple(state) == before


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(SHARES), st.booleans()), max_size=12))
def test_release_many_equals_releasing_one_by_one(steps: list[tuple[int, float, bool]]) -> None:
    nodes = [a_node(f"n{i}").gpus(8).in_rack("r1").build() for i in range(4)]
    state = ClusterState(World(nodes).snapshot().cluster)
    pods = []
    for node, gpus, excl in steps:
        req = Resources.of(gpus=gpus, cpu_milli=1000)
        if state.fits(node, req, excl):
            pods.append((node, req, state.allocate(node, req, excl), excl))
    one, many = state.clone(), state.clone()
    for node, req, devs, excl in reversed(pods):
        one.release(node, req, devs, excl)
    many.release_many(pods)
    assert state_tuple(one) == state_tuple(many)
