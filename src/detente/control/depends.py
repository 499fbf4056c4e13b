"""Slurm's job dependencies (sbatch ``--dependency``), judged on the store's rows.

A condition names a job, every task of an array (by the array's id), or one task
(``ID_TASK``), and is, for all the jobs it names:

* ``after``: each started (or ended without starting) ``+time`` ago;
* ``afterany``: each ended;
* ``afterok``: each ended COMPLETED — never, once one ended otherwise;
* ``afternotok``: all ended and one did not complete — never, if all completed;
* ``aftercorr``: ``afterok`` on the task of the named array with this task's id;
* ``singleton``: no earlier job of the same name and user is still pending or active.

Conditions are joined by ``,`` (all must be met) or ``?`` (any). A job that names no
known job (purged) has nothing to wait for, as in Slurm. The result is the reason the
job waits — ``Dependency`` or ``DependencyNeverSatisfied`` — or None.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from detente.control.jobs import event
from detente.control.store.models import CANCELLED, COMPLETED, PENDING, TERMINAL, Job

MET, WAIT, NEVER = "met", "wait", "never"
WAITING, NEVER_SATISFIED = "Dependency", "DependencyNeverSatisfied"


@dataclass
class Index:
    """The rows dependencies name: by id, array tasks by their array's id, and (only
    when a pending job names a ``singleton`` dependency) the live jobs by (user, name)."""

    by_id: dict[int, Job] = field(default_factory=dict)
    by_array: dict[int, list[Job]] = field(default_factory=lambda: defaultdict(list))
    live: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))


def index(s: Session, pending: Iterable[Job], live: Iterable[Job]) -> Index:
    """Loads the rows ``pending`` jobs' dependencies name, in one query."""
    deps = [d for j in pending for d in j.spec.get("dependencies", [])]
    ids = {d["job_id"] for d in deps if d.get("job_id")}
    out = Index()
    if ids:
        q = select(Job).where(or_(Job.id.in_(ids), Job.array_job_id.in_(ids)))
        for row in s.scalars(q):
            out.by_id[row.id] = row
            if row.array_job_id is not None:
                out.by_array[row.array_job_id].append(row)
    if any(d["kind"] == "singleton" for d in deps):  # else thousands of appends a step
        for j in live:
            out.live[(j.user, j.name)].append(j.id)
    return out


def _named(d: dict[str, Any], job: Job, idx: Index) -> list[Job]:
    task = job.array_task_id if d["kind"] == "aftercorr" else d.get("task")
    members = idx.by_array.get(d["job_id"])
    if task is not None and members is not None:
        return [r for r in members if r.array_task_id == task]
    if members:
        return members
    row = idx.by_id.get(d["job_id"])
    return [row] if row is not None else []


def _judge(d: dict[str, Any], rows: list[Job], now: float) -> str:
    ended = [r.state in TERMINAL for r in rows]
    ok = [r.state == COMPLETED for r in rows]
    kind = d["kind"]
    if kind == "after":
        # Started (or ended, even without starting), and its delay past the start.
        started = all(e or (r.state != PENDING and r.start_time is not None)
                      for r, e in zip(rows, ended, strict=True))  # fmt: skip
        delay = d.get("delay", 0.0)
        due = all(r.start_time is None or now >= r.start_time + delay for r in rows)
        return MET if started and due else WAIT
    if kind == "afterany":
        return MET if all(ended) else WAIT
    if kind in ("afterok", "aftercorr"):
        if any(e and not o for e, o in zip(ended, ok, strict=True)):
            return NEVER
        return MET if all(ok) else WAIT
    # afternotok
    if not all(ended):
        return WAIT
    return NEVER if all(ok) else MET


def blocked(job: Job, idx: Index, now: float) -> str | None:
    """Why ``job`` waits on its dependencies (see the module), or None."""
    deps = job.spec.get("dependencies", [])
    if not deps:
        return None
    results = []
    for d in deps:
        if d["kind"] == "singleton":
            earlier = [i for i in idx.live.get((job.user, job.name), []) if i < job.id]
            results.append(WAIT if earlier else MET)
        else:
            rows = _named(d, job, idx)
            results.append(_judge(d, rows, now) if rows else MET)
    if job.spec.get("dependency_any"):
        done = MET in results
        never = all(r == NEVER for r in results)
    else:
        done = all(r == MET for r in results)
        never = NEVER in results
    return None if done else (NEVER_SATISFIED if never else WAITING)


def kill_invalid(s: Session, jobs: dict[int, Any], reasons: dict[int, str], now: float) -> None:
    """``--kill-on-invalid-dep=yes``: a job whose dependency can never be met is
    cancelled with that reason, as Slurm does (the caller commits: compare-and-set)."""
    for jid, why in reasons.items():
        seen = jobs[jid]
        if why == NEVER_SATISFIED and seen.spec.get("kill_on_invalid_dep"):
            job = s.get(Job, jid)  # the row (``jobs`` may hold the cache's records)
            if job is None or job.version != seen.version or job.state != PENDING:
                continue  # changed meanwhile: judged again next step
            job.state, job.end_time, job.reason = CANCELLED, now, why
            event(s, jid, now, "Cancelled", why)
