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
