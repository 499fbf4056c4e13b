"""detente's live path beside real Slurm 22.05 (scripts/slurm), in one run,
alternating runs, on the same node shape (16 nodes × 8 GPUs, 128 CPUs, 1 TB each).
Prints JSON.

* ``arrays_true``: two arrays of 1,000 ``true`` tasks (MaxArraySize is 1001 on both)
  — seconds from the first submit until all 2,000 completed.
* ``arrays_sleep_gpu``: the same with ``sleep 1`` and one GPU per task (128 GPUs:
  the floor the tasks set is 2,000 / 128 × 1 s ≈ 15.6 s).
* ``submit_loop``: ``--loop`` jobs submitted one process per job, sequentially (a
  user's shell loop): submits per second, and seconds until all completed.
* ``batch_api``: 2,000 ``true`` jobs through ``POST /v1/jobs/batch``, 500 per request
  (detente only: sbatch has none; compare with Slurm's ``submit_loop`` rate).
* ``gangs``: 50 gangs of 1, 2, 4 and 8 whole nodes (``--exclusive``, 8 GPUs each,
  2-minute limits, 2–6 s of work) at once: makespan, mean wait, and the share of
  2- and 4-node gangs under one leaf switch.

Three systems, alternating: real slurmctld with sched/backfill (``slurm``), detente
on its local executor (``detente``), and detente in front of the same slurmctld
(``detente_on_slurm``: ``up --executor slurm``, every job a Slurm job pinned to the
nodes detente chose). ``--systems`` picks some; ``floor`` adds, for the two array
cases, this machine's own floor in the same alternation (`machine_floor`: the tasks'
scripts spawned with no scheduler at all), so "within 10 % of the floor" is judged on
the same machine at the same time.

Each run has a folder of its own, all removed when the bench ends (`scratch`: a
cleanup of thousands of files slowed the next run's file making on this machine).

The Slurm half needs root and Debian's slurm-wlm (the peer's setup.sh installs it);
without them it is reported as skipped. Quiet machine first (``uptime``).

    python bench/slurm_vs_detente.py [--reps 3] [--loop 200] [--only arrays_true,...]
        [--systems slurm,detente,detente_on_slurm,floor]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

import machine_floor
from detente.api.hostlist import expand
from detente.executors.slurm_jobs import timestamp
from detente.executors.slurm_nodes import fields
from detente.testing.live import Live
from scratch import Scratch

#: The project's own local Slurm (learned from ../shared/peers/slurm).
PEER = Path(__file__).resolve().parent.parent / "scripts" / "slurm"
SHAPE = {"NODES": "16", "GPUS": "8", "CPUS": "128", "MEM_MB": "1024000"}
SCRIPTS = {"true": "#!/bin/bash\ntrue\n", "sleep": "#!/bin/bash\nsleep 1\n"}


class Slurm:
    def __init__(self, d: Path) -> None:
        self.d, self.env = d, {**os.environ, **SHAPE, "SLURMPEER_DIR": str(d / "peer")}

    def up(self) -> None:
        subprocess.run(["bash", str(PEER / "setup.sh")], env=self.env, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
        self.env["SLURM_CONF"] = str(self.d / "peer" / "etc" / "slurm.conf")

    def down(self) -> None:
        subprocess.run(["bash", str(PEER / "stop.sh")], env=self.env, capture_output=True,
                       timeout=300)  # fmt: skip

    def submit(self, script: Path, *opts: str) -> None:
        subprocess.run(["sbatch", "-Q", "-o", "/dev/null", *opts, str(script)], env=self.env,
                       check=True, cwd=self.d, timeout=60)  # fmt: skip

    def active(self) -> int:
        out = subprocess.run(["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True,
                             text=True, timeout=60).stdout  # fmt: skip
        return len(out.split())

    @staticmethod
    def leaf(node: str) -> int:
        """setup.sh's topology: leaf switches of 4 nodes (n1–n4, n5–n8, …)."""
        return (int(node[1:]) - 1) // 4

    def finished(self) -> list[dict[str, Any]]:
        """Ended jobs: submit and start times, nodes (Slurm keeps them MinJobAge)."""
        out = subprocess.run(["scontrol", "-o", "show", "job"], env=self.env,
                             capture_output=True, text=True, timeout=60).stdout  # fmt: skip
        rows = []
        for line in out.splitlines():
            f = fields(line)
            if "JobId" in f and timestamp(f.get("StartTime", "")):
                rows.append({"name": f.get("JobName", ""), "submit": timestamp(f["SubmitTime"]),
                             "start": timestamp(f["StartTime"]),
                             "nodes": expand(f["NodeList"])})  # fmt: skip
        return rows


class Detente:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.live = Live(d / "home")
        # One kept client for the polls: a new one a poll made its TLS context (≈ 25 ms
        # of CPU, ten times a second) on the machine being measured. Its pool is
        # left to the process's end (the bench's systems end with it).
        self.client = httpx.Client(timeout=30)

    def up(self) -> None:
        self.live.home.mkdir(exist_ok=True)
        self.live.up("--nodes", "16x8")

    def down(self) -> None:
        self.live.down()

    def submit(self, script: Path, *opts: str) -> None:
        self.live.cli("submit", "-o", "/dev/null", *opts, str(script), cwd=self.d)

    def active(self) -> int:
        """Live jobs' ids only, as Slurm's half asks ``squeue -h -o %i``."""
        r = self.client.get(self.live.url + "/v1/jobs", params={"fields": "id"},
                            headers={"Authorization": f"Bearer {self.live.token}"})  # fmt: skip
        return len(r.json())

    @staticmethod
    def leaf(node: str) -> int:
        """``--nodes 16x8``: racks of 8 (node0–node7, node8–node15)."""
        return int(node[4:]) // 8

    def finished(self) -> list[dict[str, Any]]:
        jobs = self.live.api("GET", "/v1/jobs", params={"all": True}).json()
        return [{"name": j["name"], "submit": j["submit_time"], "start": j["start_time"],
                 "nodes": expand(j["nodelist"])} for j in jobs if j["start_time"]]  # fmt: skip


class DetenteOnSlurm(Detente):
    """detente in front of a real slurmctld (``up --executor slurm``): detente decides,
    Slurm runs each job pinned to detente's nodes."""

    def __init__(self, d: Path) -> None:
        super().__init__(d)
        self.slurm = Slurm(d)
        self.leaf = Slurm.leaf  # type: ignore[method-assign]

    def up(self) -> None:
        self.slurm.up()
        self.live.env["SLURM_CONF"] = self.slurm.env["SLURM_CONF"]
        self.live.home.mkdir(exist_ok=True)
        self.live.up("--executor", "slurm")

    def down(self) -> None:
        try:
            self.live.down()
        finally:
            self.slurm.down()


def _until_done(system: Slurm | Detente, t0: float, timeout: float = 900) -> float:
    while system.active() and time.monotonic() - t0 < timeout:
        time.sleep(0.1)
    return round(time.monotonic() - t0, 2)


def arrays(system: Slurm | Detente, d: Path, kind: str) -> dict[str, float]:
    script = d / f"{kind}.sh"
    script.write_text(SCRIPTS[kind])
    opts = ("--gres=gpu:1",) if kind == "sleep" else ()
    t0 = time.monotonic()
    for _ in range(2):
        system.submit(script, "--array=0-999", *opts)
    return {"all_completed_s": _until_done(system, t0)}


def loop(system: Slurm | Detente, d: Path, n: int) -> dict[str, float]:
    script = d / "true.sh"
    script.write_text(SCRIPTS["true"])
    t0 = time.monotonic()
    for _ in range(n):
        system.submit(script)
    submit = time.monotonic() - t0
    return {"submits_per_s": round(n / submit, 1), "all_completed_s": _until_done(system, t0)}


def batch_api(
    system: Slurm | Detente, d: Path, n: int = 2000, per_call: int = 500
) -> dict[str, float]:
    """``n`` one-task ``true`` jobs through ``POST /v1/jobs/batch``, ``per_call`` per
    request (sbatch has no batch submission: compare with its ``submit_loop`` rate)."""
    if not isinstance(system, Detente):
        return {"skipped": 1.0}
    spec = {"script": SCRIPTS["true"], "chdir": str(d), "output": "/dev/null"}
    t0 = time.monotonic()
    for _ in range(n // per_call):
        r = system.live.api("POST", "/v1/jobs/batch", json={"jobs": [spec] * per_call})
        assert r.status_code == 201, r.text
    submit = time.monotonic() - t0
    return {"jobs_per_s": round(n / submit, 1), "all_completed_s": _until_done(system, t0)}


#: The mixed gang workload: (nodes, seconds, count), whole nodes, a time limit each.
GANGS = [(4, 6, 6), (2, 4, 12), (1, 2, 30), (8, 5, 2)]


def gangs(system: Slurm | Detente, d: Path) -> dict[str, float]:
    """Gangs of 1–8 whole nodes with run times of seconds and time limits, submitted
    at once in a shuffled but fixed order: makespan, mean wait, and the share of
    multi-node gangs placed under one leaf switch (4 nodes per leaf)."""
    order = [(n, t) for n, t, c in GANGS for _ in range(c)]
    order = [order[(i * 17) % len(order)] for i in range(len(order))]  # fixed shuffle
    t0 = time.monotonic()
    for i, (n, secs) in enumerate(order):
        script = d / f"g{i}.sh"
        script.write_text(f"#!/bin/bash\nsleep {secs}\n")
        system.submit(script, "-J", f"g{i}", "-N", str(n), "--gres=gpu:8", "--exclusive",
                      "-t", "2")  # fmt: skip
    done = _until_done(system, t0)
    rows = system.finished()
    waits = [r["start"] - r["submit"] for r in rows]
    multi = [r for r in rows if len(r["nodes"]) in (2, 4)]
    one_leaf = [r for r in multi if len({system.leaf(x) for x in r["nodes"]}) == 1]
    order = [r["name"] for r in sorted(rows, key=lambda r: (r["start"], r["submit"]))]
    return {"all_completed_s": done, "jobs": len(rows),
            "mean_wait_s": round(sum(waits) / max(len(waits), 1), 2),
            "max_wait_s": round(max(waits, default=0.0), 2),
            "nodes_used": len({n for r in rows for n in r["nodes"]}),
            "gangs_in_one_leaf": round(len(one_leaf) / max(len(multi), 1), 3),
            "start_order": order}  # fmt: skip


#: The array cases' floors (`machine_floor`): the same scripts, no scheduler.
FLOOR = {"arrays_true": "true", "arrays_sleep_gpu": "sleep"}


def floor(kind: str, d: Path) -> dict[str, float]:
    """2,000 of the case's scripts with no scheduler: all at once (``true``), or on
    128 slots refilled the moment a task is reaped (``sleep``)."""
    script = d / f"{kind}.sh"
    script.write_text(SCRIPTS[kind])
    run = machine_floor.all_at_once if kind == "true" else machine_floor.on_slots
    return {"all_completed_s": run(script)}


def run_case(
    case: str, reps: int, names: list[str], cases: dict[str, Callable[[Any, Path], Any]],
    runs: dict[str, dict[str, list[dict[str, float]]]], scratch: Scratch, slurm_ok: bool,
) -> None:  # fmt: skip
    """``reps`` rounds of ``case``, alternating: Slurm, detente, Slurm, detente, …"""
    systems = {"slurm": Slurm, "detente": Detente, "detente_on_slurm": DetenteOnSlurm}
    for _ in range(reps):
        for name in names:
            if name == "floor":
                if case in FLOOR:
                    res = floor(FLOOR[case], scratch.new())
                    runs.setdefault(case, {}).setdefault(name, []).append(res)
                    print(case, name, res, file=sys.stderr)
                continue
            if name != "detente" and not slurm_ok:
                continue
            tmp = scratch.new()
            system = systems[name](tmp)
            system.up()
            try:
                res = cases[case](system, tmp)
            finally:
                system.down()
            runs.setdefault(case, {}).setdefault(name, []).append(res)
            print(case, name, res, file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loop", type=int, default=200)
    ap.add_argument("--only", default="arrays_true,arrays_sleep_gpu,submit_loop,batch_api,gangs")
    ap.add_argument("--systems", default="slurm,detente,detente_on_slurm,floor")
    args = ap.parse_args()
    cases: dict[str, Callable[[Slurm | Detente, Path], dict[str, float]]] = {
        "arrays_true": lambda s, d: arrays(s, d, "true"),
        "arrays_sleep_gpu": lambda s, d: arrays(s, d, "sleep"),
        "submit_loop": lambda s, d: loop(s, d, args.loop),
        "batch_api": batch_api,
        "gangs": gangs,
    }
    slurm_ok = os.geteuid() == 0 and PEER.exists() and shutil.which("apt-get") is not None
    out: dict[str, object] = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()},
                              "shape": SHAPE, "runs": {}}  # fmt: skip
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    with Scratch() as scratch:  # run folders removed at the end (`scratch`)
        for case in args.only.split(","):
            run_case(case, args.reps, args.systems.split(","), cases, runs, scratch, slurm_ok)
    out["runs"] = runs
    if not slurm_ok:
        out["slurm"] = "skipped: needs root and ../shared/peers/slurm"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
