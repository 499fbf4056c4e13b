"""Kueue's quota arithmetic (pkg/cache/scheduler/resource_node.go), case by case."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from detente.core.quota import Quota, QuotaNode, QuotaState, QuotaTree

G = ("f", "gpu")


def tree(**queues: Quota) -> QuotaState:
    nodes = [QuotaNode("cohort:c", None, {})]
    nodes += [QuotaNode(n, "cohort:c", {G: q}) for n, q in queues.items()]
    return QuotaState(QuotaTree(nodes))


@dataclass
class Case:
    queues: dict[str, Quota]
    usage: dict[str, int] = field(default_factory=dict)
    want: dict[str, int] = field(default_factory=dict)


CASES = {
    "idle neighbour lends everything": Case(
        {"a": Quota(9), "b": Quota(12)}, {}, {"a": 21, "b": 21}
    ),
    "borrowing limit caps the borrower": Case(
        {"a": Quota(9, borrowing_limit=3), "b": Quota(12)}, {}, {"a": 12, "b": 21}
    ),
    "lending limit keeps the rest home": Case(
        {"a": Quota(9), "b": Quota(12, lending_limit=4)}, {}, {"a": 13, "b": 21}
    ),
    "usage of one shrinks the other": Case(
        {"a": Quota(9), "b": Quota(12)}, {"b": 10}, {"a": 11, "b": 11}
    ),
    "guaranteed part is not available to others": Case(
        {"a": Quota(9), "b": Quota(12, lending_limit=0)}, {"a": 9}, {"a": 0, "b": 12}
    ),
    "over-borrowed queue sees none": Case(
        {"a": Quota(9), "b": Quota(12)}, {"a": 21}, {"a": 0, "b": 0}
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_available(case: Case) -> None:
    q = tree(**case.queues)
    for name, used in case.usage.items():
        q.add(name, {G: used})
    assert {n: q.available(n, G) for n in case.queues} == case.want


def test_cohort_usage_counts_only_above_local_quota() -> None:
    q = tree(a=Quota(10, lending_limit=4), b=Quota(10))
    q.add("a", {G: 5})  # 6 of a's quota is local: only none of the 5 reaches the cohort
    assert q.used("cohort:c", G) == 0
    q.add("a", {G: 3})
    assert q.used("cohort:c", G) == 2
    q.add("a", {G: 3}, -1)
    assert q.used("cohort:c", G) == 0


def test_nested_cohorts_lend_upwards() -> None:
    nodes = [
        QuotaNode("cohort:root", None, {}),
        QuotaNode("cohort:left", "cohort:root", {}),
        QuotaNode("a", "cohort:left", {G: Quota(4)}),
        QuotaNode("b", "cohort:root", {G: Quota(6)}),
    ]
    q = QuotaState(QuotaTree(nodes))
    assert q.available("a", G) == 10
    q.add("b", {G: 6})
    assert q.available("a", G) == 4


def test_cohort_cycle_is_rejected() -> None:
    with pytest.raises(ValueError, match="cycle"):
        QuotaTree([QuotaNode("cohort:x", "cohort:y", {}), QuotaNode("cohort:y", "cohort:x", {})])
