"""Live preemption: a high-priority job preempts a running `--requeue` job, which gets
SIGTERM and its grace, is requeued and runs again (attempt 2). Priority classes come in
through `detente apply`."""

from __future__ import annotations

from pathlib import Path

from detente.testing.live import Live

CLASSES = """apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {name: high}
value: 1000
"""
LOW = """#!/bin/bash
#SBATCH --job-name=low --requeue -N 2 --gres=gpu:8 --output=low.out
echo "start $SLURM_RESTART_COUNT"
if [ "$SLURM_RESTART_COUNT" -ge 1 ]; then exit 0; fi
trap 'echo term; exit 143' TERM
sleep 120 & wait
"""
HIGH = """#!/bin/bash
#SBATCH --job-name=high --qos=high -N 2 --gres=gpu:8 --output=high.out
echo high
"""


def test_high_priority_preempts_and_the_victim_requeues(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "2x8")
    try:
        (tmp_path / "classes.yaml").write_text(CLASSES)
        plan = live.cli("apply", "-y", "-f", str(tmp_path / "classes.yaml")).stdout
        assert "WorkloadPriorityClass/high created" in plan
        (tmp_path / "low.sh").write_text(LOW)
        (tmp_path / "high.sh").write_text(HIGH)
        live.cli("submit", "low.sh", cwd=tmp_path)
        live.wait(lambda js: js[1]["state"] == "RUNNING")
        live.cli("submit", "high.sh", cwd=tmp_path)
        jobs = live.wait(lambda js: len(js) == 2 and all(
            j["state"] == "COMPLETED" for j in js.values()), timeout=60)  # fmt: skip
        events = [e["kind"] for e in live.api("GET", "/v1/jobs/1").json()["events"]]
    finally:
        live.down()
    low, high = jobs[1], jobs[2]
    assert low["attempt"] == 2 and high["attempt"] == 1
    # The batch script: first run, SIGTERM (its grace), then the requeued run, appended.
    assert (tmp_path / "low.out").read_text().split() == ["start", "0", "term", "start", "1"]
    assert high["start_time"] <= low["start_time"]  # low's second run came after high
    assert "Preempted" in events and "Requeued" in events


WARNED = """#!/bin/bash
#SBATCH --job-name=warned --requeue -N 2 --gres=gpu:8 --output=warned.out --signal=B:USR1@2
echo "start $SLURM_RESTART_COUNT"
if [ "$SLURM_RESTART_COUNT" -ge 1 ]; then exit 0; fi
trap 'echo "usr1 $(date +%s.%N)"' USR1
trap 'echo "term $(date +%s.%N)"; exit 143' TERM
while true; do sleep 60 & wait; done
"""


def test_a_preempted_job_gets_its_signal_before_the_sigterm(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "2x8")
    try:
        (tmp_path / "classes.yaml").write_text(CLASSES)
        live.cli("apply", "-y", "-f", str(tmp_path / "classes.yaml"))
        (tmp_path / "warned.sh").write_text(WARNED)
        (tmp_path / "high.sh").write_text(HIGH)
        live.cli("sbatch", "warned.sh", cwd=tmp_path)
        live.wait(lambda js: js[1]["state"] == "RUNNING")
        live.cli("sbatch", "high.sh", cwd=tmp_path)
        live.wait(lambda js: len(js) == 2 and all(
            j["state"] == "COMPLETED" for j in js.values()), timeout=60)  # fmt: skip
        events = [e["kind"] for e in live.api("GET", "/v1/jobs/1").json()["events"]]
    finally:
        live.down()
    words = (tmp_path / "warned.out").read_text().split()
    assert [words[0], words[1], words[2], words[4]] == ["start", "0", "usr1", "term"], words
    assert float(words[5]) - float(words[3]) >= 1.5  # SIGTERM came --signal's 2 s later
    assert words[6:] == ["start", "1"]
    assert events.index("Signalled") < events.index("Requeued")
