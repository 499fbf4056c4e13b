"""Rows → the JSON the API returns (and the CLI prints): squeue, sinfo, sacct shapes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.api.hostlist import compress
from detente.api.jobspec import stored
from detente.control.cache import CachedJob
from detente.control.store.models import SHORT, Event, Job, Pod, Step
from detente.core.cluster import NodeCondition
from detente.core.snapshot import Snapshot

#: A time in a core reason: seconds, epoch seconds on the live system.
_TIME = re.compile(r"\bt=(\d+(?:\.\d+)?(?:e\+?\d+)?)")


def readable(reason: str) -> str:
    """A core reason with its epoch times (``reserved from t=1796040123``) as local
    ISO times (``reserved from 2026-11-30T22:42:03``), as squeue shows start times."""

    def iso(m: re.Match[str]) -> str:
        t = float(m.group(1))
        if t < 1e8:  # not an epoch time (a simulator's or plan's seconds)
            return m.group(0)
        return datetime.fromtimestamp(t).isoformat(timespec="seconds")

    return _TIME.sub(iso, reason)


def readable_all(reasons: dict[int, str]) -> dict[int, str]:
    """`readable` of each job's reason, each distinct text rewritten once (thousands of
    pending jobs share a handful of reasons)."""
    memo: dict[str, str] = {}
    out = {}
    for jid, why in reasons.items():
        shown = memo.get(why)
        if shown is None:
            shown = memo[why] = readable(why)
        out[jid] = shown
    return out


def job_id_text(job: Job | CachedJob) -> str:
    if job.array_job_id is not None:
        return f"{job.array_job_id}_{job.array_task_id}"
    return str(job.id)


@dataclass(frozen=True, slots=True)
class SpecFacts:
    """What a job's row in `queue` needs from its stored spec (an array's tasks share
    one spec: computed once per spec, not once per task)."""

    pods: int
    gpus: float
    one_per_node: bool
    time_limit: float | None

    @classmethod
    def of(cls, data: dict[str, Any]) -> SpecFacts:
        spec = stored(data)
        return cls(spec.pods, spec.pods * spec.gpus_per_node, spec.one_per_node,
                   spec.time_limit)  # fmt: skip


def job(j: Job | CachedJob, now: float, facts: SpecFacts | None = None) -> dict[str, Any]:
    """squeue's row of ``j``; ``facts`` are its spec's, computed here if not given."""
    f = facts if facts is not None else SpecFacts.of(j.spec)
    end = j.end_time if j.end_time is not None else now
    elapsed = end - j.start_time if j.start_time is not None else 0.0
    return {
        "id": j.id, "jobid": job_id_text(j), "name": j.name, "user": j.user, "team": j.team,
        "queue": j.queue, "state": j.state, "st": SHORT.get(j.state, j.state[:2]),
        "reason": j.reason, "submit_time": j.submit_time, "start_time": j.start_time,
        "end_time": j.end_time, "elapsed": elapsed,
        "nodes": len(set(j.nodes)) if j.nodes else f.pods if f.one_per_node else 1,
        "pods": f.pods, "nodelist": compress(list(dict.fromkeys(j.nodes or []))),
        "gpus": f.gpus,
        "gpu_hours": f.gpus * elapsed / 3600, "exit_code": j.exit_code,
        "time_limit": f.time_limit, "array_job_id": j.array_job_id,
        "array_task_id": j.array_task_id, "attempt": j.attempt,
        "expected_start": expected_start(j.reason) if j.state == "PENDING" else None,
    }  # fmt: skip


#: The keys of a `job` row, in order (`GET /v1/jobs?fields=`).
JOB_KEYS = ("id", "jobid", "name", "user", "team", "queue", "state", "st", "reason",
            "submit_time", "start_time", "end_time", "elapsed", "nodes", "pods", "nodelist",
            "gpus", "gpu_hours", "exit_code", "time_limit", "array_job_id", "array_task_id",
            "attempt", "expected_start")  # fmt: skip

_RESERVED = re.compile(r"reserved from (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")


def expected_start(reason: str | None) -> str | None:
    """A pending job's expected start: its backfill reservation's, as its reason
    states it (squeue --start's START_TIME); None when it holds none."""
    m = _RESERVED.search(reason or "")
    return m.group(1) if m else None


def steps_of(s: Session, jobs: list[Job]) -> dict[int, list[dict[str, Any]]]:
    """The steps of each job's last run, by job id, in step order (one query)."""
    attempt = {j.id: j for j in jobs}
    out: dict[int, list[dict[str, Any]]] = {}
    q = select(Step).where(Step.job_id.in_(attempt)).order_by(Step.job_id, Step.step)
    for st in s.scalars(q):
        j = attempt[st.job_id]
        if st.attempt == j.attempt:
            out.setdefault(j.id, []).append({
                "jobid": f"{job_id_text(j)}.{st.step}", "step": st.step, "name": st.name,
                "start_time": st.start_time, "end_time": st.end_time,
                "elapsed": st.end_time - st.start_time, "state": st.state,
                "exit_code": st.exit_code, "ntasks": st.ntasks, "nodelist": st.nodes,
            })  # fmt: skip
    return out


def describe(
    j: Job, pods: list[Pod], events: list[Event], now: float, priority: dict[str, float] | None,
    show_env: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The job in full; its stored environment only with ``show_env`` (owner, admin)."""
    out = job(j, now)
    hidden = ("script",) if show_env else ("script", "env")
    out["spec"] = {k: v for k, v in j.spec.items() if k not in hidden}
    out["placement"] = [
        {"rank": p.rank, "node": p.node, "devices": (j.devices or [])[p.rank]
         if j.devices and p.rank < len(j.devices) else [], "pid": p.pid,
         "exit_code": p.exit_code, "done": p.done}
        for p in pods
    ]  # fmt: skip
    out["events"] = [{"time": e.time, "kind": e.kind, "message": e.message} for e in events]
    if priority is not None:
        out["priority"] = {"total": round(sum(priority.values()), 3),
                           "factors": {k: round(v, 3) for k, v in priority.items()}}  # fmt: skip
    return out


def nodes(snap: Snapshot, admin: dict[str, Any]) -> list[dict[str, Any]]:
    """sinfo's node states: idle, mix, alloc; drain (drained, idle), drng (draining,
    still running), down; with the admin's reason."""
    st, cl = snap.state, snap.cluster
    out = []
    for i, n in enumerate(cl.nodes):
        total = n.capacity.gpu_milli // 1000
        free = sum(st.devices[i]) / 1000
        state = "idle" if st.pods[i] == 0 else ("alloc" if free == 0 else "mix")
        set_to = admin.get(n.name, {})
        if set_to.get("state") == "drain":
            state = "drain" if st.pods[i] == 0 else "drng"
        elif set_to.get("state") == "down":
            state = "down"
        out.append({
            "name": n.name, "rack": dict(n.labels).get("topology.detente.dev/rack", ""),
            "state": state, "gpus": total, "gpus_free": free, "cpus": n.capacity["cpu"] / 1000,
            "cpus_free": st.free_cpu[i] / 1000, "pods": st.pods[i],
            "reason": set_to.get("reason"),
        })  # fmt: skip
    return out


def gpus_allocated(snap: Snapshot) -> float:
    """GPUs held by running work on nodes that are not down (a down node's GPUs are
    neither free nor allocated)."""
    st = snap.state
    return sum(
        n.gpu_devices - sum(st.devices[i]) / 1000
        for i, n in enumerate(snap.cluster.nodes)
        if n.condition != NodeCondition.DOWN
    )
