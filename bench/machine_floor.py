"""This machine's own floor for the live bench's arrays (bench/slurm_vs_detente.py),
with no scheduler at all: what no control plane can beat here. Prints JSON.

* ``true``: 2,000 ``bash true.sh`` started at once (``posix_spawn``) and reaped.
* ``sleep``: 2,000 ``bash sleep.sh`` (``sleep 1``) on 128 slots (the bench's 128
  GPUs), a slot refilled the moment its task is reaped — a zero-overhead scheduler;
  the arithmetic floor is 2,000 / 128 × 1 s ≈ 15.6 s.

    python bench/machine_floor.py [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

TASKS, SLOTS = 2000, 128
ENV = {"PATH": "/usr/bin:/bin"}


def _spawn(script: Path) -> int:
    return os.posix_spawn("/bin/bash", ["/bin/bash", str(script)], ENV)


def all_at_once(script: Path) -> float:
    t0 = time.monotonic()
    for pid in [_spawn(script) for _ in range(TASKS)]:
        os.waitpid(pid, 0)
    return round(time.monotonic() - t0, 2)


def on_slots(script: Path) -> float:
    t0 = time.monotonic()
    running = {_spawn(script) for _ in range(SLOTS)}
    left = TASKS - SLOTS
    while running:
        pid, _ = os.wait()
        running.discard(pid)
        if left:
            running.add(_spawn(script))
            left -= 1
    return round(time.monotonic() - t0, 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    reps = ap.parse_args().reps
    with tempfile.TemporaryDirectory() as d:
        true, sleep = Path(d) / "true.sh", Path(d) / "sleep.sh"
        true.write_text("#!/bin/bash\ntrue\n")
        sleep.write_text("#!/bin/bash\nsleep 1\n")
        runs = {"true_all_completed_s": [all_at_once(true) for _ in range(reps)],
                "sleep_all_completed_s": [on_slots(sleep) for _ in range(reps)]}  # fmt: skip
    out = {"machine": {"cores": os.cpu_count(), "load": os.getloadavg()},
           "tasks": TASKS, "slots": SLOTS, "runs": runs}  # fmt: skip
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
