"""Step 4b of the reconciler: start the processes of jobs recorded ``LAUNCHING``.

Jobs are started in batches: one session reads them and their pods, the executor
starts every pod, and one commit confirms them all ``RUNNING`` with their pids (a
commit per job cost more than starting the job). Batches are pipelined: the next one
is read and prepared while the spawners start the pods of the one before, which is
confirmed after (a 200-job batch was prepared, then waited for, in turn: 2,000
``true`` tasks took 7.1–8.5 s, 6.5–6.9 s pipelined). Whatever goes wrong with one job
fails that job, with the reason, and never the others or the loop. If the batch's
commit loses a compare-and-set (a job cancelled while it was started), each job is
confirmed alone: what runs is always recorded, so the next settle can stop it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session, lazyload, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from detente.api.jobspec import JobSpec, stored
from detente.control import auth, launch, workloads
from detente.control.jobs import event
from detente.control.settle import pods_of
from detente.control.store import cas
from detente.control.store.models import (
    FAILED,
    LAUNCHING,
    PENDING,
    RUNNING,
    STOPPING,
    Job,
    Pod,
    User,
)
from detente.executors.base import (
    EngineUnavailable,
    Executor,
    GangExecutor,
    GangLaunch,
    PodLaunch,
    RunAs,
)

log = logging.getLogger("detente")
#: Jobs started per session and commit.
BATCH = 64
#: Submissions to an engine in flight at once (each waits on the engine's answer).
SUBMITTERS = 8

Started = dict[int, dict[int, tuple[int, int]]]  # job id → pod id → (pid, start)
Gangs = list[tuple[Job, list[Pod], GangLaunch]]  # jobs for an engine, to submit
Local = list[tuple[Job, list[Pod], list[tuple[Pod, PodLaunch]]]]  # jobs to launch here
Outcome = tuple[int, int] | Exception  # a pod's (pid, start), or why it did not start


@dataclass(slots=True)
class _Batch:
    """What one batch decided, for its commit: jobs confirmed RUNNING (compare-and-sets)
    and their pods' pids, written without ORM objects (`detente.control.store.cas`);
    jobs failed, and jobs sent back to wait (the engine did not answer), with why —
    redone alone if the commit is lost."""

    running: list[cas.Change] = field(default_factory=list)
    pids: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    deferred: dict[int, str] = field(default_factory=dict)


class Starter:
    def __init__(
        self, sessions: sessionmaker[Session], executor: Executor, state_dir: Path,
        clock: Callable[[], float], spec_of: Callable[[Job], dict[str, Any]],
    ) -> None:  # fmt: skip
        self.sessions, self.executor, self.state_dir = sessions, executor, state_dir
        self.clock, self.spec_of = clock, spec_of
        #: The API's address, given to jobs for their ``scontrol`` (None: not served).
        self.api_url: str | None = None
        self._mode: str | None = None
        self._scripts: set[int] = set()
        self._specs: dict[tuple[int, int], tuple[dict[str, Any], JobSpec]] = {}
        #: The batch being worked on (two are at once: see `start`).
        self._cur = _Batch()

    def start(self, job_ids: list[int]) -> None:
        """Starts the unstarted pods of ``job_ids`` that are still ``LAUNCHING``, in
        batches of `BATCH`, pipelined: a batch is prepared while the pods of the one
        before it start (the spawners' work), then that one is confirmed."""
        self._specs.clear()
        starting: tuple[Iterator[None], list[int]] | None = None
        for k in range(0, len(job_ids), BATCH):
            ids = job_ids[k : k + BATCH]
            sent = self._batch(ids)
            if not self._advance(sent, ids):
                sent = None  # it failed, or there was nothing to start
            if starting is not None:
                self._advance(*starting)
            starting = (sent, ids) if sent is not None else None
        if starting is not None:
            self._advance(*starting)

    def _advance(self, batch: Iterator[None], ids: list[int]) -> bool:
        """Runs ``batch`` (`_batch`) to its next pause; False once it is done. Never
        raises: a batch that fails has its jobs failed one by one instead."""
        try:
            next(batch)
            return True
        except StopIteration:
            return False
        except Exception:  # never the loop
            log.exception("starting jobs %s failed", ids)
            for jid in ids:
                self._alone(jid, "could not be started", self._failed)
            return False

    def _batch(self, ids: list[int]) -> Iterator[None]:
        """One batch, in one session: its jobs prepared, its local pods sent to start
        (then it pauses: the caller prepares the next batch meanwhile), their outcomes
        read, an engine's jobs submitted, and one commit confirming them all."""
        b = self._cur = _Batch()
        started: Started = {}
        with self.sessions() as s:
            q = select(Job).where(Job.id.in_(ids)).options(lazyload(Job.spec_row))
            jobs = [j for j in s.scalars(q) if j.state == LAUNCHING]
            pods = pods_of(s, jobs)
            gangs: Gangs = []
            local: Local = []
            with s.no_autoflush:  # nothing written before the pause: no store lock held
                for job in jobs:
                    self._start_job(s, job, pods.get(job.id, []), local, gangs)
            outcomes = self._send(local)
            yield
            self._cur = b
            self._launch(s, local, outcomes(), started)
            self._submit(s, gangs, started)
            try:
                if not cas.update_jobs(s, b.running):
                    raise StaleDataError("a job of the batch changed while it was started")
                cas.update_pods(s, b.pids)
                s.commit()  # every job of the batch confirmed at once
            except StaleDataError:  # one was cancelled meanwhile: confirm each alone
                s.rollback()
                for jid, by_pod in started.items():
                    self._confirm(jid, by_pod, job_too=jid not in b.failures)
                for jid, why in b.failures.items():  # the rollback undid these too
                    self._alone(jid, why, self._failed)
                for jid, why in b.deferred.items():
                    self._alone(jid, why, self._defer)

    def _send(self, local: Local) -> Callable[[], list[Outcome]]:
        """Sends the pods of ``local`` to start, all at once where the executor can;
        returns how to read their outcomes, in order (waiting for them). An executor
        that cannot starts them here, one by one."""
        plans = [plan for _, _, pp in local for _, plan in pp]
        ex = self.executor
        begin, finish = (getattr(type(ex), a, None) for a in ("begin", "finish"))
        if not (callable(begin) and callable(finish)):
            done = [self._one(p) for p in plans]
            return lambda: done
        batch = begin(ex, plans)
        return lambda: cast(list[Outcome], finish(ex, batch, True))

    def _start_job(self, s: Session, job: Job, pods: list[Pod], local: Local, gangs: Gangs) -> None:
        """Prepares ``job``'s pods in session ``s`` (not committed): adds them to
        ``local`` to launch (`_launch`), or for an engine to ``gangs`` to submit
        (`_submit`); or fails the job with the reason."""
        spec = self.spec_of(job)
        try:
            user = self._run_as(s, job)
            if not spec.get("chdir") and user is None:  # its own folder is its cwd
                launch.job_dir(self.state_dir, job).mkdir(parents=True, exist_ok=True, mode=0o700)
            self._write_script(job)
        except (KeyError, auth.AuthError, OSError) as e:
            return self._failed(s, job, pods, str(e).strip("'\""))
        if callable(getattr(type(self.executor), "launch_job", None)):  # an engine's
            return self._gang(s, job, pods, user, spec, gangs)
        parsed = self._parsed(job, spec)
        try:
            plans = [(pod, launch.pod_launch(self.state_dir, job, pod, user, self.api_url, parsed))
                     for pod in pods if pod.pid is None and not pod.done]  # fmt: skip
        except (OSError, ValueError) as e:
            return self._failed(s, job, pods, _why(e))
        local.append((job, pods, plans))
        return None

    def _launch(self, s: Session, local: Local, outcomes: list[Outcome], started: Started) -> None:
        """Records the pods of ``local`` by their ``outcomes`` (in order): each job
        RUNNING, or failed whole with the first error (pods of it already started are
        stopped by the next settle)."""
        results = iter(outcomes)
        for job, pods, pp in local:
            bad: Exception | None = None
            for pod, _ in pp:
                out = next(results)
                if isinstance(out, Exception):
                    bad = bad or out
                    continue
                started.setdefault(job.id, {})[pod.id] = out
            if bad is not None:
                for pod, _ in pp:  # recorded, so the next settle stops what started
                    if (pid := started.get(job.id, {}).get(pod.id)) is not None:
                        pod.pid, pod.pid_start = pid
                self._failed(s, job, pods, _why(bad))
                continue
            self._confirmed(s, job, started.get(job.id, {}), f"{len(job.nodes or [])} pod(s)")

    def _confirmed(self, s: Session, job: Job, pids: dict[int, tuple[int, int]], what: str) -> None:
        """``job`` RUNNING with its pods' ``pids``, at the batch's commit."""
        self._cur.running.append((job.id, job.version, {"state": RUNNING}))
        self._cur.pids += [{"id": pod_id, "pid": pid, "pid_start": start}
                       for pod_id, (pid, start) in pids.items()]  # fmt: skip
        event(s, job.id, self.clock(), "Started", what)

    def _one(self, plan: PodLaunch) -> tuple[int, int] | Exception:
        try:
            return self.executor.launch(plan)
        except (OSError, ValueError) as e:
            return e

    def _gang(
        self, s: Session, job: Job, pods: list[Pod], user: RunAs | None, spec: dict[str, Any],
        gangs: Gangs,
    ) -> None:  # fmt: skip
        """``job`` as one engine job (`GangExecutor`), added to ``gangs``; failed if it
        cannot be described to the engine."""
        if any(p.pid is not None or p.done for p in pods):
            return self._failed(s, job, pods, "part of the job was started, part not")
        try:
            plans = [launch.pod_launch(self.state_dir, job, p, user, self.api_url, spec)
                     for p in pods]  # fmt: skip
            shares = launch.allocation(job, stored(spec))
        except (OSError, ValueError) as e:
            return self._failed(s, job, pods, str(e))
        tag = pods[0].token.rpartition("-")[0]
        gangs.append((job, pods, GangLaunch(job.id, job.name, tag, plans, shares, spec)))
        return None

    def _submit(self, s: Session, gangs: Gangs, started: Started) -> None:
        """Submits ``gangs`` to the engine, `SUBMITTERS` at a time (each submission
        waits on the engine, not on this process), then records each: RUNNING, failed
        with the engine's reason, or back to PENDING if the engine could not be asked."""
        if not gangs:
            return
        engine = cast(GangExecutor, self.executor)

        def submit(g: GangLaunch) -> list[tuple[int, int]] | Exception:
            try:
                return engine.launch_job(g)
            except Exception as e:  # recorded against its job below, never the batch's
                return e

        with ThreadPoolExecutor(min(SUBMITTERS, len(gangs))) as pool:
            outcomes = list(pool.map(submit, [g for _, _, g in gangs]))
        for (job, pods, _), out in zip(gangs, outcomes, strict=True):
            if isinstance(out, EngineUnavailable):
                self._defer(s, job, pods, str(out))
            elif isinstance(out, Exception):
                log.warning("job %s: the engine refused it: %s", job.id, out)
                self._failed(s, job, pods, str(out))
            else:
                for pod, (pid, start) in zip(pods, out, strict=True):
                    started.setdefault(job.id, {})[pod.id] = (pid, start)
                self._confirmed(s, job, started[job.id], f"engine job {out[0][0]}")

    def _defer(self, s: Session, job: Job, pods: list[Pod], why: str) -> None:
        """The engine could not be asked: ``job`` waits again, as if never admitted
        (its pods forgotten, its attempt not counted)."""
        self._cur.deferred[job.id] = why
        for p in pods:
            s.delete(p)
        job.attempt -= 1
        job.state, job.nodes, job.devices, job.start_time = PENDING, None, None, None
        job.reason = f"the engine did not answer: {why[:300]}"
        event(s, job.id, self.clock(), "LaunchDeferred", job.reason)

    def _confirm(
        self, job_id: int, by_pod: dict[int, tuple[int, int]], job_too: bool = True
    ) -> None:
        """Records what runs of one job, and (``job_too``) RUNNING if it is still
        LAUNCHING; if the job changed meanwhile (cancelled), the pids alone, so the next
        settle stops the pods."""
        with self.sessions() as s:
            for pod_id, (pid, start) in by_pod.items():
                if (pod := s.get(Pod, pod_id)) is not None:
                    pod.pid, pod.pid_start = pid, start
            job = s.get(Job, job_id) if job_too else None
            if job is not None and job.state == LAUNCHING:
                job.state = RUNNING
                event(s, job.id, self.clock(), "Started", f"{len(job.nodes or [])} pod(s)")
            try:
                s.commit()
            except StaleDataError:
                s.rollback()
                self._confirm(job_id, by_pod, job_too=False)

    def _alone(
        self, job_id: int, why: str, act: Callable[[Session, Job, list[Pod], str], None]
    ) -> None:
        """``act`` (`_failed` or `_defer`) on one job, in its own session, if it is
        still LAUNCHING."""
        with self.sessions() as s:
            job = s.get(Job, job_id)
            if job is not None and job.state == LAUNCHING:
                act(s, job, pods_of(s, [job]).get(job.id, []), why)
                try:
                    s.commit()
                except StaleDataError:
                    s.rollback()

    def _failed(self, s: Session, job: Job, pods: list[Pod], why: str) -> None:
        """Fails ``job`` in ``s`` (the caller commits); pods already started are
        stopped by the next settle."""
        self._cur.failures[job.id] = why
        for p in pods:
            if p.pid is None:
                p.done = True
        job.state, job.stop_reason, job.reason = STOPPING, FAILED, f"launch failed: {why}"
        event(s, job.id, self.clock(), "LaunchFailed", why)

    def _parsed(self, job: Job, spec: dict[str, Any]) -> JobSpec:
        """``spec`` read back, once per stored spec and batch (an array's tasks share it)."""
        key = (job.spec_id, id(spec))
        if key not in self._specs:
            self._specs[key] = (spec, stored(spec))  # the dict kept: its id stays its own
        return self._specs[key][1]

    def _write_script(self, job: Job) -> None:
        """The stored script on disk, whole: written (atomically) unless the file of its
        spec already holds exactly it — a file a crash left truncated is rewritten.
        Checked once per spec by this process (an array's tasks share it)."""
        if job.spec_id in self._scripts:
            return
        path, script = launch.script_path(self.state_dir, job), self.spec_of(job)["script"]
        try:
            current = path.read_text()
        except (OSError, UnicodeDecodeError):
            current = None
        if current != script:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            launch.write_atomically(path, script)
        self._scripts.add(job.spec_id)

    def _run_as(self, s: Session, job: Job) -> RunAs | None:
        """The Unix identity the job runs as: its user's account in multi-user mode
        (KeyError / AuthError if it has none, or may not be used), else the daemon's."""
        if self._mode is None:  # set by `up` before this process starts: read it once
            self._mode = str(workloads.setting(s, "mode", auth.SINGLE))
        if self._mode != auth.MULTI:
            return None
        user = s.get(User, job.user)
        if user is None or user.unix_user is None:
            raise KeyError(f"user {job.user} has no Unix account to run as")
        auth.check_unix_user(self._mode, user.unix_user)
        return launch.run_as(user.unix_user)


def _why(e: Exception) -> str:
    """A launch error as a job's reason: the OS's words and the file, or the error."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return f"{type(e).__name__}: {e}"
