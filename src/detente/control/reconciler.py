"""The scheduler loop: load → decide → apply, one step at a time.

1. **Settle**: read pods' exit files, enforce time limits, escalate stops (SIGTERM,
   grace, SIGKILL), end jobs whose pods are all done.
2. **Load**: rebuild the snapshot from the store — the cluster, the queue config, and
   every active job charged on its recorded nodes and devices.
3. **Decide**: `run_cycle` on the eligible pending jobs (dependencies met, array
   limits) — the same pure core the simulator runs.
4. **Apply**: for each admission, record the placement and the pods' tokens
   (``LAUNCHING``) and commit *before* starting processes; then confirm the pids
   (``RUNNING``). A crash between the two is settled by `recover`: a pod found by its
   token is adopted, a pod with an exit file is finished, a pod never started is
   started — so no job is lost and none runs twice.

The clock is injected; nothing here sleeps.
"""

from __future__ import annotations

import math
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from detente.control import launch, workloads
from detente.control.jobs import event
from detente.control.store.models import (
    ACTIVE,
    COMPLETED,
    FAILED,
    LAUNCHING,
    NODE_FAIL,
    PENDING,
    RUNNING,
    STOPPING,
    TIMEOUT,
    Event,
    Job,
    Pod,
)
from detente.core.cycle import CycleResult, run_cycle
from detente.core.fairshare import Usage
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload
from detente.executors.base import Executor
from detente.executors.local import LocalExecutor

PREEMPTED = "PREEMPTED"
USAGE_SAVE_PERIOD = 10.0


def usage_to_json(u: Usage) -> dict[str, Any]:
    return {"time": u.time, "by_queue": {q: dict(v) for q, v in u.by_queue.items()}}


def usage_from_json(d: dict[str, Any] | None) -> Usage:
    return Usage() if not d else Usage(d.get("time"), d.get("by_queue", {}))


@dataclass
class StepStats:
    admitted: int = 0
    ended: int = 0
    pending: int = 0
    cycle_seconds: float = 0.0
    gpus_allocated: float = 0.0
    pending_by_queue: dict[str, int] = field(default_factory=dict)
    launches: list[int] = field(default_factory=list)


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        profile: Profile,
        state_dir: Path,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
        grace: float = 5.0,
    ) -> None:
        self.sessions, self.profile, self.state_dir = sessions, profile, state_dir
        self.executor = executor or LocalExecutor()
        self.clock, self.grace = clock, grace
        #: Decayed fair-share usage, kept across steps (a snapshot is rebuilt each step)
        #: and saved to the store every `USAGE_SAVE_PERIOD` seconds to survive restarts.
        self.usage: Usage | None = None
        self._usage_saved = -math.inf
        # The last decision: the newest event then, when, and its figures.
        self._mark: tuple[int | None, int] | None = None
        self._decided = -math.inf
        self._last = StepStats()
        #: Workloads built from job rows, by job id (see `workloads.load`).
        self._workloads: dict[int, Workload] = {}

    # -- the step -------------------------------------------------------------------

    def step(self) -> StepStats:
        """Settles running work; then, if anything changed since the last decision (an
        event was written) or a priority period passed, loads, decides and applies."""
        self.executor.reap()
        with self.sessions() as s:
            ended = self._settle(s, self.clock())
            s.commit()
        with self.sessions() as s:
            # Every job change writes an event; queue changes bump the generation.
            mark = (s.scalar(select(func.max(Event.id))), workloads.setting(s, "generation", 0))
            now = self.clock()
            if mark == self._mark and now - self._decided < self.profile.calc_period:
                return replace(self._last, admitted=0, ended=ended, cycle_seconds=0.0)
            if self._mark is None or mark[1] != self._mark[1]:
                self._workloads.clear()  # new queue config: priorities may differ
            stats = self._step(s)
            stats.ended = ended
            self._mark, self._decided, self._last = mark, now, stats
        for job_id in stats.launches:
            self._launch(job_id)
        return stats

    def _step(self, s: Session) -> StepStats:
        stats = StepStats()
        t0 = time.perf_counter()
        snap, queues, jobs = workloads.load(s, self.profile, self._workloads)
        if self.usage is None:
            self.usage = usage_from_json(workloads.setting(s, "usage"))
        snap.usage = self.usage
        result = self._decide(snap, queues)
        self.usage = snap.usage
        if self.clock() - self._usage_saved >= USAGE_SAVE_PERIOD:
            workloads.put_setting(s, "usage", usage_to_json(snap.usage))
            self._usage_saved = self.clock()
        stats.cycle_seconds = time.perf_counter() - t0
        stats.launches = self._record(s, snap, result, jobs, self.clock())
        stats.admitted = len(stats.launches)
        stats.pending = len(result.pending)
        stats.gpus_allocated = snap.cluster.total_gpus - snap.state.free_gpus()
        for name in result.pending:
            q = jobs[int(name)].queue
            stats.pending_by_queue[q] = stats.pending_by_queue.get(q, 0) + 1
        return stats

    def _decide(self, snap: Snapshot, queues: QueueManager) -> CycleResult:
        now = self.clock()
        reprioritize(snap, queues, self.profile.half_life, now)
        total = CycleResult([], {}, [], [])
        for _ in range(100):  # cycles until one admits nothing (Kueue pops heads per cycle)
            r = run_cycle(snap, queues, self.profile, now)
            total.admissions += r.admissions
            total.preemptions += r.preemptions
            total.pending, total.reservations = r.pending, r.reservations
            for adm in r.admissions:
                queues.remove(adm.workload.name)
            if not r.admissions:
                break
        return total

    # -- apply: record, then act ------------------------------------------------------

    def _record(
        self, s: Session, snap: Snapshot, result: CycleResult, jobs: dict[int, Job], now: float
    ) -> list[int]:
        for p in result.preemptions:
            victim = s.get(Job, int(p.victim))
            if victim is not None and victim.state in (RUNNING, LAUNCHING):
                victim.state, victim.stop_reason = STOPPING, PREEMPTED
                event(s, victim.id, now, "Preempted", p.reason)
        for name, why in result.pending.items():
            job = jobs[int(name)]
            if job.reason != why.reason:
                job.reason = why.reason
        out = []
        for adm in result.admissions:
            job = jobs[int(adm.workload.name)]
            names = [snap.cluster.nodes[p.node].name for p in adm.placements]
            job.state, job.reason, job.stop_reason, job.kill_at = LAUNCHING, None, None, None
            job.nodes, job.devices = names, [list(p.devices) for p in adm.placements]
            job.attempt += 1
            job.start_time, job.end_time, job.exit_code = now, None, None
            for rank, node in enumerate(names):
                s.add(Pod(job_id=job.id, attempt=job.attempt, rank=rank, node=node,
                          token=uuid.uuid4().hex, done=False))  # fmt: skip
            event(s, job.id, now, "Admitted", f"on {','.join(names)} (attempt {job.attempt})")
            out.append(job.id)
        s.commit()  # the decision is durable before any process starts
        return out

    def _launch(self, job_id: int) -> None:
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is None or job.state != LAUNCHING:
                return
            d = launch.job_dir(self.state_dir, job)
            d.mkdir(parents=True, exist_ok=True)
            script = d / "script.sh"
            if not script.exists():
                script.write_text(job.spec["script"])
            pods = self._pods(s, job)
            for pod in pods:
                if pod.pid is None and not pod.done:
                    try:
                        pod.pid, pod.pid_start = self.executor.launch(
                            launch.pod_launch(self.state_dir, job, pod)
                        )
                    except OSError as e:  # e.g. --chdir missing: the job fails, whole
                        self._launch_failed(s, job, pods, f"{e.strerror}: {e.filename}")
                        return
            job.state = RUNNING
            event(s, job.id, self.clock(), "Started", f"{len(job.nodes or [])} pod(s)")
            s.commit()

    def _launch_failed(self, s: Session, job: Job, pods: list[Pod], why: str) -> None:
        for p in pods:
            if p.pid is None:
                p.done = True
        job.state, job.stop_reason, job.reason = STOPPING, FAILED, f"launch failed: {why}"
        event(s, job.id, self.clock(), "LaunchFailed", why)
        s.commit()  # started pods are stopped by the next settle

    @staticmethod
    def _pods_of(s: Session, jobs: list[Job]) -> dict[int, list[Pod]]:
        """Current-attempt pods of ``jobs`` by job id, rank order, in one query."""
        attempt = {j.id: j.attempt for j in jobs}
        out: dict[int, list[Pod]] = {}
        q = select(Pod).where(Pod.job_id.in_(attempt))
        for p in s.scalars(q.order_by(Pod.job_id, Pod.rank)):
            if p.attempt == attempt[p.job_id]:
                out.setdefault(p.job_id, []).append(p)
        return out

    @staticmethod
    def _pods(s: Session, job: Job) -> list[Pod]:
        q = select(Pod).where(Pod.job_id == job.id, Pod.attempt == job.attempt)
        return list(s.scalars(q.order_by(Pod.rank)))

    # -- settle ------------------------------------------------------------------------

    def _settle(self, s: Session, now: float) -> int:
        ended = 0
        active = list(s.scalars(select(Job).where(Job.state.in_(ACTIVE))))
        by_job = self._pods_of(s, active)
        for job in active:
            if job.state == LAUNCHING:
                continue  # recover() owns unconfirmed launches
            pods = by_job.get(job.id, [])
            self._read_exits(job, pods)
            self._check_limits(s, job, pods, now)
            if job.state == STOPPING:
                self._escalate(job, pods, now)
            if all(p.done for p in pods):
                self._finish(s, job, pods, now)
                ended += 1
        return ended

    def _read_exits(self, job: Job, pods: list[Pod]) -> None:
        for p in pods:
            if p.done:
                continue
            code = self.executor.exit_code(launch.exit_file(self.state_dir, job, p))
            if code is not None:
                p.done, p.exit_code = True, code
            elif not self.executor.alive(p.pid, p.pid_start):
                p.done = True  # gone without an exit file: killed, or its node "failed"

    def _check_limits(self, s: Session, job: Job, pods: list[Pod], now: float) -> None:
        if job.state != RUNNING:
            return
        limit = job.spec.get("time_limit")
        if limit is not None and job.start_time is not None and now >= job.start_time + limit:
            job.state, job.stop_reason = STOPPING, TIMEOUT
            event(s, job.id, now, "Timeout", f"time limit {limit:.0f}s reached")
        elif any(p.done for p in pods) and not all(p.done for p in pods):
            lost = any(p.done and p.exit_code is None for p in pods)
            failed = any(p.done and p.exit_code not in (None, 0) for p in pods)
            if lost or failed:  # a gang cannot go on without part of its world
                job.state, job.stop_reason = STOPPING, NODE_FAIL if lost else FAILED
                # The cause's code, not that of the pods we are about to stop.
                job.exit_code = next((p.exit_code for p in pods if p.done and p.exit_code), None)
                event(s, job.id, now, "Stopping", "a pod ended early; stopping the gang")

    def _escalate(self, job: Job, pods: list[Pod], now: float) -> None:
        live = [p for p in pods if not p.done]
        if job.kill_at is None:
            grace = self.grace
            if job.stop_reason == PREEMPTED:  # time to checkpoint before requeue
                grace = max(grace, self.profile.default_grace)
            job.kill_at = now + grace
            for p in live:
                self.executor.signal(p.pid, p.pid_start, signal.SIGTERM)
        elif now >= job.kill_at:
            for p in live:
                self.executor.signal(p.pid, p.pid_start, signal.SIGKILL)
                if not self.executor.alive(p.pid, p.pid_start):
                    p.done = True

    def _finish(self, s: Session, job: Job, pods: list[Pod], now: float) -> None:
        codes = [p.exit_code for p in pods]
        bad = next((c for c in codes if c not in (0, None)), None)
        if job.stop_reason not in (FAILED, NODE_FAIL) or job.exit_code is None:
            job.exit_code = bad if bad is not None else (0 if None not in codes else None)
        job.end_time = now
        state = job.stop_reason or (
            NODE_FAIL if None in codes else (COMPLETED if bad is None else FAILED)
        )
        # Slurm's JobRequeue: a --requeue job lost to a node failure runs again.
        if state == PREEMPTED or (state == NODE_FAIL and job.spec.get("requeue")):
            why = "preempted" if state == PREEMPTED else "node failure"
            job.state, job.nodes, job.devices, job.end_time = PENDING, None, None, None
            job.stop_reason, job.kill_at, job.reason = None, None, f"requeued after {why}"
            event(s, job.id, now, "Requeued", f"{why}; waits for its next start")
            return
        job.state = state
        event(s, job.id, now, job.state, f"exit code {job.exit_code}")

    # -- recovery after a restart -------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Settles what a crash interrupted: adopts pods found by their token, finishes
        those that ended meanwhile (their exit files), and starts those recorded but
        never started. Pods with a pid that are gone without an exit file are left for
        `step` to settle as lost."""
        counts = {"adopted": 0, "ended": 0, "started": 0, "lost": 0}
        with self.sessions() as s:
            jobs = list(s.scalars(select(Job).where(Job.state.in_(ACTIVE))))
            pods = self._pods_of(s, jobs)
            tokens = {p.token for ps in pods.values() for p in ps if not p.done}
            found = self.executor.find(tokens)
            relaunch = []
            for job in jobs:
                for p in pods.get(job.id, []):
                    if not p.done:
                        counts[self._recover_pod(job, p, found)] += 1
                if any(p.pid is None and not p.done for p in pods.get(job.id, [])):
                    job.state = LAUNCHING
                    relaunch.append(job.id)
                elif job.state == LAUNCHING:
                    job.state = RUNNING
            s.commit()
        for job_id in relaunch:
            self._launch(job_id)
        return counts

    def _recover_pod(self, job: Job, p: Pod, found: dict[str, tuple[int, int]]) -> str:
        if p.token in found:
            p.pid, p.pid_start = found[p.token]
            return "adopted"
        code = self.executor.exit_code(launch.exit_file(self.state_dir, job, p))
        if code is not None:
            p.done, p.exit_code = True, code
            return "ended"
        if p.pid is not None and job.state == LAUNCHING:
            p.pid = None  # its pid was never confirmed and no such process exists
        return "started" if p.pid is None else "lost"
