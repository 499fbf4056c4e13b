"""sbatch's options on the live system, through the CLI as a user types them:
--test-only, --wrap, --begin, and afterok on an array whose later task fails."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from detente.testing.live import Live


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up("--nodes", "2x8")
    yield lv
    lv.down()


def _ids(live: Live) -> set[int]:
    return set(live.jobs())


def test_test_only_says_when_and_where_and_submits_nothing(live: Live, tmp_path: Path) -> None:
    job = tmp_path / "big.sh"
    job.write_text("#!/bin/bash\n#SBATCH -N 2 --gres=gpu:8 --time=10\nsleep 1\n")
    out = live.cli("sbatch", "--test-only", str(job), cwd=tmp_path)
    assert re.search(r"sbatch: Job \d+ to start at \S+ using 2 processors on nodes "
                     r"node\[0-1\] in partition default", out.stderr), out.stderr  # fmt: skip
    assert _ids(live) == set()  # nothing submitted
    live.cli("sbatch", "-N", "2", "--gres=gpu:8", "--time=10", "--wrap", "sleep 60", cwd=tmp_path)
    live.wait(lambda js: any(j["state"] == "RUNNING" for j in js.values()), 30)
    later = live.cli("sbatch", "--test-only", str(job), cwd=tmp_path).stderr
    start = re.search(r"to start at (\S+)", later)
    assert start is not None, later  # behind the running job: its reservation, 10 min on
    now = live.cli("sbatch", "--test-only", "--wrap", "true", "-N", "1", cwd=tmp_path).stderr
    assert "would not start" in now or "to start at" in now
    assert len(_ids(live)) == 1
    # Submitted for real, it waits with its expected start as squeue shows one: a time.
    jid = int(live.cli("sbatch", "--parsable", str(job), cwd=tmp_path).stdout.strip())
    jobs = live.wait(lambda js: "reserved from" in (js[jid]["reason"] or ""), 30)
    assert re.search(r"reserved from \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d on 2 node", jobs[jid]["reason"])


def test_wrap_and_begin(live: Live, tmp_path: Path) -> None:
    out = live.cli("sbatch", "--parsable", "--begin=now+2", "-o", str(tmp_path / "w.out"),
                   "--wrap", "echo wrapped $SLURM_JOB_ID", cwd=tmp_path).stdout  # fmt: skip
    jid = int(out.strip())
    first = live.jobs()[jid]
    assert first["state"] == "PENDING" and first["reason"] == "BeginTime", first
    jobs = live.wait(lambda js: js[jid]["state"] == "COMPLETED", 30)
    assert jobs[jid]["name"] == "wrap"
    assert (tmp_path / "w.out").read_text().strip() == f"wrapped {jid}"


def test_afterok_on_an_array_fails_when_a_later_task_fails(live: Live, tmp_path: Path) -> None:
    arr = tmp_path / "arr.sh"
    arr.write_text("#!/bin/bash\n#SBATCH --array=0-2 -o /dev/null\n"
                   "[ $SLURM_ARRAY_TASK_ID = 2 ] && { sleep 1; exit 3; }\ntrue\n")  # fmt: skip
    first = int(live.cli("sbatch", "--parsable", str(arr), cwd=tmp_path).stdout.strip())
    after = tmp_path / "after.sh"
    after.write_text("#!/bin/bash\n#SBATCH -o /dev/null\ntrue\n")
    dep = int(live.cli("sbatch", "--parsable", f"--dependency=afterok:{first}", str(after),
                       cwd=tmp_path).stdout.strip())  # fmt: skip
    kill = int(
        live.cli(
            "sbatch",
            "--parsable",
            "-d",
            f"afterok:{first}",
            "--kill-on-invalid-dep=yes",
            str(after),
            cwd=tmp_path,
        ).stdout.strip()
    )
    jobs = live.wait(lambda js: js[kill]["state"] == "CANCELLED", 60)
    assert jobs[dep]["state"] == "PENDING" and jobs[dep]["reason"] == "DependencyNeverSatisfied"
    assert jobs[kill]["reason"] == "DependencyNeverSatisfied"
    assert sorted(j["state"] for i, j in jobs.items() if i not in (dep, kill)) == [
        "COMPLETED", "COMPLETED", "FAILED",
    ]  # fmt: skip


def test_nodelist_and_exclude_choose_the_nodes(live: Live, tmp_path: Path) -> None:
    pinned = int(live.cli("sbatch", "--parsable", "-w", "node1", "-o", "/dev/null",
                          "--wrap", "sleep 1", cwd=tmp_path).stdout)  # fmt: skip
    away = int(live.cli("sbatch", "--parsable", "-x", "node0", "-n", "3", "-o", "/dev/null",
                        "--wrap", "true", cwd=tmp_path).stdout)  # fmt: skip
    # Nowhere to go: refused at submission, naming why, as sbatch's "not available".
    nowhere = live.cli("sbatch", "-w", "node7", "--wrap", "true", cwd=tmp_path, check=False)
    assert nowhere.returncode != 0 and "node list" in nowhere.stderr, nowhere.stderr
    both = live.cli("sbatch", "-w", "node0", "-N", "2", "--wrap", "true", cwd=tmp_path,
                    check=False)  # fmt: skip
    assert both.returncode != 0 and "-w to name every node" in both.stderr, both.stderr
    jobs = live.wait(lambda js: all(js[j]["state"] == "COMPLETED" for j in (pinned, away)), 30)
    assert jobs[pinned]["nodelist"] == "node1"
    assert jobs[away]["nodelist"] == "node1"  # its three one-task pods, all off node0
