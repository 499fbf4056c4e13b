"""Step 1 of the reconciler: settle running work.

For every active job: read its pods' ends (exit files; a pod gone without one for
`LOST_GRACE` seconds is lost, and whatever is left of it is killed), enforce its time
limit, stop a gang that lost a pod, escalate a stop (SIGTERM once, SIGKILL at
``kill_at``), and end the job when all its pods are done — or requeue it (preempted,
or a ``--requeue`` job lost to a node failure, as Slurm's JobRequeue). Changes are
made on the rows; the caller commits (a compare-and-set: a job the API changed
meanwhile is settled again next step).
"""

from __future__ import annotations

import logging
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload

from detente.control import launch
from detente.control.cache import CHUNK
from detente.control.due import Due
from detente.control.jobs import event
from detente.control.store.models import (
    ACTIVE,
    COMPLETED,
    FAILED,
    LAUNCHING,
    NODE_FAIL,
    OUT_OF_MEMORY,
    PENDING,
    REQUEUED,
    RUNNING,
    STOPPING,
    TIMEOUT,
    Job,
    Pod,
    Step,
)
from detente.executors import steps
from detente.executors.base import Executor
from detente.executors.local import steps_file

PREEMPTED = "PREEMPTED"
#: A pod whose process is gone is declared lost only if no exit file appears within
#: this many seconds (the shim writes it just before it exits).
LOST_GRACE = 2.0
#: Below this much free space the disk counts as full: no pod is declared lost for a
#: missing exit file then (its shim may be waiting to write it).
DISK_FULL_BYTES = 1 << 20
log = logging.getLogger("detente")


#: The most a job's ``--signal`` may delay its preemptor (seconds).
MAX_PREEMPT_WARNING = 120.0


def preempt_warning(job: Job) -> float:
    """How long before its SIGTERM a preempted job with ``--signal=SIG@T`` gets SIG:
    T seconds (Slurm's meaning of T), at most `MAX_PREEMPT_WARNING`."""
    warn = job.spec.get("signal")
    return min(float(warn["seconds"]), MAX_PREEMPT_WARNING) if warn else 0.0


def pods_of(s: Session, jobs: list[Job]) -> dict[int, list[Pod]]:
    """Current-attempt pods of ``jobs`` by job id, rank order, in one query."""
    attempt = {j.id: j.attempt for j in jobs}
    out: dict[int, list[Pod]] = {}
    q = select(Pod).where(Pod.job_id.in_(attempt))
    for p in s.scalars(q.order_by(Pod.job_id, Pod.rank)):
        if p.attempt == attempt[p.job_id]:
            out.setdefault(p.job_id, []).append(p)
    return out


class Settler:
    """Settles running jobs; keeps what it must remember between steps in memory
    (when a pod was first seen gone, which jobs it sent SIGTERM)."""

    def __init__(self, executor: Executor, state_dir: Path, grace: float) -> None:
        self.executor, self.state_dir, self.grace = executor, state_dir, grace
        #: Pod id → when its process was first seen gone without an exit file.
        self._gone: dict[int, float] = {}
        #: Jobs sent SIGTERM by this process (their SIGKILL time is the row's kill_at).
        self._termed: set[int] = set()
        #: Jobs sent their ``--signal`` (by this process: after a restart, once more).
        self._warned: set[int] = set()
        #: Pod id → its job, for pods in `_gone` (their jobs are due every step).
        self._gone_jobs: dict[int, int] = {}
        #: A job's stored spec (the reconciler gives its cache's, decoded once per spec).
        self.spec: Callable[[Job], dict[str, Any]] = lambda job: job.spec
        self.due = Due(executor)

    def settle(self, s: Session, now: float) -> int:
        """Settles the active jobs that may have changed (`Due`: every one, each
        `SWEEP` seconds or when the executor cannot say which pods ended) but those
        being launched; returns how many ended."""
        ended = 0
        due = self.due.jobs(s, now, self._gone_jobs)
        # The spec comes from `spec` (a cache), not with every row: it holds the
        # submitter's environment, and decoding it each step cost more than the rest.
        q = select(Job).where(Job.state.in_(ACTIVE)).options(lazyload(Job.spec_row))
        if due is None:
            active = list(s.scalars(q))
        else:
            ids = sorted(due)
            active = [j for k in range(0, len(ids), CHUNK)
                      for j in s.scalars(q.where(Job.id.in_(ids[k : k + CHUNK])))]  # fmt: skip
        by_job = pods_of(s, active)
        for job in active:
            if job.state == LAUNCHING:
                continue  # recover() owns unconfirmed launches
            try:
                ended += self._settle_job(s, job, by_job.get(job.id, []), now)
            except Exception:  # one job's trouble must not stop the others settling
                log.exception("settling job %s failed", job.id)
        return ended

    def _settle_job(self, s: Session, job: Job, pods: list[Pod], now: float) -> int:
        self._read_exits(job, pods, now)
        self._check_limits(s, job, pods, now)
        if job.state == STOPPING:
            self._escalate(s, job, pods, now)
        if all(p.done for p in pods):
            self._finish(s, job, pods, now)
            return 1
        return 0

    def _read_exits(self, job: Job, pods: list[Pod], now: float) -> None:
        """Pods that ended: by their exit file, or lost — gone without one for
        `LOST_GRACE` seconds (liveness is read *before* the file, so a pod that wrote it
        and exited is never taken for lost). A lost pod's remaining processes are
        killed before its devices are freed; none is declared lost while the disk is
        full."""
        for p in pods:
            if p.done:
                continue
            alive = self.executor.alive(p.pid, p.pid_start)
            code = self.executor.exit_code(launch.exit_file(self.state_dir, job, p))
            if code is not None:
                p.done, p.exit_code = True, code
                self._gone.pop(p.id, None)
            elif p.pid is None and job.state == STOPPING:
                p.done = True  # never started, and now never will
            elif not alive:
                first = self._gone.setdefault(p.id, now)
                self._gone_jobs[p.id] = job.id
                if now - first >= LOST_GRACE and not self._disk_full():
                    self.executor.kill_pod(p.pid, p.token)
                    p.done = True  # gone without an exit file: killed, or its node "failed"
                    self._gone.pop(p.id, None)
            if p.done:
                self._gone_jobs.pop(p.id, None)

    def _disk_full(self) -> bool:
        try:
            return shutil.disk_usage(self.state_dir).free < DISK_FULL_BYTES
        except OSError:
            return False

    def _check_limits(self, s: Session, job: Job, pods: list[Pod], now: float) -> None:
        if job.state != RUNNING:
            return
        limit = self.spec(job).get("time_limit")
        warn = self.spec(job).get("signal")
        if (
            warn and limit is not None and job.start_time is not None
            and job.id not in self._warned and now >= job.start_time + limit - warn["seconds"]
        ):  # fmt: skip
            self._warned.add(job.id)
            self._send_warning(job, [p for p in pods if not p.done], warn)
            event(s, job.id, now, "Signalled", f"signal {warn['signal']} "
                  f"{warn['seconds']}s before the time limit (--signal)")  # fmt: skip
        if limit is not None and job.start_time is not None and now >= job.start_time + limit:
            job.state, job.stop_reason = STOPPING, TIMEOUT
            event(s, job.id, now, "Timeout", f"time limit {limit:.0f}s reached")
        elif (
            self.spec(job).get("batch") and pods and pods[0].done and not all(p.done for p in pods)
        ):
            # Slurm: the job ends with its batch script; the held nodes are released.
            code = pods[0].exit_code
            job.state, job.exit_code = STOPPING, code
            job.stop_reason = NODE_FAIL if code is None else COMPLETED if code == 0 else FAILED
            event(s, job.id, now, "Stopping", "the batch script ended; releasing its nodes")
        elif any(p.done for p in pods) and not all(p.done for p in pods):
            lost = any(p.done and p.exit_code is None for p in pods)
            failed = any(p.done and p.exit_code not in (None, 0) for p in pods)
            if lost or failed:  # a gang cannot go on without part of its world
                job.state, job.stop_reason = STOPPING, NODE_FAIL if lost else FAILED
                # The cause's code, not that of the pods we are about to stop.
                job.exit_code = next((p.exit_code for p in pods if p.done and p.exit_code), None)
                event(s, job.id, now, "Stopping", "a pod ended early; stopping the gang")

    def _escalate(self, s: Session, job: Job, pods: list[Pod], now: float) -> None:
        """SIGTERM once, then SIGKILL at ``kill_at``: a preemption's deadline (set when it
        was decided), else now + the stop grace. A preempted job with ``--signal`` gets
        that signal first, and its SIGTERM one stop grace before the deadline."""
        live = [p for p in pods if not p.done]
        lost = job.kill_at is not None and now >= job.kill_at  # a node loss: no SIGTERM
        early = self._warn_preempted(s, job, live, now)
        if job.id not in self._termed and not lost and not early:
            self._termed.add(job.id)  # after a restart it is sent again: harmless
            for p in live:
                self.executor.terminate(p.pid, p.pid_start)
        if job.kill_at is None:
            job.kill_at = now + self.grace
        elif now >= job.kill_at:
            for p in live:
                self.executor.signal(p.pid, p.pid_start, signal.SIGKILL)
                if not self.executor.alive(p.pid, p.pid_start):
                    p.done = True

    def _warn_preempted(self, s: Session, job: Job, live: list[Pod], now: float) -> bool:
        """Sends a preempted job's ``--signal`` once; whether its SIGTERM must wait (it
        follows one stop grace before the deadline, leaving the job time to act)."""
        warn = self.spec(job).get("signal")
        if job.stop_reason != PREEMPTED or not warn or job.kill_at is None:
            return False
        if job.id not in self._warned:
            self._warned.add(job.id)
            self._send_warning(job, live, warn)
            event(s, job.id, now, "Signalled", f"signal {warn['signal']} before preemption "
                  "(--signal)")  # fmt: skip
        return now < job.kill_at - self.grace

    def _send_warning(self, job: Job, live: list[Pod], warn: dict[str, Any]) -> None:
        """A job's ``--signal``: a batch job's steps, or with ``B:`` its batch shell
        alone (as Slurm); a manifest's pods, every process."""
        sig = signal.Signals(warn["signal"])
        batch = (
            next((p for p in live if p.rank == 0), None) if self.spec(job).get("batch") else None
        )
        if batch is None:
            for p in live:
                self.executor.signal(p.pid, p.pid_start, sig)
        elif warn.get("batch"):
            path = launch.exit_file(self.state_dir, job, batch)
            self.executor.signal_batch(batch.pid, batch.pid_start, path, sig)
        else:
            self.executor.signal_steps(batch.pid, batch.pid_start, sig)

    def _finish(self, s: Session, job: Job, pods: list[Pod], now: float) -> None:
        self._termed.discard(job.id)
        self._warned.discard(job.id)
        if self.spec(job).get("batch") and pods:
            self._record_steps(s, job, pods[0], now)
        codes = [p.exit_code for p in pods]
        bad = next((c for c in codes if c not in (0, None)), None)
        if job.stop_reason not in (FAILED, NODE_FAIL, COMPLETED) or job.exit_code is None:
            job.exit_code = bad if bad is not None else (0 if None not in codes else None)
        job.end_time = now
        # An engine's own record of the run (Slurm's StartTime/EndTime), where it keeps one.
        times = (
            self.executor.run_times(launch.exit_file(self.state_dir, job, pods[0]))
            if pods
            else None
        )
        if times:
            job.start_time, job.end_time = times
        state = job.stop_reason or (
            NODE_FAIL if None in codes else (COMPLETED if bad is None else FAILED)
        )
        # Slurm's JobRequeue: a --requeue job lost to a node failure runs again.
        if state in (PREEMPTED, REQUEUED) or (state == NODE_FAIL and self.spec(job).get("requeue")):
            why = {PREEMPTED: "preempted", REQUEUED: "scontrol requeue"}.get(state, "node failure")
            job.state, job.nodes, job.devices, job.end_time = PENDING, None, None, None
            job.stop_reason, job.kill_at, job.reason = None, None, f"requeued after {why}"
            event(s, job.id, now, "Requeued", f"{why}; waits for its next start")
            return
        if state == FAILED and any(launch.out_of_memory(self.state_dir, job, p) for p in pods):
            state, job.reason = OUT_OF_MEMORY, "a task exceeded the job's memory (--mem)"
        if state == FAILED and job.reason is None:
            whys = (launch.launch_reason(self.state_dir, job, p) for p in pods)
            cause = next(filter(None, whys), None)
            job.reason = f"launch failed: {cause}" if cause else None
        job.state = state
        event(s, job.id, now, job.state, f"exit code {job.exit_code}")

    def _record_steps(self, s: Session, job: Job, batch: Pod, now: float) -> None:
        """The run's ``srun`` steps, from its batch pod's steps file, as Step rows."""
        path = steps_file(launch.exit_file(self.state_dir, job, batch))
        for r in steps.read(path, now):
            s.add(Step(job_id=job.id, attempt=job.attempt, step=r["step"], name=r["name"],
                       nodes=r["nodes"], ntasks=r["ntasks"], start_time=r["start"],
                       end_time=r["end"], exit_code=r["exit_code"], state=r["state"]))  # fmt: skip
