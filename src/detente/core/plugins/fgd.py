"""Fragmentation Gradient Descent (FGD, Weng et al., USENIX ATC'23) for fractional GPUs.

A node's fragmentation for a task shape *m* is the free GPU amount *m* could not use
there: everything free if *m* does not fit at all (GPUs, CPU or memory), otherwise
the free parts of devices too small for *m* (devices with less than a whole GPU free
when *m* wants whole GPUs). The node's expected fragmentation weights shapes by how
often they occur in the workload. FGD places a pod where that expectation grows
least.

Example: a node with devices free (1000, 1000, 300) and a 500-milli pod. On device 0
the 300 left over on device 2 stay fragmented for 500-milli tasks, and device 0 turns
into a 500 hole; on device 1 the same. A 250-milli pod goes to device 2 (best fit),
leaving two whole GPUs untouched: its fragmentation rises least.
"""

from __future__ import annotations

from collections.abc import Sequence

from detente.core.framework import Score
from detente.core.resources import CPU, MEMORY, MILLI, Resources
from detente.core.state import ClusterState

#: Shape frequencies of GPU pods in the openb default trace, rounded (1-GPU 0.55,
#: shares 0.44 at a mix of sizes, multi-GPU 0.01). Callers should pass their own.
DEFAULT_SHAPES: tuple[tuple[Resources, float], ...] = (
    (Resources.of(gpus=1), 0.55),
    (Resources.of(gpus=0.5), 0.2),
    (Resources.of(gpus=0.25), 0.14),
    (Resources.of(gpus=0.1), 0.1),
    (Resources.of(gpus=2), 0.005),
    (Resources.of(gpus=8), 0.005),
)


_MEMO_LIMIT = 1 << 18


def _frag(devs: Sequence[int], cpu: int, mem: int, shape: Resources) -> int:
    free = sum(devs)
    g = shape.gpu_milli
    if shape[CPU] > cpu or shape[MEMORY] > mem:
        return free
    if g >= MILLI:
        full = sum(1 for d in devs if d == MILLI)
        return free if full < g // MILLI else free - full * MILLI
    if g == 0:
        return 0
    if max(devs, default=0) < g:
        return free
    return sum(d for d in devs if d < g)


class FragmentationGradient:
    name = "FGD"

    def __init__(self, shapes: Sequence[tuple[Resources, float]] = DEFAULT_SHAPES) -> None:
        total = sum(w for _, w in shapes) or 1.0
        self.shapes = tuple((r, w / total) for r, w in shapes)
        # Nodes of one type in the same state recur constantly (a cluster has few
        # node types and fills them alike), so the expectation is memoized by state.
        self._memo: dict[tuple[tuple[int, ...], int, int], float] = {}

    def expected(self, devs: Sequence[int], cpu: int, mem: int) -> float:
        """Expected fragmentation (GPU milli) of a node with free ``devs``, ``cpu``, ``mem``."""
        key = (tuple(devs), cpu, mem)
        hit = self._memo.get(key)
        if hit is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            hit = sum(w * _frag(devs, cpu, mem, r) for r, w in self.shapes)
            self._memo[key] = hit
        return hit

    def score(self, state: ClusterState, node: int, request: Resources) -> float:
        devs = list(state.devices[node])
        cpu, mem = state.free_cpu[node], state.free_mem[node]
        before = self.expected(devs, cpu, mem)
        g = request.gpu_milli
        if g >= MILLI:
            need = g // MILLI
            for i, d in enumerate(devs):
                if need and d == MILLI:
                    devs[i], need = 0, need - 1
        elif g:
            i = min((d, i) for i, d in enumerate(devs) if d >= g)[1]
            devs[i] -= g
        after = self.expected(devs, cpu - request[CPU], mem - request[MEMORY])
        cap = max(state.cluster.nodes[node].capacity.gpu_milli, 1)
        # Growth in [-cap, cap] mapped to [100, 0].
        return max(0.0, min(100.0, 50.0 * (1.0 - (after - before) / cap)))


_: Score = FragmentationGradient()
