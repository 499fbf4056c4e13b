"""detente's live path beside real Slurm 22.05 (scripts/slurm), in one run,
alternating runs, on the same node shape (16 nodes × 8 GPUs, 128 CPUs, 1 TB each).
Prints JSON.

* ``arrays_true``: two arrays of 1,000 ``true`` tasks (MaxArraySize is 1001 on both)
  — seconds from the first submit until all 2,000 completed.
* ``arrays_sleep_gpu``: the same with ``sleep 1`` and one GPU per task (128 GPUs:
  the floor the tasks set is 2,000 / 128 × 1 s ≈ 15.6 s).
* ``submit_loop``: ``--loop`` jobs submitted one process per job, sequentially (a
  user's shell loop): submits per second, and seconds until all completed.

The Slurm half needs root and Debian's slurm-wlm (the peer's setup.sh installs it);
without them it is reported as skipped. Quiet machine first (``uptime``).

    python bench/slurm_vs_detente.py [--reps 3] [--loop 200] [--only arrays_true,...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from detente.testing.live import Live

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


class Detente:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.live = Live(d / "home")

    def up(self) -> None:
        self.live.home.mkdir(exist_ok=True)
        self.live.up("--nodes", "16x8")

    def down(self) -> None:
        self.live.down()

    def submit(self, script: Path, *opts: str) -> None:
        self.live.cli("submit", "-o", "/dev/null", *opts, str(script), cwd=self.d)

    def active(self) -> int:
        r = httpx.get(self.live.url + "/v1/jobs", timeout=30,
                      headers={"Authorization": f"Bearer {self.live.token}"})  # fmt: skip
        return len(r.json())


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--loop", type=int, default=200)
    ap.add_argument("--only", default="arrays_true,arrays_sleep_gpu,submit_loop")
    args = ap.parse_args()
    cases: dict[str, Callable[[Slurm | Detente, Path], dict[str, float]]] = {
        "arrays_true": lambda s, d: arrays(s, d, "true"),
        "arrays_sleep_gpu": lambda s, d: arrays(s, d, "sleep"),
        "submit_loop": lambda s, d: loop(s, d, args.loop),
    }
    slurm_ok = os.geteuid() == 0 and PEER.exists() and shutil.which("apt-get") is not None
    out: dict[str, object] = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()},
                              "shape": SHAPE, "runs": {}}  # fmt: skip
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    for case in args.only.split(","):
        for _ in range(args.reps):  # alternating: Slurm, detente, Slurm, detente, …
            for name, make in (("slurm", Slurm), ("detente", Detente)):
                if name == "slurm" and not slurm_ok:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    system = make(Path(tmp))
                    system.up()
                    try:
                        res = cases[case](system, Path(tmp))
                    finally:
                        system.down()
                runs.setdefault(case, {}).setdefault(name, []).append(res)
                print(case, name, res, file=sys.stderr)
    out["runs"] = runs
    if not slurm_ok:
        out["slurm"] = "skipped: needs root and ../shared/peers/slurm"
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
