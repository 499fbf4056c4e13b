"""Job files removed after their retention (`detente.control.retention`): named cases
on a real SQLite store and real files."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy.orm import Session

from detente.control import retention, workloads
from detente.control.store.db import open_store
from detente.control.store.models import COMPLETED, FAILED, RUNNING, Job, JobSpecRow, Pod
from detente.testing.api import Api
from detente.testing.live import Live

DAY = 86400.0
NOW = 1_800_000_000.0


def _job(s: Session, spec: JobSpecRow, state: str, ended_days_ago: float | None) -> Job:
    end = None if ended_days_ago is None else NOW - ended_days_ago * DAY
    job = Job(name="j", user="ana", team="vision", queue="vision", spec_row=spec,
              submit_time=NOW - 30 * DAY, state=state, end_time=end, attempt=1)  # fmt: skip
    s.add(job)
    s.flush()
    return job


def _files(state_dir: Path, job: Job, attempt: int, rank: int, *suffixes: str) -> list[Path]:
    s = Session.object_session(job)
    assert s is not None
    s.add(Pod(job_id=job.id, attempt=attempt, rank=rank, node="node0", token=f"t{job.id}-"
              f"{attempt}-{rank}", done=True))  # fmt: skip
    out = [state_dir / "pods" / f"{job.id}-{attempt}-{rank}{x}" for x in suffixes]
    for p in out:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x\n")
    return out


def _script(state_dir: Path, spec: JobSpecRow) -> Path:
    p = state_dir / "specs" / f"{spec.id}.sh"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text("#!/bin/bash\ntrue\n")
    return p


def test_a_sweep_removes_what_ended_past_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        shared, alone, recent = (JobSpecRow(data={"script": "true"}) for _ in range(3))
        old = _job(s, shared, COMPLETED, 8)  # its spec is also a running job's
        running = _job(s, shared, RUNNING, None)
        failed = _job(s, alone, FAILED, 9)
        young = _job(s, recent, COMPLETED, 1)
        gone = _files(tmp_path, old, 1, 0, ".log") + _files(tmp_path, old, 2, 1, ".log", ".exit")
        gone += _files(tmp_path, failed, 1, 0, ".log", ".reason", ".steps")
        kept = _files(tmp_path, running, 1, 0, ".log") + _files(tmp_path, young, 1, 0, ".log")
        s.commit()
        scripts = {spec.id: _script(tmp_path, spec) for spec in (shared, alone, recent)}
        stray = tmp_path / "pods" / "999-1-0.log"  # no job of this store
        stray.write_text("x\n")

        assert retention.sweep(s, tmp_path, NOW) == len(gone) + 1  # and the failed one's script
        assert [p for p in gone if p.exists()] == []
        assert all(p.exists() for p in [*kept, stray, scripts[shared.id], scripts[recent.id]])
        assert not scripts[alone.id].exists()
        assert retention.swept(s, old) and retention.swept(s, failed)
        assert not retention.swept(s, young) and not retention.swept(s, running)
        gone[0].write_text("x\n")  # each job is looked at once: by the sweep after it ended
        assert retention.sweep(s, tmp_path, NOW) == 0 and gone[0].exists()

        running.state, running.end_time = COMPLETED, NOW - 0.5 * DAY
        s.commit()
        assert retention.sweep(s, tmp_path, NOW + 7 * DAY) == 4  # two logs, two scripts
        assert not any(p.exists() for p in [*kept, scripts[shared.id], scripts[recent.id]])
        assert stray.exists() and gone[0].exists()


def test_zero_days_keeps_job_files_for_ever(tmp_path: Path) -> None:
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "job_files_keep_days", 0)
        job = _job(s, JobSpecRow(data={"script": "true"}), COMPLETED, 400)
        files = _files(tmp_path, job, 1, 0, ".log")
        s.commit()
        assert retention.sweep(s, tmp_path, NOW) == 0
        assert files[0].exists() and not retention.swept(s, job)


def test_logs_of_a_swept_job_say_why_they_are_empty(tmp_path: Path) -> None:
    api = Api(tmp_path)
    ids = api.call("ana", "POST", "/v1/jobs", json={"script": "true", "queue": "vision"})
    jid = ids.json()["ids"][0]
    with api.sessions() as s:
        job = s.get(Job, jid)
        assert job is not None
        job.state, job.end_time, job.attempt, job.nodes = COMPLETED, NOW - 8 * DAY, 1, ["node0"]
        (log,) = _files(tmp_path, job, 1, 0, ".log")
        s.commit()
        before = api.call("ana", "GET", f"/v1/jobs/{jid}/logs").json()
        assert before["data"] == "x\n" and "removed" not in before
        assert retention.sweep(s, tmp_path, NOW) == 1 and not log.exists()
    after = api.call("ana", "GET", f"/v1/jobs/{jid}/logs").json()
    assert after["data"] == "" and after["done"]
    assert "removed after its retention" in after["removed"]


def test_up_records_the_retention_it_is_given(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "1x8", "--keep-job-files", "2.5")
    try:
        with open_store(f"sqlite:///{live.home / 'detente.db'}")() as s:
            assert workloads.setting(s, "job_files_keep_days") == 2.5
    finally:
        live.down()
    bad = live.cli("up", "--keep-job-files", "-1", check=False)
    assert bad.returncode != 0 and "--keep-job-files" in bad.stderr + bad.stdout


def test_the_janitor_sweeps_only_while_it_leads(tmp_path: Path) -> None:
    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        job = _job(s, JobSpecRow(data={"script": "true"}), COMPLETED, 8)
        (log,) = _files(tmp_path, job, 1, 0, ".log")
        s.commit()
    leading = threading.Event()
    janitor = retention.Janitor(sessions, tmp_path, leading.is_set, period=0.6, clock=lambda: NOW)
    janitor.thread.start()
    try:
        time.sleep(0.5)  # its first turn (after 0.01 s) and none other: a standby's
        assert log.exists()
        leading.set()
        deadline = time.monotonic() + 5
        while log.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not log.exists()
    finally:
        janitor.stop.set()
        janitor.thread.join(5)
    assert not janitor.thread.is_alive()
