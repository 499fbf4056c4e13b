"""Where a store keeps its job files (`daemon.record_job_root`): a new store in a
folder of its own, so that another store's files under the same job ids (ids start
again at 1) are never taken for its jobs'."""

from __future__ import annotations

import time
from pathlib import Path

from detente.control import daemon, workloads
from detente.control.store.db import open_store
from detente.control.store.models import Job, JobSpecRow
from detente.testing.live import Live


def _root(db: str, home: Path) -> str:
    sessions = open_store(db)
    with sessions() as s:
        daemon.record_job_root(s, home)
        return str(workloads.setting(s, "job_root"))


def test_each_new_store_in_one_home_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    first = _root(f"sqlite:///{tmp_path}/a.db", tmp_path)
    second = _root(f"sqlite:///{tmp_path}/b.db", tmp_path)
    assert first != second
    assert all(Path(r).parent == tmp_path.resolve() for r in (first, second))
    assert _root(f"sqlite:///{tmp_path}/a.db", tmp_path) == first  # recorded once


def test_a_store_with_jobs_and_no_recorded_root_keeps_the_home(tmp_path: Path) -> None:
    """Made before the root was recorded: its running jobs' files are in the home."""
    sessions = open_store(f"sqlite:///{tmp_path}/old.db")
    with sessions() as s:
        spec = JobSpecRow(data={"script": "true"})
        s.add(Job(name="old", user="u", team="t", queue="default", spec_row=spec, submit_time=0.0))
        s.commit()
    assert _root(f"sqlite:///{tmp_path}/old.db", tmp_path) == str(tmp_path.resolve())


SLOW = "#!/bin/bash\nsleep 30\n"


def test_a_job_of_a_new_store_is_not_ended_by_an_old_stores_record(tmp_path: Path) -> None:
    """Job 1 of a store made over another's home ran while it was recorded COMPLETED,
    from the old job 1's end record, at the first full settle (every 5 s)."""
    live = Live(tmp_path / "home")
    live.home.mkdir()
    (tmp_path / "t.sh").write_text("#!/bin/bash\ntrue\n")
    (tmp_path / "slow.sh").write_text(SLOW)
    live.up("--nodes", "1x8")
    try:
        live.cli("submit", "-o", "/dev/null", str(tmp_path / "t.sh"))
        live.wait(lambda js: js.get(1, {}).get("state") == "COMPLETED")
    finally:
        live.down()
    for name in ("detente.db", "detente.db-wal", "detente.db-shm", "admin.token"):
        (live.home / name).unlink(missing_ok=True)
    live.up("--nodes", "1x8")
    try:
        live.cli("submit", "-o", "/dev/null", str(tmp_path / "slow.sh"))
        live.wait(lambda js: js.get(1, {}).get("state") == "RUNNING")
        time.sleep(6.5)  # past a full settle (`due.SWEEP`)
        assert live.jobs()[1]["state"] == "RUNNING"
        live.cli("cancel", "1")
    finally:
        live.down()
