"""Quota: ClusterQueues and cohorts as one tree of resource nodes (Kueue's arithmetic).

Every number is per (flavor, resource), "FR". For a node with parent P:

* ``local = max(0, subtree − lendingLimit)`` is never lent (0 without a lending limit);
* a cohort's ``subtree`` = own nominal + Σ children's ``(subtree − local)``;
* a cohort's usage = Σ children's ``max(0, usage − local)``;
* ``available(root) = subtree − usage``;
* ``available(node) = max(0, local − usage) + min(available(P), (subtree − local)
  − max(0, usage − local) + borrowingLimit)``.

Example: queues A (nominal 9) and B (nominal 12) in one cohort, no limits: A may use
21 while B is idle; with ``borrowingLimit: 3`` on A, at most 12.

Structure (`QuotaTree`) is immutable and shared; usage (`QuotaState`) is copied per cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

FR = tuple[str, str]  # (flavor, resource)
UNBOUNDED = 1 << 62


@dataclass(frozen=True, slots=True)
class Quota:
    nominal: int = 0
    borrowing_limit: int | None = None
    lending_limit: int | None = None


@dataclass(slots=True)
class QuotaNode:
    """A ClusterQueue (leaf) or a Cohort. Filled in by `QuotaTree`."""

    name: str
    parent: str | None
    quotas: Mapping[FR, Quota]
    children: list[str] = field(default_factory=list)
    subtree: dict[FR, int] = field(default_factory=dict)
    local: dict[FR, int] = field(default_factory=dict)


class QuotaTree:
    """The cohort forest. Node names are unique; cohorts are prefixed ``cohort:``."""

    def __init__(self, nodes: list[QuotaNode]) -> None:
        self.nodes: dict[str, QuotaNode] = {n.name: n for n in nodes}
        for n in nodes:
            if n.parent is not None:
                if n.parent not in self.nodes:
                    raise ValueError(f"{n.name}: unknown parent {n.parent!r}")
                self.nodes[n.parent].children.append(n.name)
        self._check_acyclic()
        for n in nodes:
            if n.parent is None:
                self._compute(n)

    def _check_acyclic(self) -> None:
        for n in self.nodes.values():
            seen = {n.name}
            p = n.parent
            while p is not None:
                if p in seen:
                    raise ValueError(f"cohort cycle through {p!r}")
                seen.add(p)
                p = self.nodes[p].parent

    def _compute(self, n: QuotaNode) -> None:
        sub = {fr: q.nominal for fr, q in n.quotas.items()}
        for c in n.children:
            child = self.nodes[c]
            self._compute(child)
            for fr, v in child.subtree.items():
                sub[fr] = sub.get(fr, 0) + v - child.local.get(fr, 0)
        n.subtree = sub
        for fr, v in sub.items():
            q = n.quotas.get(fr)
            if q is not None and q.lending_limit is not None:
                n.local[fr] = max(0, v - q.lending_limit)

    def nominal(self, name: str, fr: FR) -> int:
        q = self.nodes[name].quotas.get(fr)
        return q.nominal if q else 0


class QuotaState:
    """Usage per node of a `QuotaTree`. Contract: `add` keeps ancestors consistent."""

    __slots__ = ("tree", "usage")

    def __init__(self, tree: QuotaTree) -> None:
        self.tree = tree
        self.usage: dict[str, dict[FR, int]] = {n: {} for n in tree.nodes}

    def clone(self) -> QuotaState:
        c = QuotaState.__new__(QuotaState)
        c.tree = self.tree
        c.usage = {k: v.copy() for k, v in self.usage.items()}
        return c

    def used(self, name: str, fr: FR) -> int:
        return self.usage[name].get(fr, 0)

    def available(self, name: str, fr: FR) -> int:
        """How much more of ``fr`` the node may use now, borrowing included."""
        n = self.tree.nodes[name]
        used = self.usage[name].get(fr, 0)
        if n.parent is None:
            return n.subtree.get(fr, 0) - used
        local = n.local.get(fr, 0)
        q = n.quotas.get(fr)
        limit = q.borrowing_limit if q and q.borrowing_limit is not None else UNBOUNDED
        stored = n.subtree.get(fr, 0) - local
        cap = stored - max(0, used - local) + limit
        return max(0, local - used) + min(self.available(n.parent, fr), cap)

    def add(self, name: str, amounts: Mapping[FR, int], sign: int = 1) -> None:
        """Charges (``sign`` = 1) or returns (−1) usage to a ClusterQueue and its cohorts."""
        for fr, v in amounts.items():
            self._add_one(name, fr, sign * v)

    def _add_one(self, name: str | None, fr: FR, delta: int) -> None:
        while name is not None and delta:
            n = self.tree.nodes[name]
            u = self.usage[name]
            old = u.get(fr, 0)
            u[fr] = old + delta
            local = n.local.get(fr, 0)
            delta = max(0, old + delta - local) - max(0, old - local)
            name = n.parent

    def borrowing(self, name: str, amounts: Mapping[FR, int]) -> bool:
        """Would adding ``amounts`` take the queue above its nominal quota?"""
        return any(
            self.used(name, fr) + v > self.tree.nominal(name, fr) for fr, v in amounts.items()
        )
