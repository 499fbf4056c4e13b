"""Inference services in the simulator: replicas that follow a load curve.

A service is a set of one-pod replica workloads in its own queue, at a priority above
training. A *load change* event sets the replicas wanted by `detente.core.autoscale`
(the Kubernetes HPA's rule: ``ceil(load / target per replica)``, 10 % tolerance,
scale-down stabilized over a window, clamped to [min, max]). Scale-up submits new
replicas (they queue like any workload and start when a cycle admits them);
scale-down withdraws pending replicas first, then stops the newest running ones. A
replica lost to a node failure or preemption is requeued (a ReplicaSet recreates it).

Load curves: ``diurnal[:PEAK]`` (a day-long sine between PEAK/8 and PEAK replicas'
worth of load, every 10 minutes, over the trace's span), or a request trace in the
Azure LLM inference format (``TIMESTAMP, ContextTokens, GeneratedTokens``), binned per
minute into tokens/s and tiled over the span.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from detente.core.autoscale import AutoscaleSpec
from detente.core.resources import CPU, GPU, Resources
from detente.core.workload import PodSet, Workload
from detente.sim.traces import TraceError

QUEUE = "inference"
PRIORITY = 1_000_000


@dataclass(frozen=True, slots=True)
class Service:
    name: str
    #: Load one replica serves at its target utilization (load units per replica).
    target: float
    min_replicas: int = 1
    max_replicas: int = 16
    gpus_per_replica: float = 1.0
    #: Scale-down stabilization window (HPA default 300 s).
    stabilization: float = 300.0

    @property
    def autoscale(self) -> AutoscaleSpec:
        return AutoscaleSpec(self.target, self.min_replicas, self.max_replicas,
                             stabilization=self.stabilization)  # fmt: skip

    def replica(self, index: int, t: float) -> Workload:
        req = Resources({GPU: round(self.gpus_per_replica * 1000), CPU: 1000})
        return Workload(
            f"{self.name}-r{index}", f"default/{QUEUE}", (PodSet("server", 1, req),),
            seq=-1, submit_time=t, priority=PRIORITY, priority_class="inference",
        )  # fmt: skip


Load = list[tuple[float, float]]


def diurnal(span: float, peak: float, step: float = 600.0) -> Load:
    """A day-long sine between ``peak / 8`` and ``peak``, sampled every ``step`` seconds."""
    low = peak / 8
    n = max(1, math.ceil(span / step))
    return [
        (i * step, low + (peak - low) * (1 - math.cos(2 * math.pi * i * step / 86400)) / 2)
        for i in range(n + 1)
    ]


def from_requests(path: Path, span: float, step: float = 60.0) -> Load:
    """Tokens/s per ``step`` from an Azure-format request trace, tiled to ``span``."""
    bins: dict[int, float] = {}
    t0: float | None = None
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                ts = datetime.fromisoformat(row["TIMESTAMP"][:26]).replace(tzinfo=UTC).timestamp()
                tokens = float(row["ContextTokens"]) + float(row["GeneratedTokens"])
            except (KeyError, ValueError, TypeError):
                raise TraceError(f"{path}:{line}: bad request row {row}") from None
            t0 = ts if t0 is None else t0
            k = int((ts - t0) // step)
            bins[k] = bins.get(k, 0.0) + tokens / step
    if not bins:
        raise TraceError(f"{path}: no requests")
    period = max(bins) + 1
    n = max(1, math.ceil(span / step))
    return [(i * step, bins.get(i % period, 0.0)) for i in range(n + 1)]


def parse_spec(spec: str, span: float) -> tuple[Service, Load]:
    """``diurnal[:PEAK]`` or a request-trace path → (service, load curve)."""
    if spec.startswith("diurnal"):
        peak = float(spec.split(":", 1)[1]) if ":" in spec else 8.0
        if peak < 1:
            raise TraceError(f"--services {spec!r}: PEAK must be at least 1 replica")
        return Service("serve", target=1.0, max_replicas=math.ceil(peak)), diurnal(span, peak)
    path = Path(spec)
    if not path.exists():
        raise TraceError(f"--services {spec!r}: not 'diurnal[:PEAK]' and no such file")
    load = from_requests(path, span)
    # One replica per 1/8 of the peak: the curve spans up to 8 replicas.
    peak = max(v for _, v in load)
    return Service("serve", target=max(peak / 8, 1.0), max_replicas=8), load
