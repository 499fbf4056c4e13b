"""Crash safety: kill -9 the control plane at random moments while 200 short jobs run,
restart it, 20 times. Every job must end exactly once: COMPLETED, and its id written
to the shared file exactly once (a job run twice would write it twice)."""

from __future__ import annotations

import ast
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

from detente.executors.procs import proc_start
from detente.testing.live import Live

JOBS, KILLS = 200, 20
# 16 at a time (2 GPUs each on 4×8), 1-6 s each: the work spans all the kills.
SCRIPT = """#!/bin/bash
sleep $(( RANDOM % 6 + 1 ))
echo "$SLURM_JOB_ID" >> "$IDS"
"""


def _wait_gone(pid: int) -> None:
    deadline = time.time() + 10
    while proc_start(pid) is not None and time.time() < deadline:
        time.sleep(0.01)


def test_kill_9_twenty_times_loses_no_job_and_runs_none_twice(tmp_path: Path) -> None:
    rng = random.Random(20261128)
    live = Live(tmp_path / "home")
    live.home.mkdir()
    ids_file = tmp_path / "ids.txt"
    live.up("--nodes", "4x8")
    try:
        spec = {"script": SCRIPT, "gpus_per_node": 2, "env": {"IDS": str(ids_file)},
                "chdir": str(tmp_path)}  # fmt: skip
        submitted = []
        for _ in range(JOBS):
            r = live.api("POST", "/v1/jobs", json=spec)
            assert r.status_code == 201, r.text
            submitted += r.json()["ids"]
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.0, 1.2))
            pid = int((live.home / "detente.pid").read_text())
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)  # SIGKILL lands asynchronously; `up` refuses a live one
            live.up()
        jobs = live.wait(lambda js: all(j["state"] == "COMPLETED" for j in js.values()), 240)
    finally:
        live.down()
    recovered = Counter[str]()
    for line in (live.home / "detente.log").read_text().splitlines():
        if "recovered: " in line:
            recovered.update(ast.literal_eval(line.split("recovered: ")[1]))
    # The kills hit running work: pods were re-adopted, and pods that ended while the
    # control plane was down were settled from their exit files.
    assert recovered["adopted"] > 0 and recovered["ended"] > 0, recovered
    assert sorted(jobs) == sorted(submitted)
    written = Counter(int(x) for x in ids_file.read_text().split())
    assert set(written) == set(submitted)
    assert max(written.values()) == 1, [i for i, n in written.items() if n > 1]
    assert all(j["attempt"] == 1 for j in jobs.values())
