"""Simulator speed on the full Philly trace (82,247 jobs), per profile. Prints JSON.

Each profile replays the bundled Philly trace on the same cluster (default
``128x8``, the issue's example) in its own process, one core each, with backfill on
where the profile has it. ``jobs_per_s`` counts jobs replayed per second of wall
time, trace loading included. For scale, the Alibaba PAI Python simulator's README
reports 180–390 jobs/s.

    python bench/sim_bench.py [--cluster 128x8] [--profile detente,slurm,...] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys

from detente.sim.run import SimConfig, simulate

PAI_SIM_JOBS_PER_S = (180, 390)


def _one(profile: str, cfg: SimConfig, out: mp.Queue) -> None:  # type: ignore[type-arg]
    m = simulate(profile, cfg)["metrics"]
    keep = (
        "jobs",
        "finished",
        "cycles",
        "wall_seconds",
        "jobs_per_s",
        "jct_avg",
        "wait_avg",
        "gpu_util",
    )
    res = {k: round(m[k], 3) if isinstance(m[k], float) else m[k] for k in keep}
    res["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out.put(res)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", default="128x8")
    ap.add_argument("--profile", default="detente,slurm,slurm-easy,volcano,kueue-tas,kueue,k8s")
    ap.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    cfg = SimConfig(trace="philly", cluster=args.cluster, limit=args.limit)
    ctx = mp.get_context("spawn")
    results = {}
    for prof in args.profile.split(","):
        q = ctx.Queue()
        p = ctx.Process(target=_one, args=(prof, cfg, q))
        p.start()
        results[prof] = q.get()
        p.join()
        results[prof]["vs_pai_simulator_best"] = round(
            results[prof]["jobs_per_s"] / PAI_SIM_JOBS_PER_S[1], 1
        )
    doc = {"trace": "philly (bundled)", "cluster": args.cluster, "python": sys.version.split()[0]}
    print(json.dumps({**doc, "profiles": results}, indent=2))


if __name__ == "__main__":
    main()
