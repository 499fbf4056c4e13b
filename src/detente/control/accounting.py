"""What users ask of the scheduler's priorities and shares (Slurm's sprio and sshare),
computed by the same code the scheduler orders its queue with: the store loaded as
the reconciler loads it, the decayed usage it keeps, and the profile's priority."""

from __future__ import annotations

from typing import Any

from detente.control import views
from detente.core import fairshare
from detente.core.fairshare import Usage
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot

GPU = "nvidia.com/gpu"


def priorities(
    snap: Snapshot, queues: QueueManager, rows: dict[int, Any], profile: Profile, usage: Usage,
    now: float,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each eligible pending job in queue order with its priority and the weighted
    terms it is the sum of (sprio's columns), on what `workloads.load` gave."""
    snap.usage = usage
    reprioritize(snap, queues, profile.half_life, now)
    out = []
    for w in queues.ordered():
        job = rows[int(w.name)]
        terms = {k: round(v, 4) for k, v in queues.explain(w).items()}
        out.append({"id": job.id, "jobid": views.job_id_text(job), "user": job.user,
                    "queue": job.queue, "priority": round(sum(terms.values()), 4),
                    "terms": terms})  # fmt: skip
    return out


def shares(
    snap: Snapshot, queues: QueueManager, profile: Profile, usage: Usage, now: float
) -> list[dict[str, Any]]:
    """Each LocalQueue's share, decayed usage and fair-share factor (sshare's columns):
    ``norm_shares`` its weight's fraction, ``effective_usage`` its fraction of all
    dominant usage, ``fairshare`` Slurm's classic 2^(−usage/shares), on what
    `workloads.load` gave."""
    snap.usage = usage
    reprioritize(snap, queues, profile.half_life, now)  # usage decayed and accrued to now
    weights = {lq.key: lq.weight for lq in snap.config.local_queues.values()}
    cap = snap.cluster.capacity
    dom = fairshare.dominant_shares(snap.usage, cap)
    factor = fairshare.factors(snap.usage, weights, cap)
    total_w = sum(weights.values()) or 1.0
    total_u = sum(dom.get(q, 0.0) for q in weights)
    return [{
        "queue": q, "weight": w, "norm_shares": round(w / total_w, 6),
        "gpu_hours": round(snap.usage.by_queue.get(q, {}).get(GPU, 0.0) / 3600, 6),
        "effective_usage": round(dom.get(q, 0.0) / total_u, 6) if total_u else 0.0,
        "fairshare": round(factor[q], 6),
    } for q, w in sorted(weights.items())]  # fmt: skip
