"""Replica autoscaling, as the Kubernetes HorizontalPodAutoscaler decides it.

``desired = ceil(current × (metric per replica) / target)``, which for a load shared by
the replicas is ``ceil(load / target)``; no change while the ratio is within the
tolerance (HPA: 10 %); scale-up at once, scale-down to the highest recommendation of
the stabilization window (HPA: 300 s), so a dip does not shed replicas that the next
minute needs; clamped to [min, max]. Pure: the caller keeps the window of samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    #: Load one replica serves at its target utilization.
    target: float
    min_replicas: int = 1
    max_replicas: int = 16
    tolerance: float = 0.1
    #: Scale-down stabilization window, seconds.
    stabilization: float = 300.0


def recommend(load: float, spec: AutoscaleSpec, current: int) -> int:
    """One sample's recommendation, before stabilization and clamping."""
    if current > 0 and load > 0 and abs(load / (current * spec.target) - 1) <= spec.tolerance:
        return current
    return math.ceil(load / spec.target) if load > 0 else 0


def autoscale(
    window: Sequence[tuple[float, float]], spec: AutoscaleSpec, current: int, now: float
) -> int:
    """Desired replicas at ``now`` from (time, load) samples, newest last."""
    if not window:
        return max(spec.min_replicas, min(spec.max_replicas, current))
    recent = [v for t, v in window if now - t <= spec.stabilization] or [window[-1][1]]
    latest = recommend(recent[-1], spec, current)
    if latest < current:  # scale down only as far as the window allows
        latest = min(current, max(recommend(v, spec, current) for v in recent))
    return max(spec.min_replicas, min(spec.max_replicas, latest))
