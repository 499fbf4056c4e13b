"""Recovery after a restart or a take-over: the reconciler's step 0.

Settles what a crash interrupted: a pod found by its token is adopted, a pod with an
exit file is finished, a pod never started is started — so no job is lost and none
runs twice.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm.exc import StaleDataError

from detente.control import launch
from detente.control.settle import pods_of
from detente.control.store.models import ACTIVE, LAUNCHING, RUNNING, STOPPING, Job, Pod
from detente.executors.local import LocalExecutor

if TYPE_CHECKING:
    from detente.control.reconciler import Reconciler

log = logging.getLogger("detente")


def recover(rec: Reconciler) -> dict[str, int]:
    """Settles what a crash interrupted: adopts pods found by their token, finishes
    those that ended meanwhile (their exit files), and starts those recorded but
    never started. Pods with a pid that are gone without an exit file are left for
    `step` to settle as lost."""
    counts = {"adopted": 0, "ended": 0, "started": 0, "lost": 0, "dropped": 0}
    with rec.sessions() as s:
        jobs = list(s.scalars(select(Job).where(Job.state.in_(ACTIVE))))
        pods = pods_of(s, jobs)
        tokens = {p.token for ps in pods.values() for p in ps if not p.done}
        found = rec.executor.find(tokens)
        relaunch = []
        for job in jobs:
            try:
                for p in pods.get(job.id, []):
                    if not p.done:
                        kind = _recover_pod(rec, job, p, found)
                        if kind == "started" and job.state == STOPPING:
                            p.done, kind = True, "dropped"  # cancelled before it started
                        counts[kind] += 1
            except Exception:  # one bad job must not stop recovery of the others
                log.exception("recovering job %s failed", job.id)
                continue
            unstarted = any(p.pid is None and not p.done for p in pods.get(job.id, []))
            if unstarted and job.state != STOPPING:  # a cancelled job stays cancelled
                job.state = LAUNCHING
                relaunch.append(job.id)
            elif job.state == LAUNCHING:
                job.state = RUNNING
        try:
            s.commit()
        except StaleDataError:  # the API won a race: recover again from what it wrote
            s.rollback()
            return recover(rec)
    rec.starter.start(relaunch)
    return counts


def _recover_pod(rec: Reconciler, job: Job, p: Pod, found: dict[str, tuple[int, int]]) -> str:
    if p.token in found:
        p.pid, p.pid_start = found[p.token]
        if isinstance(rec.executor, LocalExecutor):
            rec.executor.watch(p.pid)  # its end wakes the loop, as a launched pod's
        return "adopted"
    code = rec.executor.exit_code(launch.exit_file(rec.state_dir, job, p))
    if code is not None:
        p.done, p.exit_code = True, code
        return "ended"
    if p.pid is not None and job.state == LAUNCHING:
        p.pid = None  # its pid was never confirmed and no such process exists
    return "started" if p.pid is None else "lost"
