"""``sbatch --test-only``: when and where a job would start, decided by the one
driver on the store as it is — and nothing submitted.

The job is created inside the caller's transaction (so every check of a real
submission applies), the driver runs on a load that includes it, and the transaction
is rolled back: the answer is the start the scheduler gives it *now* (admitted now,
or its backfill reservation), as Slurm's ``--test-only`` asks the scheduler.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from detente.api.hostlist import compress
from detente.control import workloads
from detente.control.store.models import Job
from detente.core.driver import schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile


def will_run(
    s: Session, submit: Callable[[], list[int]], profile: Profile, now: float | None = None
) -> dict[str, Any]:
    """{"job", "start", "nodes", "queue", "cpus", "message"} (``start`` None with the
    reason it would wait); rolls ``s`` back."""
    now = time.time() if now is None else now
    try:
        jid = submit()[0]
        snap, queues, rows = workloads.load(s, profile, now=now)
        reprioritize(snap, queues, profile.half_life, now)
        d = schedule(snap, queues, profile, now, random.Random(profile.seed))
        job = rows.get(jid) or s.get(Job, jid)
        assert job is not None
        start, nodes = _when(snap, d, str(jid), now)
        spec = job.spec
        cpus = int(spec.get("cpus_per_task", 1) * spec.get("tasks_per_node", 1)
                   * spec.get("nodes", 1))  # fmt: skip
        out = {"job": jid, "start": start, "nodes": nodes, "queue": job.queue, "cpus": cpus}
        if start is None:
            why = d.pending.get(str(jid))
            out["message"] = f"Job {jid} would not start: {why.reason if why else job.reason}"
        else:
            at = datetime.fromtimestamp(start).isoformat(timespec="seconds")
            out["message"] = (f"Job {jid} to start at {at} using {cpus} processors on nodes "
                              f"{compress(nodes)} in partition {job.queue}")  # fmt: skip
        return out
    finally:
        s.rollback()


def _when(snap: Any, d: Any, name: str, now: float) -> tuple[float | None, list[str]]:
    for adm in d.admissions:
        if adm.workload.name == name and adm.complete:
            return now, [snap.cluster.nodes[p.node].name for p in adm.placements]
    for r in d.reservations:
        if r.workload == name:
            return r.start, sorted(snap.cluster.nodes[n].name for n in r.nodes)
    return None, []
