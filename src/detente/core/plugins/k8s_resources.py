"""kube-scheduler's default resource scores: NodeResourcesFit (LeastAllocated) and
NodeResourcesBalancedAllocation, both over **cpu and memory only** (weights 1 each),
as in ``pkg/scheduler/framework/plugins/noderesources/``. GPUs take no part, which
is why one-GPU pods spread across nodes and fragment 8-GPU nodes.
"""

from __future__ import annotations

from detente.core.framework import Score
from detente.core.resources import CPU, MEMORY, Resources
from detente.core.state import ClusterState


def _fractions(state: ClusterState, node: int, request: Resources) -> list[tuple[int, int]]:
    cap = state.cluster.nodes[node].capacity
    used_cpu = cap[CPU] - state.free_cpu[node] + request[CPU]
    used_mem = cap[MEMORY] - state.free_mem[node] + request[MEMORY]
    return [(used_cpu, cap[CPU]), (used_mem, cap[MEMORY])]


class LeastAllocated:
    name = "NodeResourcesFit"

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        total = 0
        for used, alloc in _fractions(state, node, request):
            total += 0 if alloc == 0 or used > alloc else (alloc - used) * 100 // alloc
        return float(total // 2)


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        f = [min(u / a, 1.0) if a else 0.0 for u, a in _fractions(state, node, request)]
        std = abs(f[0] - f[1]) / 2
        return float(int((1 - std) * 100))


class CpuMemBinpack:
    """Volcano's binpack with its default weights: cpu and memory 1 each, GPUs not at all
    (``plugins/binpack/binpack.go``): Σ w_r (used_r + request_r) / allocatable_r / Σ w_r."""

    name = "VolcanoBinpack"

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        f = [min(u / a, 1.0) if a else 0.0 for u, a in _fractions(state, node, request)]
        return 100.0 * sum(f) / 2


_: Score = LeastAllocated()
__: Score = BalancedAllocation()
___: Score = CpuMemBinpack()
