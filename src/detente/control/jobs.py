"""Job services over the store: submit, cancel, and what an actor may see.

Routers and the CLI call these; they never touch processes. Cancelling a running job
only records the intent (``STOPPING`` with ``stop_reason``); the reconciler signals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from detente.api.jobspec import JobSpec
from detente.control import audit
from detente.control.store.db import EVENTS
from detente.control.store.models import (
    ACTIVE,
    CANCELLED,
    PENDING,
    REQUEUED,
    STOPPING,
    TERMINAL,
    Job,
    JobSpecRow,
    User,
)
from detente.core.queues import QueueConfig

T = TypeVar("T")
#: Attempts at a compare-and-set before giving up (another writer kept winning).
CAS_TRIES = 20


class JobError(ValueError):
    """A request that cannot be taken; ``status`` is the HTTP status it maps to."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def event(s: Session, job_id: int, now: float, kind: str, message: str) -> None:
    """Records an event of the job in ``s``: written by its commit, all of the
    session's at once (`detente.control.store.db.open_store`), gone with a rollback."""
    if s.get_transaction() is None:
        s.connection()  # a transaction for the events to belong to: its rollback drops them
    s.info["wrote"] = True  # the lease's fence must see it
    s.info.setdefault(EVENTS, []).append(
        {"job_id": job_id, "time": now, "kind": kind, "message": message}
    )


def visible(actor: User) -> Select[tuple[Job]]:
    """Jobs ``actor`` may see: their own; their team's for a team admin; all for admin."""
    q = select(Job)
    if actor.role == "admin":
        return q
    if actor.role == "team-admin":
        return q.where((Job.team == actor.team) | (Job.user == actor.name))
    return q.where(Job.user == actor.name)


def seer(actor: User) -> Callable[[str, str], bool] | None:
    """`visible` for jobs read from a cache: a test of a job's (user, team), the
    actor read once; None when ``actor`` sees every job."""
    role, name, team = actor.role, actor.name, actor.team
    if role == "admin":
        return None
    if role == "team-admin":
        return lambda u, t: t == team or u == name
    return lambda u, _t: u == name


def with_cas(s: Session, change: Callable[[], T]) -> T:
    """Runs ``change`` (which reads rows, changes them and commits) until its commit is
    not beaten by another writer (a compare-and-set on each job's version)."""
    for _ in range(CAS_TRIES):
        try:
            return change()
        except StaleDataError:
            s.rollback()
            s.expire_all()
    raise JobError("busy: the job kept changing under this request; try again", 409)


def team_queues(actor: User, config: QueueConfig) -> set[str]:
    """The LocalQueues ``actor`` may submit to: their team's (a LocalQueue named after
    the team or in the team's namespace); every queue for the admin."""
    lqs = config.local_queues.values()
    if actor.role == "admin":
        return {lq.name for lq in lqs}
    return {lq.name for lq in lqs if actor.team in (lq.name, lq.namespace)}


def check_access(actor: User, spec: JobSpec, config: QueueConfig) -> str:
    """The queue ``spec`` goes to, if ``actor`` may use it and its priority class;
    JobError (400 unknown, 403 not allowed) otherwise."""
    if spec.account and spec.account != actor.team and actor.role != "admin":
        raise JobError(f"spec.account: {actor.name} (team {actor.team}) may not charge "
                       f"account {spec.account!r}", 403)  # fmt: skip
    queue = spec.queue or spec.account or actor.team
    known = {lq.name for lq in config.local_queues.values()}
    if queue not in known:
        raise JobError(f"spec.queue: unknown queue {queue!r} (known: {', '.join(sorted(known))})")
    if queue not in team_queues(actor, config):
        raise JobError(f"spec.queue: {actor.name} (team {actor.team}) may not submit to "
                       f"queue {queue!r}", 403)  # fmt: skip
    if spec.priority_class:
        pc = config.priority_classes.get(spec.priority_class)
        if pc is None:
            raise JobError(f"spec.priority_class: unknown priority class {spec.priority_class!r}")
        if (
            actor.role != "admin"
            and pc.allowed_queues is not None
            and (queue not in pc.allowed_queues)
        ):
            raise JobError(f"spec.priority_class: {spec.priority_class!r} is not allowed in "
                           f"queue {queue!r}", 403)  # fmt: skip
    return queue


def live_refusals(actor: User, spec: JobSpec) -> list[tuple[str, str]]:
    """Fields of the one job model the live control plane cannot honour yet, as
    (field, why): it refuses them rather than drop them."""
    out = []
    if spec.gpus_per_node != int(spec.gpus_per_node):
        out.append(("gpus_per_node", f"the local executor runs whole GPUs only "
                                     f"(got {spec.gpus_per_node:g})"))  # fmt: skip
    if spec.replicas is not None:
        out.append(("replicas", "independent replicas do not run live as a Job; use nodes "
                                "(a gang), one Job per replica, or a Service"))  # fmt: skip
    if spec.submit_time is not None:
        out.append(("submit_time", f"a live job is submitted when it arrives; remove it "
                                   f"(got {spec.submit_time:g})"))  # fmt: skip
    if spec.user and spec.user != actor.name:
        out.append(("user", f"a live job runs as its submitter ({actor.name}); "
                            f"got {spec.user!r}"))  # fmt: skip
    return out


def submit(
    s: Session, actor: User, spec: JobSpec, config: QueueConfig, now: float, commit: bool = True
) -> list[int]:
    """Creates the job (one per array task, sharing one stored spec) and returns the
    ids; JobError if the queue, priority class or a dependency is unknown or not the
    caller's to use (a job the caller may not see is reported exactly as a missing
    one). Nothing is created unless all of it is valid. With ``commit=False`` the caller
    owns the transaction (to apply many jobs at once)."""
    if refused := live_refusals(actor, spec):
        raise JobError("; ".join(f"spec.{f}: {why}" for f, why in refused))
    queue = check_access(actor, spec, config)
    for d in spec.dependencies:
        if d.job_id is None:  # singleton
            continue
        q = visible(actor).where(Job.id == d.job_id)
        if d.task is not None:
            q = visible(actor).where(Job.array_job_id == d.job_id, Job.array_task_id == d.task)
        if s.scalars(q).first() is None:
            ref = f"{d.job_id}_{d.task}" if d.task is not None else str(d.job_id)
            raise JobError(f"spec.dependencies: no job {ref}")
    tasks: Sequence[int | None] = spec.array or [None]
    row = JobSpecRow(data=spec.model_dump(mode="json"))

    def new(task: int | None, array_id: int | None = None) -> Job:
        return Job(
            name=spec.name, user=actor.name, team=actor.team, queue=queue, state=PENDING,
            spec_row=row, submit_time=now, attempt=0, array_task_id=task,
            array_job_id=array_id, held=spec.hold,
        )  # fmt: skip

    # The first task's id names the array; the others are inserted in one statement
    # after it, without ORM objects (through the unit of work, 1,000 tasks cost 0.3 s,
    # holding the store's write lock while the scheduler waited to record a decision).
    first = new(tasks[0])
    s.add(first)
    s.flush()
    if spec.array:
        first.array_job_id = first.id
    rows = [{"name": spec.name, "user": actor.name, "team": actor.team, "queue": queue,
             "state": PENDING, "spec_id": row.id, "submit_time": now, "attempt": 0,
             "held": spec.hold, "version": first.version, "array_task_id": task,
             "array_job_id": first.id} for task in tasks[1:]]  # fmt: skip
    rest = insert(Job).returning(Job.id, sort_by_parameter_order=True)
    ids = [first.id, *(s.scalars(rest, rows) if rows else ())]
    for jid in ids:
        event(s, jid, now, "Submitted", f"by {actor.name} to queue {queue}")
        if spec.hold:
            event(s, jid, now, "Held", f"by {actor.name} (--hold)")
    if commit:
        s.commit()
    return ids


def get(s: Session, actor: User, job_id: int) -> Job:
    job = s.scalars(visible(actor).where(Job.id == job_id)).first()
    if job is None:
        raise JobError(f"no job {job_id}", 404)
    return job


def cancel(s: Session, actor: User, job_ids: Sequence[int], now: float) -> dict[int, str]:
    """job id → what happened. A pending job ends at once; an active one is stopped by
    the reconciler (SIGTERM, grace, SIGKILL). Ended jobs are left as they are. The
    change is a compare-and-set: an accepted cancel is never undone by the scheduler."""
    out = with_cas(s, lambda: _cancel(s, actor, job_ids, now))
    if actor.role != "user":
        others = [j for j in job_ids if (r := s.get(Job, j)) is not None and r.user != actor.name]
        if others:
            audit.record(s, actor.name, "cancel", ",".join(map(str, others)), "ok", now)
            s.commit()
    return out


def _cancel(s: Session, actor: User, job_ids: Sequence[int], now: float) -> dict[int, str]:
    out: dict[int, str] = {}
    for jid in job_ids:
        job = get(s, actor, jid)
        if job.state in TERMINAL:
            out[jid] = f"already {job.state}"
        elif job.state == PENDING:
            job.state, job.end_time, job.reason = CANCELLED, now, f"cancelled by {actor.name}"
            event(s, jid, now, "Cancelled", f"by {actor.name} while pending")
            out[jid] = CANCELLED
        elif job.state in ACTIVE:
            job.state, job.stop_reason = STOPPING, CANCELLED
            event(s, jid, now, "Cancelling", f"by {actor.name}")
            out[jid] = STOPPING
    s.commit()
    return out


def hold(s: Session, actor: User, job_ids: Sequence[int], held: bool, now: float) -> dict[int, str]:
    """Holds (or releases) pending jobs: a held job stays pending (``JobHeldUser``)."""
    return with_cas(s, lambda: _hold(s, actor, job_ids, held, now))


def _hold(
    s: Session, actor: User, job_ids: Sequence[int], held: bool, now: float
) -> dict[int, str]:
    out: dict[int, str] = {}
    for jid in job_ids:
        job = get(s, actor, jid)
        if job.state != PENDING:
            out[jid] = f"not pending ({job.state})"
            continue
        job.held = held
        event(s, jid, now, "Held" if held else "Released", f"by {actor.name}")
        out[jid] = "held" if held else "released"
    s.commit()
    return out


def requeue(s: Session, actor: User, job_ids: Sequence[int], now: float) -> dict[int, str]:
    """scontrol requeue: a running batch job is stopped (SIGTERM, grace, SIGKILL) and
    pends again for its next run; an ended one pends again at once. Services' replicas
    and manifests' jobs are not requeued (their controllers own them)."""
    return with_cas(s, lambda: _requeue(s, actor, job_ids, now))


def _requeue(s: Session, actor: User, job_ids: Sequence[int], now: float) -> dict[int, str]:
    out: dict[int, str] = {}
    for jid in job_ids:
        job = get(s, actor, jid)
        if not job.spec.get("batch") or job.service is not None:
            out[jid] = "not a batch job: cannot be requeued"
        elif job.state in ACTIVE and job.state != STOPPING:
            job.state, job.stop_reason = STOPPING, REQUEUED
            event(s, jid, now, "Requeueing", f"by {actor.name}")
            out[jid] = "requeued"
        elif job.state in TERMINAL:
            job.state, job.nodes, job.devices, job.end_time = PENDING, None, None, None
            job.exit_code, job.stop_reason, job.reason = None, None, f"requeued by {actor.name}"
            event(s, jid, now, "Requeued", f"by {actor.name}")
            out[jid] = "requeued"
        else:
            out[jid] = f"cannot requeue ({job.state})"
    s.commit()
    return out
