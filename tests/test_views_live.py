"""What Slurm users read, on the live system: queue --start and --format (squeue),
history's filters and step rows (sacct), priority (sprio) and share (sshare)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from detente.testing.live import Live

ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up("--nodes", "2x8")
    yield lv
    lv.down()


def _sbatch(live: Live, tmp_path: Path, *args: str) -> int:
    return int(live.cli("sbatch", "--parsable", "-o", "/dev/null", *args, cwd=tmp_path).stdout)


def test_queue_start_format_priority_and_share(live: Live, tmp_path: Path) -> None:
    big = _sbatch(live, tmp_path, "-N", "2", "--gres=gpu:8", "-t", "10", "--wrap", "sleep 60")
    live.wait(lambda js: js[big]["state"] == "RUNNING", 30)
    wait = _sbatch(live, tmp_path, "-N", "2", "--gres=gpu:8", "-t", "5", "--wrap", "true")
    small = _sbatch(live, tmp_path, "-J", "small", "--gres=gpu:8", "-t", "5", "--wrap", "true")
    live.wait(lambda js: "reserved from" in (js[small]["reason"] or ""), 30)
    start = live.cli("queue", "--start").stdout.splitlines()
    assert start[0].split()[:6] == ["JOBID", "QUEUE", "NAME", "USER", "ST", "START_TIME"]
    rows = {ln.split()[0]: ln.split() for ln in start[1:]}
    assert set(rows) == {str(wait), str(small)}  # pending ones only
    assert all(re.fullmatch(ISO, r[5]) for r in rows.values()), start
    picked = live.cli("queue", "-j", str(small), "--format=JobID,ST,TimeLimit").stdout.split()
    assert picked == ["JOBID", "ST", "TIMELIMIT", str(small), "PD", "5:00"]
    bad = live.cli("queue", "--format=JOBID,BOGUS", check=False)
    assert bad.returncode != 0 and "unknown column 'BOGUS'" in bad.stderr
    prio = json.loads(live.cli("priority", "-o", "json").stdout)
    assert [p["id"] for p in prio] in ([wait, small], [small, wait])  # the queue's order
    for p in prio:
        assert abs(p["priority"] - sum(p["terms"].values())) < 1e-3 and "fairshare" in p["terms"]
    share = json.loads(live.cli("share", "-o", "json").stdout)
    assert [s["queue"] for s in share] == ["default/default"]
    assert share[0]["norm_shares"] == 1.0 and 0 < share[0]["fairshare"] <= 1.0


def test_history_filters_and_step_rows(live: Live, tmp_path: Path) -> None:
    ok = _sbatch(live, tmp_path, "-N", "2", "--wrap", "srun -N2 true; srun -n1 false; true")
    bad = _sbatch(live, tmp_path, "--wrap", "exit 4")
    live.wait(lambda js: all(js[j]["state"] in ("COMPLETED", "FAILED") for j in (ok, bad)), 30)
    table = live.cli("history", "--format=JobID,State,ExitCode").stdout.split("\n")
    rows = [ln.split() for ln in table[1:] if ln.strip()]
    assert rows == [[str(ok), "COMPLETED", "0:0"], [f"{ok}.0", "COMPLETED", "0:0"],
                    [f"{ok}.1", "FAILED", "1:0"], [str(bad), "FAILED", "4:0"]]  # fmt: skip
    failed = live.cli("history", "-s", "FAILED", "--format=JobID").stdout.split()
    assert failed == ["JOBID", str(bad)]
    assert live.cli("history", "-j", str(ok), "--format=JobID").stdout.split() == [
        "JOBID", str(ok), f"{ok}.0", f"{ok}.1"]  # fmt: skip
    later = live.cli("history", "-S", "2999-01-01", "--format=JobID").stdout.split()
    assert later == ["JOBID"]
    early = live.cli("history", "-E", "2000-01-01T00:00:00", "--format=JobID").stdout.split()
    assert early == ["JOBID"]
