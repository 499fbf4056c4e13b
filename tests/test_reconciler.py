"""The reconciler in-process, with real processes, on SQLite and PostgreSQL: a crash
inside the launch window, and pods that end while the control plane is down."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from detente.api.jobspec import JobSpec
from detente.control import auth, jobs, layout, workloads
from detente.control.reconciler import Reconciler
from detente.control.starting import BATCH
from detente.control.store.db import open_store
from detente.control.store.models import COMPLETED, LAUNCHING, Job, Pod, User
from detente.core.profiles import build
from detente.executors.base import EngineUnavailable, GangLaunch, PodLaunch
from detente.executors.local import Launching, LocalExecutor


class Crash(BaseException):
    """Stands for the process dying: not an Exception, which the loop would survive."""


class CrashAfterFirstLaunch(LocalExecutor):
    """A real executor that "dies" after starting the first pod of a gang."""

    def begin(self, pods: list[PodLaunch]) -> Launching:
        raise Crash(self.finish(super().begin(pods[:1]), wait=True))


class CrashBeforeLaunch(LocalExecutor):
    """ "Dies" once the decision is recorded, before any pod starts."""

    def begin(self, pods: list[PodLaunch]) -> Launching:
        raise Crash()


def _setup(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    sessions = open_store(db_url)
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        token = auth.create_user(s, "ana", "default")
        user = auth.authenticate(s, token)
        out = tmp_path / "ranks.txt"
        spec = JobSpec(script=f'#!/bin/bash\necho "$NODE_RANK" >> {out}\nsleep 1\n',
                       nodes=2, gpus_per_node=8, chdir=str(tmp_path))  # fmt: skip
        (job_id,) = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    return sessions, job_id, out


def test_crash_inside_the_launch_window_starts_only_the_missing_pod(
    tmp_path: Path, db_url: str
) -> None:
    sessions, job_id, out = _setup(tmp_path, db_url)
    crashing = Reconciler(sessions, build("detente"), tmp_path, CrashAfterFirstLaunch())
    with pytest.raises(Crash):
        crashing.step()
    with sessions() as s:  # the decision was recorded; no pid was confirmed
        assert s.get(Job, job_id).state == LAUNCHING
        assert [p.pid for p in s.scalars(select(Pod))] == [None, None]
    rec = Reconciler(sessions, build("detente"), tmp_path)
    assert rec.recover() == {"adopted": 1, "ended": 0, "started": 1, "lost": 0, "dropped": 0}
    deadline = time.time() + 20
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            if s.get(Job, job_id).state == COMPLETED:
                break
        time.sleep(0.1)
    with sessions() as s:
        assert s.get(Job, job_id).state == COMPLETED
    assert sorted(out.read_text().split()) == ["0", "1"]  # each rank ran once


def test_recover_settles_a_pod_that_ended_while_down(tmp_path: Path, db_url: str) -> None:
    sessions, job_id, _ = _setup(tmp_path, db_url)
    rec = Reconciler(sessions, build("detente"), tmp_path)
    rec.step()
    time.sleep(2.5)  # both pods end while "nobody" watches
    fresh = Reconciler(sessions, build("detente"), tmp_path)
    assert fresh.recover() == {"adopted": 0, "ended": 2, "started": 0, "lost": 0, "dropped": 0}
    fresh.step()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert (job.state, job.exit_code, job.attempt) == (COMPLETED, 0, 1)


def test_fair_share_usage_survives_restarts_and_orders_the_queue(tmp_path: Path) -> None:
    """Team a used the cluster for hours (saved usage); its job was submitted first, but
    team b's starts first. The usage is read back from the store by a new reconciler."""
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    now = time.time()
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        heavy = {"default/a": {"nvidia.com/gpu": 8 * 36000.0}}
        workloads.put_setting(s, "usage", {"time": now - 60, "by_queue": heavy})
        users = {}
        for team in ("a", "b"):
            users[team] = auth.authenticate(s, auth.create_user(s, f"u{team}", team))
        spec = JobSpec(script="#!/bin/bash\nsleep 1\n", gpus_per_node=8, chdir=str(tmp_path))
        (ja,) = jobs.submit(s, users["a"], spec, workloads.cluster_and_config(s)[1], now - 30)
        (jb,) = jobs.submit(s, users["b"], spec, workloads.cluster_and_config(s)[1], now - 10)
    rec = Reconciler(sessions, build("detente"), tmp_path)
    assert rec.step().admitted == 1
    with sessions() as s:
        assert s.get(Job, jb).state != "PENDING" and s.get(Job, ja).state == "PENDING"
        saved = workloads.setting(s, "usage")
    assert saved["by_queue"]["default/a"]["nvidia.com/gpu"] > 0


def test_jobs_started_in_pipelined_batches_are_each_confirmed_with_their_pods(
    tmp_path: Path,
) -> None:
    """More jobs than a batch: each batch is prepared while the one before it starts,
    then confirmed; every job ends RUNNING in one step with its own pod's pid, and each
    task ran once."""
    count = 2 * BATCH + 7
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        spec = JobSpec(script='#!/bin/bash\necho "$SLURM_ARRAY_TASK_ID" >> ran.txt\nsleep 2\n',
                       array=list(range(count)), chdir=str(tmp_path))  # fmt: skip
        ids = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    rec = Reconciler(sessions, build("detente"), tmp_path)
    assert rec.step().admitted == count
    with sessions() as s:
        rows = list(s.scalars(select(Job).where(Job.id.in_(ids))))
        assert {j.state for j in rows} == {"RUNNING"}
        pids = [p.pid for p in s.scalars(select(Pod).where(Pod.job_id.in_(ids)))]
    assert len(pids) == count and None not in pids and len(set(pids)) == count
    deadline = time.time() + 30
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            if {j.state for j in s.scalars(select(Job))} == {COMPLETED}:
                break
        time.sleep(0.2)
    assert sorted(map(int, (tmp_path / "ran.txt").read_text().split())) == list(range(count))


class CancelsWhileTheNextBatchIsSent(LocalExecutor):
    """A real executor; when the second batch is sent, the first batch's pods are
    starting and not yet confirmed: the user cancels ``victim``, one of them."""

    def __init__(self, sessions, victim: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.sessions, self.victim, self.batches = sessions, victim, 0

    def begin(self, pods: list[PodLaunch]) -> Launching:
        self.batches += 1
        if self.batches == 2:
            with self.sessions() as s:
                jobs.cancel(s, s.get(User, "ana"), [self.victim], time.time())
                s.commit()
        return super().begin(pods)


def test_a_cancel_between_a_batchs_start_and_its_confirmation_is_kept(tmp_path: Path) -> None:
    """The cancel lands while the next batch is prepared: the first batch's commit loses
    its compare-and-set, every other job of it is confirmed alone, the cancelled job's
    pod (it did start) is recorded and stopped, and the second batch is unaffected."""
    count = BATCH + 5
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        spec = JobSpec(script="sleep 30", array=list(range(count)), chdir=str(tmp_path))
        ids = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    victim = ids[3]
    ex = CancelsWhileTheNextBatchIsSent(sessions, victim)
    rec = Reconciler(sessions, build("detente"), tmp_path, ex)
    assert rec.step().admitted == count and ex.batches == 2
    with sessions() as s:
        states = {j.id: j.state for j in s.scalars(select(Job))}
    assert states.pop(victim) == "STOPPING" and set(states.values()) == {"RUNNING"}
    pid, start = _pid_of(sessions, victim)
    assert pid is not None and ex.alive(pid, start)  # started, and recorded
    deadline = time.time() + 20
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            if s.get(Job, victim).state == "CANCELLED":  # type: ignore[union-attr]
                break
        time.sleep(0.1)
    assert not ex.alive(pid, start)
    with sessions() as s:
        active = [j.id for j in s.scalars(select(Job)) if j.state != "CANCELLED"]
        jobs.cancel(s, s.get(User, "ana"), active, time.time())
        s.commit()
    for _ in range(60):  # leave no process behind
        rec.step()
        with sessions() as s:
            if {j.state for j in s.scalars(select(Job))} == {"CANCELLED"}:
                break
        time.sleep(0.1)


def test_a_job_that_cannot_start_fails_with_the_reason(tmp_path: Path) -> None:
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        spec = JobSpec(script="true", chdir=str(tmp_path / "missing"))
        (job_id,) = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    rec = Reconciler(sessions, build("detente"), tmp_path)
    deadline = time.time() + 20
    while time.time() < deadline:  # the pod finds out, as its user, and records why
        rec.step()
        with sessions() as s:
            if s.get(Job, job_id).state == "FAILED":
                break
        time.sleep(0.1)
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job.state == "FAILED" and "launch failed" in (job.reason or "")
        assert "missing" in (job.reason or "")


def test_a_truncated_script_left_by_a_crash_is_never_run(tmp_path: Path) -> None:
    """A crash mid-write left half a script (and a temp file) in the job's folder: the
    launch writes the stored script out again, atomically, and runs all of it."""
    sessions, job_id, out = _setup(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    crashing = Reconciler(sessions, build("detente"), tmp_path, CrashBeforeLaunch())
    with pytest.raises(Crash):
        crashing.step()
    with sessions() as s:
        job = s.get(Job, job_id)
        assert job is not None
        script, full = tmp_path / "specs" / f"{job.spec_id}.sh", job.spec["script"]
    script.write_text(full[: len(full) // 3])  # cut inside the first line
    script.with_name(script.name + ".tmp").write_text(full[:5])
    rec = Reconciler(sessions, build("detente"), tmp_path)
    rec.recover()
    deadline = time.time() + 20
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            if s.get(Job, job_id).state == COMPLETED:  # type: ignore[union-attr]
                break
        time.sleep(0.1)
    assert script.read_text() == full
    assert sorted(out.read_text().split()) == ["0", "1"]  # both ranks ran the whole script


def _lax_job(s, name: str, cwd: Path) -> int:  # type: ignore[no-untyped-def]
    """A pending job of ana's as a laxer version stored it: an environment name with '='
    (today's validation refuses it at submission; its launch fails). Its id."""
    from detente.control.store.models import JobSpecRow

    spec = JobSpecRow(data={"script": "true", "name": name, "env": {"A=B": "x"},
                            "chdir": str(cwd)})  # fmt: skip
    row = Job(name=name, user="ana", team="default", queue="default", state="PENDING",
              spec_row=spec, submit_time=0.0, attempt=0)  # fmt: skip
    s.add(row)
    s.commit()
    return row.id


def test_a_spec_stored_by_a_laxer_version_does_not_stop_scheduling(tmp_path: Path) -> None:
    """Rows written before today's validation (a tab in the name, an environment name
    with '=') fail alone, with a reason; the job behind them still runs."""
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        _lax_job(s, "a\tb", tmp_path)
        spec = JobSpec(script="true", chdir=str(tmp_path))
        (good,) = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    rec = Reconciler(sessions, build("detente"), tmp_path)
    deadline = time.time() + 30
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            states = [j.state for j in s.scalars(select(Job).order_by(Job.id))]
        if states[1] == COMPLETED and states[0] in ("FAILED", "NODE_FAIL"):
            break
        time.sleep(0.1)
    with sessions() as s:
        first = s.scalars(select(Job).order_by(Job.id)).first()
        assert first is not None and first.state == "FAILED", first.state if first else None
        assert "environment" in (first.reason or "") or "launch failed" in (first.reason or "")
        assert s.get(Job, good).state == COMPLETED  # type: ignore[union-attr]


def test_gpus_allocated_counts_up_nodes_and_idle_steps_record_no_latency(tmp_path: Path) -> None:
    from detente.control.metrics import Metrics

    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("3x8"))
        workloads.put_setting(s, "node_states", {"node2": {"state": "down", "reason": "psu"}})
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        spec = JobSpec(script="sleep 2", gpus_per_node=8, chdir=str(tmp_path))
        (jid,) = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    rec, metrics = Reconciler(sessions, build("detente"), tmp_path), Metrics()
    first = rec.step()
    metrics.observe(first)
    assert first.decided and first.admitted == 1
    assert first.gpus_allocated == 8  # not 16: node2's GPUs are down, not allocated
    idle = rec.step()  # the launch's own "Started" event is no reason to decide again
    metrics.observe(idle)
    assert not idle.decided
    count = metrics.registry.get_sample_value("detente_cycle_seconds_count")
    assert count == 1  # the idle step recorded no (zero) latency
    assert metrics.registry.get_sample_value("detente_steps_total", {"kind": "settled"}) == 1
    rec.executor.signal(*_pid_of(sessions, jid), signal.SIGKILL)


def _pid_of(sessions, jid):  # type: ignore[no-untyped-def]
    with sessions() as s:
        pod = s.scalars(select(Pod).where(Pod.job_id == jid)).one()
        return pod.pid, pod.pid_start


def test_a_cancel_recorded_during_launch_is_not_undone_by_a_restart(tmp_path: Path) -> None:
    """The control plane died after the decision was recorded; the job was cancelled
    before it came back: recovery must not start it (it ends CANCELLED, no pod ran)."""
    sessions, job_id, out = _setup(tmp_path, f"sqlite:///{tmp_path / 'd.db'}")
    crashing = Reconciler(sessions, build("detente"), tmp_path, CrashBeforeLaunch())
    with pytest.raises(Crash):
        crashing.step()
    with sessions() as s:
        user = s.get(User, "ana")
        assert jobs.cancel(s, user, [job_id], time.time()) == {job_id: "STOPPING"}
    rec = Reconciler(sessions, build("detente"), tmp_path)
    assert rec.recover() == {"adopted": 0, "ended": 0, "started": 0, "lost": 0, "dropped": 2}
    for _ in range(20):
        rec.step()
    with sessions() as s:
        assert s.get(Job, job_id).state == "CANCELLED"  # type: ignore[union-attr]
    assert not out.exists()


class CancelsDuringLaunch(LocalExecutor):
    """A real executor; while the batch's pods start, the user cancels ``victim`` (as the
    API would, in its own session), so the batch's commit loses a compare-and-set."""

    def __init__(self, sessions, victim: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.sessions, self.victim = sessions, victim

    def begin(self, pods: list[PodLaunch]) -> Launching:
        with self.sessions() as s:
            jobs.cancel(s, s.get(User, "ana"), [self.victim], time.time())
            s.commit()
        return super().begin(pods)


def test_a_launch_failure_is_kept_when_its_batch_loses_a_cancel_race(tmp_path: Path) -> None:
    """The batch's commit is lost to a cancel: the job whose launch failed in that batch
    still fails, with its reason (it stayed LAUNCHING until a restart before), and the
    cancelled job's pod, which did start, is recorded and stopped."""
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        failing = _lax_job(s, "bad", tmp_path)
        spec = JobSpec(script="sleep 30", chdir=str(tmp_path))
        (victim,) = jobs.submit(s, user, spec, workloads.cluster_and_config(s)[1], time.time())
    rec = Reconciler(sessions, build("detente"), tmp_path, CancelsDuringLaunch(sessions, victim))
    assert rec.step().admitted == 2
    with sessions() as s:
        failed = s.get(Job, failing)
        assert failed is not None and failed.state == "STOPPING"
        assert "illegal environment variable name" in (failed.reason or "")
        assert s.get(Job, victim).state == "STOPPING"  # type: ignore[union-attr]
    pid, start = _pid_of(sessions, victim)
    assert pid is not None and rec.executor.alive(pid, start)  # started, and recorded
    deadline = time.time() + 20
    while time.time() < deadline:
        rec.step()
        with sessions() as s:
            states = {s.get(Job, j).state for j in (failing, victim)}  # type: ignore[union-attr]
        if states <= {"FAILED", "CANCELLED"}:
            break
        time.sleep(0.1)
    assert states == {"FAILED", "CANCELLED"}
    assert not rec.executor.alive(pid, start)


class FakeEngine(LocalExecutor):
    """A fake engine (a gang executor, as the Slurm one is, whose jobs are local
    processes): it cannot be asked about ``deferred`` (as when slurmctld does not
    answer), and while it starts ``victim`` the user cancels that job."""

    def __init__(self, sessions, deferred: int, victim: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.sessions, self.deferred, self.victim = sessions, deferred, victim

    def launch_job(self, job: GangLaunch) -> list[tuple[int, int]]:
        if job.job_id == self.deferred:
            raise EngineUnavailable("the engine did not answer (fake)")
        if job.job_id == self.victim:
            with self.sessions() as s:
                jobs.cancel(s, s.get(User, "ana"), [self.victim], time.time())
                s.commit()
        out = self.launch_many(job.pods)
        assert all(not isinstance(o, Exception) for o in out), out
        return out  # type: ignore[return-value]


def test_a_deferred_launch_is_kept_when_its_batch_loses_a_cancel_race(tmp_path: Path) -> None:
    """The engine could not be asked about one job (it waits again, PENDING) and the
    batch's commit is lost to a cancel of another: the deferred job still goes back to
    PENDING (it stayed LAUNCHING until a restart before) and the cancelled job's pod,
    which did start, is recorded."""
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        config = workloads.cluster_and_config(s)[1]
        spec = JobSpec(script="sleep 30", chdir=str(tmp_path))
        waits, victim = (jobs.submit(s, user, spec, config, time.time())[0] for _ in range(2))
    rec = Reconciler(sessions, build("detente"), tmp_path, FakeEngine(sessions, waits, victim))
    assert rec.step().admitted == 2
    with sessions() as s:
        deferred = s.get(Job, waits)
        assert deferred is not None and deferred.state == "PENDING"
        assert deferred.attempt == 0 and "did not answer" in (deferred.reason or "")
        assert s.scalars(select(Pod).where(Pod.job_id == waits)).first() is None
        assert s.get(Job, victim).state == "STOPPING"  # type: ignore[union-attr]
    pid, start = _pid_of(sessions, victim)
    assert pid is not None and rec.executor.alive(pid, start)  # started, and recorded
    rec.executor.signal(pid, start, signal.SIGKILL)


def _one_node_two_whole_node_jobs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A store with one 8-GPU node and two 8-GPU `sleep 30` jobs: (sessions, the one
    that will run, the one that will wait)."""
    sessions = open_store(f"sqlite:///{tmp_path / 'r.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("1x8"))
        user = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        config = workloads.cluster_and_config(s)[1]
        spec = JobSpec(script="sleep 30", gpus_per_node=8, chdir=str(tmp_path))
        runs, waits = (jobs.submit(s, user, spec, config, time.time())[0] for _ in range(2))
    return sessions, runs, waits


class ReasonsAtLaunch(LocalExecutor):
    """A real executor that notes, as it starts a batch, the reason stored for a job
    the same decision left pending."""

    def __init__(self, sessions, waiting: int) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.sessions, self.waiting, self.seen = sessions, waiting, ["unread"]

    def begin(self, pods: list[PodLaunch]) -> Launching:
        with self.sessions() as s:
            self.seen.append(s.get(Job, self.waiting).reason)
        return super().begin(pods)


def test_pending_reasons_are_written_after_the_decisions_launches_start(tmp_path: Path) -> None:
    """Reasons only inform: the decision's launches do not wait for them (900 new
    reasons held the first pods of an array back ≈ 90 ms) — and they are written."""
    sessions, runs, waits = _one_node_two_whole_node_jobs(tmp_path)
    ex = ReasonsAtLaunch(sessions, waits)
    rec = Reconciler(sessions, build("detente"), tmp_path, ex)
    assert rec.step().admitted == 1
    assert ex.seen == ["unread", None]  # nothing written yet when the pod started
    with sessions() as s:
        assert "GPU" in (s.get(Job, waits).reason or "")  # type: ignore[union-attr]
        pid, start = _pid_of(sessions, runs)
    rec.executor.signal(pid, start, signal.SIGKILL)


def test_a_failed_reasons_write_does_not_fail_the_step_that_launched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The step's launches are made and counted (the loop's metrics see them) even if
    the advisory reasons written after them cannot be."""
    sessions, runs, _ = _one_node_two_whole_node_jobs(tmp_path)
    rec = Reconciler(sessions, build("detente"), tmp_path)

    def broken() -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(rec, "_write_reasons", broken)
    assert rec.step().admitted == 1
    assert "writing the pending reasons failed" in caplog.text
    pid, start = _pid_of(sessions, runs)
    assert pid is not None and rec.executor.alive(pid, start)
    rec.executor.signal(pid, start, signal.SIGKILL)
