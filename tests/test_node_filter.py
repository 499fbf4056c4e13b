"""Slurm's -w/--nodelist, -x/--exclude and -C/--constraint in the core: a workload
uses only the nodes its filter allows, now and in backfill, and one that no allowed
node could ever hold is unresolvable with the reason. Named cases."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from conftest import nodes_of, settle
from detente.core.status import Code
from detente.core.workload import Workload
from detente.testing import World, a_job, a_node

A100, IB = "features", "a100,ib"


def cluster() -> World:
    return World([
        a_node("n0").label(A100, "a100,ib").build(),
        a_node("n1").label(A100, "a100").build(),
        a_node("n2").label("gpu.h100", "true").build(),
        a_node("n3").build(),
    ])  # fmt: skip


@dataclass
class Case:
    job: Workload
    want: set[str] | None  # None: pending
    reason: str = ""


CASES = {
    "-w names the nodes": Case(a_job("j").nodes(2).only_on(("n1", "n3")).build(), {"n1", "n3"}),
    "-x keeps off a node": Case(
        a_job("j").nodes(3).only_on(exclude=("n0",)).build(), {"n1", "n2", "n3"}
    ),
    "-C feature word from the features label": Case(
        a_job("j").nodes(2).only_on(features="a100").build(), {"n0", "n1"}
    ),
    "-C a&b needs both": Case(a_job("j").nodes(1).only_on(features="a100&ib").build(), {"n0"}),
    "-C a|b takes either; label keys count": Case(
        a_job("j").nodes(2).only_on(features="ib|gpu.h100").build(), {"n0", "n2"}
    ),
    "-C key=value matches a label": Case(
        a_job("j").nodes(1).only_on(features="gpu.h100=true").build(), {"n2"}
    ),
    "a filter no node passes is unresolvable": Case(
        a_job("j").nodes(1).only_on(features="tpu").build(),
        None,
        "no node matches its node list, exclusions and constraint",
    ),
    "more nodes than the filter allows never fit": Case(
        a_job("j").nodes(3).only_on(features="a100").build(),
        None,
        "the 2 node(s) it may use can hold at most 2",
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_node_filter(case: Case) -> None:
    snap = cluster().snapshot()
    res = settle(snap, [case.job])
    if case.want is None:
        assert nodes_of(snap, "j") == []
        assert res.pending["j"].code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE
        assert case.reason in res.pending["j"].reason
    else:
        assert set(nodes_of(snap, "j")) == case.want


def test_a_filtered_failure_does_not_block_an_equal_job_without_the_filter() -> None:
    # Same pod shape: the cycle's failed-shape cache must tell the two apart.
    snap = cluster().snapshot()
    busy = a_job("busy").nodes(2).only_on(("n0", "n1")).priority(100).seq(0).build()
    pinned = a_job("pinned").nodes(1).only_on(("n0",)).priority(50).seq(1).build()
    free = a_job("free").nodes(1).seq(2).build()
    res = settle(snap, [busy, pinned, free])
    assert nodes_of(snap, "pinned") == [] and "pinned" in res.pending
    assert nodes_of(snap, "free") in (["n2"], ["n3"])
