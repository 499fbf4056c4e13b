"""A gang is a transaction (Volcano's Statement): stage pods, then commit whole or discard.

Staged pods are already charged to the `ClusterState`, so later pods of the same
gang see them; `discard` releases them newest first, restoring the state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from detente.core.resources import Resources
from detente.core.state import ClusterState


@dataclass(frozen=True, slots=True)
class Staged:
    pod_set: str
    node: int
    request: Resources
    devices: tuple[int, ...]
    exclusive: bool


class Statement:
    """Staged pod placements on one state. Contract: `mark`/`rollback` nest like a stack."""

    __slots__ = ("staged", "state")

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.staged: list[Staged] = []

    def stage(self, pod_set: str, node: int, request: Resources, exclusive: bool) -> None:
        devices = self.state.allocate(node, request, exclusive)
        self.staged.append(Staged(pod_set, node, request, devices, exclusive))

    def mark(self) -> int:
        return len(self.staged)

    def rollback(self, mark: int = 0) -> None:
        """Releases every pod staged after ``mark``, newest first."""
        while len(self.staged) > mark:
            s = self.staged.pop()
            self.state.release(s.node, s.request, s.devices, s.exclusive)

    def count(self, pod_set: str, since: int = 0) -> int:
        return sum(1 for s in self.staged[since:] if s.pod_set == pod_set)

    def nodes_used(self, since: int = 0) -> set[int]:
        return {s.node for s in self.staged[since:]}
