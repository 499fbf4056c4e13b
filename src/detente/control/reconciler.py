"""The scheduler loop: load → decide → apply, one step at a time.

1. **Settle**: read pods' exit files, enforce time limits, escalate stops (SIGTERM,
   grace, SIGKILL), end jobs whose pods are all done.
2. **Load**: rebuild the snapshot from the store — the cluster, the queue config, and
   every active job charged on its recorded nodes and devices.
3. **Decide**: `detente.core.driver.schedule`, the one driver `plan` and the
   simulator run (seeded with the profile's seed), on the eligible pending jobs
   (dependencies met, array limits). Only jobs admitted whole are launched.
4. **Apply**: for each admission, record the placement and the pods' tokens
   (``LAUNCHING``) and commit *before* starting processes; then confirm the pids
   (``RUNNING``). A crash between the two is settled by `recover`: a pod found by its
   token is adopted, a pod with an exit file is finished, a pod never started is
   started — so no job is lost and none runs twice.

The clock is injected; nothing here sleeps.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, bindparam, or_, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from detente.control import depends, nodes, views, workloads
from detente.control.cache import JobCache
from detente.control.jobs import event
from detente.control.running import RunningSnapshot
from detente.control.settle import PREEMPTED, Settler, preempt_warning
from detente.control.starting import Starter
from detente.control.store import cas
from detente.control.store.models import (
    LAUNCHING,
    PENDING,
    RUNNING,
    STOPPING,
    Event,
    Job,
)
from detente.core.driver import Decisions, schedule
from detente.core.fairshare import Usage
from detente.core.framework import PriorityContext
from detente.core.priority import reprioritize
from detente.core.profiles import Profile
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload
from detente.executors.base import Executor
from detente.executors.local import LocalExecutor

USAGE_SAVE_PERIOD = 10.0
#: The newest event that may change a decision. A decision's own ``Admitted`` and a
#: launch's ``Started`` cannot (a launching job is charged as a running one, and the
#: driver cycles until a cycle admits nothing): deciding again after them, as before,
#: cost a decision per confirmed launch.
LAST_CHANGE = (
    select(Event.id)
    .where(Event.kind.not_in(("Admitted", "Started")))
    .order_by(Event.id.desc())
    .limit(1)
)
log = logging.getLogger("detente")


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
    #: False for a step that only settled (nothing changed, so nothing was decided).
    decided: bool = True


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
        #: The next --begin time of a waiting job: a decision is due then.
        self._wake_at = math.inf
        #: Workloads built from job rows, by job id (see `workloads.load`).
        self._workloads: dict[int, Workload] = {}
        #: Live jobs and the parsed configuration between decisions (`control.cache`).
        self.cache = JobCache()
        #: The running jobs' snapshot, patched between decisions (`control.running`).
        self.running = RunningSnapshot()
        #: When priorities were last computed, from what, and the sort keys since.
        self._prio_at: float | None = None
        self._prio_ctx: PriorityContext | None = None
        self._keys: dict[str, tuple[Hashable, ...]] = {}
        #: The last decision's records and pending reasons, to write after its launches.
        self._reasons: tuple[dict[int, Job], dict[int, str]] = ({}, {})
        self.settler = Settler(self.executor, state_dir, grace)
        self.settler.spec = self.cache.spec_of
        self.starter = Starter(sessions, self.executor, state_dir, self.now, self.cache.spec_of)

    def reset(self) -> None:
        """Forgets what this process remembered between steps (at start, and when it
        takes over as leader: another instance may have decided meanwhile)."""
        self.usage, self._usage_saved = None, -math.inf
        self._mark, self._decided, self._last = None, -math.inf, StepStats()
        self._workloads.clear()
        self._prio_at, self._reasons = None, ({}, {})
        self.cache.reset()
        self.running.reset()
        self.settler = Settler(self.executor, self.state_dir, self.grace)
        self.settler.spec = self.cache.spec_of

    @property
    def api_url(self) -> str | None:
        """The API's address, given to jobs for their ``scontrol`` (None: not served)."""
        return self.starter.api_url

    @api_url.setter
    def api_url(self, url: str | None) -> None:
        self.starter.api_url = url

    def now(self) -> float:
        return self.clock()

    # -- the step -------------------------------------------------------------------

    def step(self) -> StepStats:
        """Settles running work; then, if anything changed since the last decision (an
        event was written) or a priority period passed, loads, decides and applies."""
        self.executor.reap()
        self._sync_nodes()
        with self.sessions() as s:
            ended = self.settler.settle(s, self.clock())
            try:
                s.commit()
                self.settler.due.committed()
            except StaleDataError:  # the API changed a job meanwhile: settle it next step
                s.rollback()
                ended = 0
        if self._engine_down():
            return replace(self._last, admitted=0, ended=ended, cycle_seconds=0.0, decided=False)
        with self.sessions() as s:
            # Every job change writes an event; queue changes bump the generation.
            mark = (s.scalar(LAST_CHANGE), workloads.setting(s, "generation", 0))
            now = self.clock()
            quiet = now - self._decided < self.profile.calc_period and now < self._wake_at
            if mark == self._mark and quiet:
                return replace(
                    self._last, admitted=0, ended=ended, cycle_seconds=0.0, decided=False
                )
            if self._mark is None or mark[1] != self._mark[1]:
                self._workloads.clear()  # new queue config: priorities may differ
                self._prio_at = None
            stats = self._step(s)
            stats.ended = ended
            self._mark, self._decided, self._last = mark, now, stats
        self.starter.start(stats.launches)
        try:
            self._write_reasons()
        except Exception:  # advisory: a step whose launches are made has succeeded
            log.exception("writing the pending reasons failed")
        return stats

    def _engine_down(self) -> bool:
        """Whether the engine cannot take jobs now (slurmctld does not answer): then
        nothing is admitted, and pending jobs say why."""
        ask = getattr(type(self.executor), "unavailable", None)
        why = ask(self.executor) if callable(ask) else None
        if why is not None:
            with self.sessions() as s:
                t = cast(Table, Job.__table__)
                stale = or_(t.c.reason.is_(None), t.c.reason != why)
                done = s.connection().execute(
                    update(t).where(t.c.state == PENDING, stale).values(reason=why)
                )
                if done.rowcount:
                    s.info["wrote"] = True  # a Core write: the lease's fence must see it
                    s.commit()
            self._mark = None  # decide again as soon as it answers
        return why is not None

    def _sync_nodes(self) -> None:
        """An engine's node states (Slurm's DRAIN/DOWN) made detente's, when it has new."""
        read = getattr(type(self.executor), "node_states", None)
        engine = read(self.executor) if callable(read) else None
        if engine is None:
            return
        with self.sessions() as s:
            if nodes.sync_engine(s, engine, self.clock()):
                try:
                    s.commit()
                except StaleDataError:
                    s.rollback()  # a job changed meanwhile: the next reading syncs again

    def _step(self, s: Session) -> StepStats:
        stats = StepStats()
        t0 = time.perf_counter()
        reasons: dict[int, str] = {}
        now = self.clock()
        self.cache.refresh(s)
        snap, queues, jobs = workloads.load(
            s, self.profile, self._workloads, reasons, now, live=self.cache, base=self.running
        )
        depends.kill_invalid(s, jobs, reasons, now)
        # A --begin time passing is an event of its own: decide again then.
        begins = (jobs[j].spec["begin_time"] for j, r in reasons.items() if r == "BeginTime")
        self._wake_at = min(begins, default=math.inf)
        if self.usage is None:
            self.usage = usage_from_json(workloads.setting(s, "usage"))
        snap.usage = self.usage
        result = self._decide(snap, queues)
        self.usage = snap.usage
        if self.clock() - self._usage_saved >= USAGE_SAVE_PERIOD:
            workloads.put_setting(s, "usage", usage_to_json(snap.usage))
            self._usage_saved = self.clock()
        stats.cycle_seconds = time.perf_counter() - t0
        by_queue = stats.pending_by_queue
        for name, why in result.pending.items():  # one pass: thousands pending
            jid = int(name)
            reasons[jid] = why.reason
            q = jobs[jid].queue
            by_queue[q] = by_queue.get(q, 0) + 1
        # Written once the launches are started (`_write_reasons`): they only inform.
        self._reasons = (jobs, views.readable_all(reasons))
        stats.launches = self._record(s, snap, result, jobs, self.clock())
        stats.admitted = len(stats.launches)
        stats.pending = len(result.pending)
        stats.gpus_allocated = views.gpus_allocated(snap)
        return stats

    def _decide(self, snap: Snapshot, queues: QueueManager) -> Decisions:
        """The one driver (`detente.core.driver.schedule`), with the profile's seed: the
        same decisions `plan` and the simulator make for the same input."""
        now = self.clock()
        if self._prio_at is None or now - self._prio_at >= self.profile.calc_period:
            # Priorities every PriorityCalcPeriod, as Slurm and the simulator compute them.
            reprioritize(snap, queues, self.profile.half_life, now)
            self._prio_at, self._prio_ctx, self._keys = now, queues.ctx, {}
        else:
            queues.resort(self._prio_ctx, memo=self._keys)
        return schedule(snap, queues, self.profile, now, random.Random(self.profile.seed))

    # -- apply: record, then act ------------------------------------------------------

    def _write_reasons(self) -> None:
        """The last decision's pending reasons (as shown: `views.readable`), those that
        changed. They are advisory: written without a version check (and only to jobs
        still pending), so they never race a user's cancel — and after the decision's
        launches, which they used to hold up (≈ 90 ms for 900 new reasons)."""
        jobs, shown = self._reasons
        self._reasons = ({}, {})
        changed = {j: r for j, r in shown.items() if jobs[j].reason != r}
        rows = [{"jid": j, "why": r} for j, r in changed.items()]
        if not rows:
            return
        with self.sessions() as s:
            s.info["wrote"] = True  # a Core write: the lease's fence must see it
            t = cast(Table, Job.__table__)
            stmt = update(t).where(t.c.id == bindparam("jid"), t.c.state == PENDING)
            s.connection().execute(stmt.values(reason=bindparam("why")), rows)
            s.commit()
        self.cache.note_reasons(changed)

    def _record(
        self, s: Session, snap: Snapshot, result: Decisions, jobs: dict[int, Job], now: float
    ) -> list[int]:
        """Records the decisions as compare-and-sets; if a job changed meanwhile (a
        cancel), none is applied and the next step decides again."""
        for p in result.preemptions:
            victim = s.get(Job, int(p.victim))
            if victim is not None and victim.state in (RUNNING, LAUNCHING):
                # SIGKILL at the preemption's deadline (now + the victim's checkpoint grace),
                # never sooner than the stop grace (Slurm's KillWait) after the SIGTERM.
                kill_at = max(p.deadline, now + self.grace + preempt_warning(victim))
                victim.state, victim.stop_reason, victim.kill_at = STOPPING, PREEMPTED, kill_at
                event(s, victim.id, now, "Preempted", p.reason)
        # A job runs whole or not at all: a pod-by-pod profile's partial binding is not
        # launched (the next decision starts from the store again).
        admitted = [a for a in result.admissions if a.complete]
        changes: list[cas.Change] = []
        pods: list[dict[str, Any]] = []
        # One read of the kernel's random source for every tag (a uuid4 each read it
        # once: ≈ 20 µs a job); 128 random bits a tag, as a uuid4's 122.
        tags = os.urandom(16 * len(admitted)).hex()
        for i, adm in enumerate(admitted):
            was = jobs[int(adm.workload.name)]
            names = [snap.cluster.nodes[p.node].name for p in adm.placements]
            values = {"state": LAUNCHING, "reason": None, "stop_reason": None, "kill_at": None,
                      "nodes": names, "devices": [list(p.devices) for p in adm.placements],
                      "attempt": was.attempt + 1, "start_time": now, "end_time": None,
                      "exit_code": None}  # fmt: skip
            changes.append((was.id, was.version, values))
            tag = tags[32 * i : 32 * i + 32]  # an engine job's tag; pods' tokens: tag-rank
            pods += [{"job_id": was.id, "attempt": was.attempt + 1, "rank": rank, "node": node,
                      "token": f"{tag}-{rank}", "done": False}
                     for rank, node in enumerate(names)]  # fmt: skip
            event(s, was.id, now, "Admitted", f"on {','.join(names)} (attempt {was.attempt + 1})")
        try:
            # Compare-and-sets against the versions the decision read (the cache's).
            if not cas.update_jobs(s, changes):
                raise StaleDataError("a job changed since the decision read it")
            cas.insert_pods(s, pods)
            s.commit()  # the decision is durable before any process starts
        except StaleDataError:
            s.rollback()
            self._mark = None  # decide again at once
            return []
        self.cache.wrote(changes)
        return [jid for jid, _, _ in changes]

    # -- settle ------------------------------------------------------------------------

    # -- recovery after a restart -------------------------------------------------------

    def recover(self) -> dict[str, int]:
        """Settles what a crash interrupted (`detente.control.recovery.recover`)."""
        from detente.control.recovery import recover

        return recover(self)
