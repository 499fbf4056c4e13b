"""Decayed fair share (Slurm's PriorityDecayHalfLife, classic formula) over LocalQueues.

Usage is resource-seconds per LocalQueue (GPU-seconds, CPU-seconds, …). It decays
continuously with a half-life: after ``half_life`` seconds, old usage counts half.
Each queue's usage is reduced to one number, its **dominant share** — the largest
fraction of any resource's capacity it used (DRF), so a CPU-heavy team is charged
for its CPUs and a GPU-heavy one for its GPUs.

The factor is Slurm's classic ``F = 2^(−U/S)``: U the queue's share of all dominant
usage, S its share of the weights. F = 1 with no usage, 0.5 when usage equals share,
→ 0 as it over-uses. Example: teams a (weight 1) and b (weight 1); a used 3 GPU-h,
b 1 GPU-h: U_a = 0.75, S_a = 0.5 → F_a = 2^−1.5 ≈ 0.35; F_b = 2^−0.5 ≈ 0.71.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from detente.core.resources import MILLI, Resources
from detente.core.workload import Admission

DEFAULT_HALF_LIFE = 7 * 86_400.0


@dataclass(frozen=True, slots=True)
class Usage:
    """Decayed usage per LocalQueue key, valid at ``time`` (None: nothing accrued yet)."""

    time: float | None = None
    by_queue: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


def decay(usage: Usage, now: float, half_life: float) -> Usage:
    if usage.time is None or half_life <= 0 or now <= usage.time:
        return Usage(now if usage.time is None else max(now, usage.time), usage.by_queue)
    f = 0.5 ** ((now - usage.time) / half_life)
    return Usage(now, {q: {r: v * f for r, v in u.items()} for q, u in usage.by_queue.items()})


def _rate(w_total: Resources) -> dict[str, float]:
    """Resource units per second of one running workload (GPUs in whole GPUs, CPUs in cores)."""
    return {
        r: v / MILLI if r in ("nvidia.com/gpu", "cpu") else float(v) for r, v in w_total.items()
    }


def accrue(usage: Usage, running: Iterable[Admission], now: float, half_life: float) -> Usage:
    """Decays ``usage`` to ``now`` and charges every running workload for its time since
    the later of its start and the last accrual. Pure: returns a new `Usage`."""
    since = usage.time
    out: dict[str, dict[str, float]] = {
        q: dict(u) for q, u in decay(usage, now, half_life).by_queue.items()
    }
    rates: dict[Resources, dict[str, float]] = {}  # many workloads share a request
    for adm in running:
        if not adm.complete:
            continue
        start = adm.start_time if since is None else max(adm.start_time, since)
        dt = now - start
        if dt <= 0:
            continue
        q = out.setdefault(adm.workload.queue, {})
        total = adm.workload.total
        rate = rates.get(total)
        if rate is None:
            rate = rates[total] = _rate(total)
        for r, v in rate.items():
            q[r] = q.get(r, 0.0) + v * dt
    return Usage(now, out)


def dominant_shares(usage: Usage, capacity: Resources) -> dict[str, float]:
    cap = _rate(capacity)
    return {
        q: max((v / cap[r] for r, v in u.items() if cap.get(r)), default=0.0)
        for q, u in usage.by_queue.items()
    }


def factors(usage: Usage, weights: Mapping[str, float], capacity: Resources) -> dict[str, float]:
    """Fair-share factor in [0, 1] per queue in ``weights`` (missing usage counts as none)."""
    dom = dominant_shares(usage, capacity)
    total_u = sum(dom.get(q, 0.0) for q in weights) or 0.0
    total_w = sum(weights.values()) or 1.0
    out = {}
    for q, w in weights.items():
        if total_u == 0 or w <= 0:
            out[q] = 1.0 if total_u == 0 and w > 0 else 0.0
            continue
        out[q] = 2.0 ** (-(dom.get(q, 0.0) / total_u) / (w / total_w))
    return out
