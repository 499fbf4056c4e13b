"""GPU binpack (MostAllocated on GPUs) and spread (LeastAllocated on GPUs).

Binpack keeps whole nodes free for gangs: a one-GPU pod goes to the node with the
fewest free GPUs that still holds it. Spread does the opposite.
"""

from __future__ import annotations

from detente.core.framework import Score
from detente.core.resources import MILLI, Resources
from detente.core.state import ClusterState


def _gpu_used_fraction(state: ClusterState, node: int, request: Resources) -> float:
    cap = state.cluster.nodes[node].capacity.gpu_milli
    if cap == 0:
        return 0.0
    free = sum(state.devices[node])
    return min(1.0, (cap - free + request.gpu_milli) / cap)


class GpuBinpack:
    name = "GpuBinpack"

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        if request.gpu_milli == 0:
            # CPU-only pods should not eat into GPU nodes' CPU: prefer GPU-less nodes.
            return 100.0 if state.cluster.nodes[node].capacity.gpu_milli == 0 else 0.0
        return 100.0 * _gpu_used_fraction(state, node, request)


class GpuSpread:
    name = "GpuSpread"

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        return 100.0 * (1.0 - _gpu_used_fraction(state, node, request))


def whole_free(state: ClusterState, node: int) -> int:
    return sum(1 for d in state.devices[node] if d == MILLI)


_: Score = GpuBinpack()
__: Score = GpuSpread()
