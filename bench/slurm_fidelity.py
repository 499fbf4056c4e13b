"""The ``slurm`` profile against real slurmctld (scripts/slurm, 8 nodes × 8 GPUs in
leaves of 4): one seeded workload replayed on Slurm, then simulated from what Slurm
recorded; the share of job pairs started in the same order and the start-time
error (`detente.sim.slurm_fidelity`). Prints JSON.

    python bench/slurm_fidelity.py [--jobs 200] [--seed 7] [--profile slurm]
        [--record src/detente/data/slurm_replay_22.05.json | --replayed FILE]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from detente.conformance.systems import local_slurm
from detente.sim.slurm_fidelity import compare, from_json, replay, simulate, to_json, workload


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", default="slurm")
    ap.add_argument("--record", type=Path, help="write the replay (workload and Slurm's record)")
    ap.add_argument("--replayed", type=Path, help="use a recorded replay instead of Slurm")
    args = ap.parse_args()
    t0 = time.monotonic()
    if args.replayed:
        jobs, real = from_json(json.loads(args.replayed.read_text()))
    else:
        jobs = workload(args.jobs, args.seed)
        with tempfile.TemporaryDirectory() as d, local_slurm(Path(d), nodes=8, gpus=8) as slurm:
            real = replay(jobs, slurm.env)
    replayed = time.monotonic() - t0
    if args.record:
        args.record.write_text(json.dumps(to_json(jobs, real), indent=1) + "\n")
    sim = simulate(jobs, real, args.profile)
    result = compare({k: r.start for k, r in real.items()}, sim)
    print(json.dumps({"profile": args.profile, "seed": args.seed, **result,
                      "replay_s": round(replayed, 1),
                      "slurm_makespan_s": round(max(r.end for r in real.values()), 1),
                      "sim_makespan_s": round(max(sim.values()), 1)}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
