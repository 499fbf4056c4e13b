"""One pool, within the quota rules, live: a service's scale-up reclaims its queue's
lent quota from a borrowing `--requeue` training job, which resumes after the
scale-down; a training job inside its own quota is not touched."""

from __future__ import annotations

import time
from pathlib import Path

from detente.testing.live import Live

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "serve"
BORROWER = """#!/bin/bash
#SBATCH --job-name=borrower --requeue -N 2 --gres=gpu:8 -p train --output=borrower.out
echo "start $SLURM_RESTART_COUNT"
if [ "$SLURM_RESTART_COUNT" -ge 1 ]; then sleep 1; exit 0; fi
trap 'echo term; exit 143' TERM
sleep 300 & wait
"""
OWN = """#!/bin/bash
#SBATCH --job-name=own -N 1 --gres=gpu:8 -p train
sleep 300
"""
SERVICE = f"""apiVersion: detente.dev/v1
kind: Service
metadata: {{name: llm}}
spec:
  queue: serve
  priorityClass: serving
  command: exec python3 {EXAMPLES / "fake_llm.py"}
  resources: {{nvidia.com/gpu: 8, cpu: 1}}
  replicas: REPLICAS
  readiness: {{path: /healthz, periodSeconds: 0.2}}
"""


def test_scale_up_reclaims_from_a_preemptible_borrower_only(tmp_path: Path) -> None:
    live = Live(tmp_path / "home")
    live.home.mkdir()
    live.up("--nodes", "3x8")
    try:
        live.cli("apply", "-y", "-f", str(EXAMPLES / "pool.yaml"))
        (tmp_path / "own.sh").write_text(OWN)
        (tmp_path / "borrower.sh").write_text(BORROWER)
        live.cli("submit", "own.sh", cwd=tmp_path)
        live.wait(lambda js: js[1]["state"] == "RUNNING")
        live.cli("submit", "borrower.sh", cwd=tmp_path)  # 16 GPUs: 8 borrowed from serving
        live.wait(lambda js: js[2]["state"] == "RUNNING")
        (tmp_path / "s.yaml").write_text(SERVICE.replace("REPLICAS", "1"))
        t0 = time.monotonic()
        live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
        live.wait_service("llm", lambda s: s["ready"] == 1, 60)
        print(f"scale-up by reclaim, to ready: {time.monotonic() - t0:.2f} s")
        jobs = live.wait(lambda js: js[2]["state"] == "PENDING")
        assert jobs[1]["state"] == "RUNNING"  # inside its own quota: untouched
        events = [e["kind"] for e in live.api("GET", "/v1/jobs/2").json()["events"]]
        assert "Preempted" in events
        # Scale down: the serving quota goes back and the borrower resumes.
        (tmp_path / "s.yaml").write_text(SERVICE.replace("REPLICAS", "0"))
        live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
        jobs = live.wait(lambda js: js[2]["state"] == "COMPLETED", 60)
        assert jobs[2]["attempt"] == 2 and jobs[1]["state"] == "RUNNING"
    finally:
        live.down()
    lines = (tmp_path / "borrower.out").read_text().split()
    assert lines[:2] == ["start", "0"] and lines[-2:] == ["start", "1"] and "term" in lines
