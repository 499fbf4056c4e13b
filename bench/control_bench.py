"""Control-plane speed. Prints JSON.

* ``step``: reconciler steps with N pending jobs on 128 virtual nodes × 8 GPUs: the
  first (admits and records), the first decision once they run, then the decision a
  new submission triggers, 15 times (median and p90: load from the cache → `run_cycle`
  → record; ``decision_step_over_cycle`` = that median / the bare `run_cycle` on the
  same snapshot in the same process), and an idle step (nothing changed: settle
  only). The executor is a fake that starts nothing (named so): this measures the
  scheduler, not process spawn.
* ``live``: ``detente up --nodes 4x8``, then N one-GPU jobs (``true``) through the HTTP
  API: submit latency p50/p99 and jobs completed per second by the real local executor.

* ``memory``: peak RSS with ``NODES`` × 8 GPUs and ``PENDING`` jobs through two steps.

    python bench/control_bench.py [--pending 1000,5000] [--live-jobs 300]
        [--memory 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from detente.api.jobspec import JobSpec
from detente.control import auth, jobs, layout, workloads
from detente.control.reconciler import Reconciler
from detente.control.store.db import open_store
from detente.core.cycle import run_cycle
from detente.core.priority import reprioritize
from detente.core.profiles import build
from detente.executors.base import PodLaunch
from detente.testing.live import Live


class FakeExecutor:
    """A fake: records launches and starts nothing; every pod "runs" for ever."""

    def __init__(self) -> None:
        self.launched = 0

    def launch(self, pod: PodLaunch) -> tuple[int, int]:
        self.launched += 1
        return 1, 1

    def exit_code(self, exit_file: Path) -> int | None:
        return None

    def signal(self, pid: int | None, start: int | None, signum: object) -> None:
        pass

    def terminate(self, pid: int | None, start: int | None) -> None:
        """Starts nothing, stops nothing."""

    def alive(self, pid: int | None, start: int | None) -> bool:
        return True

    def reap(self) -> None:
        pass

    def ended(self) -> set[int]:
        """As the local executor's exit watcher: no pod ended."""
        return set()

    def run_times(self, exit_file: Path) -> tuple[float, float] | None:
        return None

    def find(self, tokens: set[str]) -> dict[str, tuple[int, int]]:
        return {}

    def kill_pod(self, pid: int | None, token: str) -> int:
        return 0


#: The pending jobs' shapes: (nodes, GPUs per node).
SHAPES = [(1, 1), (1, 2), (1, 4), (1, 8), (2, 8), (4, 8)]


def pending_store(d: str, nodes: int, pending: int, per_array: int = 1,
                  seed: int = 0) -> tuple[Any, Any, Any]:  # fmt: skip
    """A SQLite store in ``d`` with ``nodes`` × 8 GPUs and ``pending`` jobs of
    `SHAPES` (arrays of ``per_array`` tasks); (sessions, user, queue config)."""
    rng = random.Random(seed)
    sessions = open_store(f"sqlite:///{d}/b.db")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs(f"{nodes}x8"))
        user = auth.authenticate(s, auth.create_user(s, "u", "default"))
        config = workloads.cluster_and_config(s)[1]
        for _ in range(pending // per_array):
            n, gpus = rng.choice(SHAPES)
            array = list(range(per_array)) if per_array > 1 else None
            spec = JobSpec(script="true", nodes=n, gpus_per_node=gpus, time_limit=3600,
                           array=array)  # fmt: skip
            jobs.submit(s, user, spec, config, time.time(), commit=False)
        s.commit()
    return sessions, user, config


def bench_step(pending: int, seed: int = 0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        sessions, user, config = pending_store(d, 128, pending, seed=seed)
        prof = build("detente")
        with sessions() as s:  # the baseline: the bare cycle on the loaded snapshot
            snap, queues, _ = workloads.load(s, prof)
            t0 = time.perf_counter()
            reprioritize(snap, queues, prof.half_life, time.time())
            res = run_cycle(snap, queues, prof, time.time())
            cycle = time.perf_counter() - t0
        rec = Reconciler(sessions, prof, Path(d), FakeExecutor())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        first = rec.step()
        step1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec.step()  # a decision with everything placed running, the rest pending
        step2 = time.perf_counter() - t0
        t0 = time.perf_counter()
        rec.step()  # nothing changed: settle only
        step3 = time.perf_counter() - t0
        decisions = []
        for _ in range(15):  # a submission arrives: the decision it triggers
            with sessions() as s:
                spec = JobSpec(script="true", nodes=1, gpus_per_node=1, time_limit=3600)
                jobs.submit(s, user, spec, config, time.time())
            t0 = time.perf_counter()
            rec.step()
            decisions.append(time.perf_counter() - t0)
        decisions.sort()
    return {"pending": pending, "admitted_first_step": first.admitted,
            "cycle_admitted": len(res.admissions), "cycle_seconds": round(cycle, 4),
            "first_step_seconds": round(step1, 4), "first_decision_seconds": round(step2, 4),
            "decision_step_seconds": round(decisions[len(decisions) // 2], 4),
            "decision_step_p90_seconds": round(decisions[int(0.9 * len(decisions))], 4),
            "idle_step_seconds": round(step3, 4),
            "decision_step_over_cycle": round(decisions[len(decisions) // 2] / max(cycle, 1e-9),
                                              2)}  # fmt: skip


def bench_memory(nodes: int, pending: int, seed: int = 0) -> dict[str, float]:
    """Peak memory of a control plane with ``nodes`` virtual nodes × 8 GPUs and
    ``pending`` jobs (arrays of 100 tasks, six shapes) through two reconciler steps
    (the first admits and records; the second decides with the rest pending): the
    process's peak RSS, in a fresh interpreter so nothing else counts."""
    code = f"import control_bench as cb; cb.memory_child({nodes}, {pending}, {seed})"
    here = Path(__file__).parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=here, timeout=3600, check=True)  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def memory_child(nodes: int, pending: int, seed: int) -> None:
    """`bench_memory`'s run, in the fresh interpreter it starts: prints JSON."""
    with tempfile.TemporaryDirectory() as d:
        sessions, _, _ = pending_store(d, nodes, pending, per_array=100, seed=seed)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rec = Reconciler(sessions, build("detente"), Path(d), FakeExecutor())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        first = rec.step()
        t1 = time.perf_counter()
        rec.step()
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"nodes": nodes, "pending": pending, "admitted_first_step": first.admitted,
                      "first_step_seconds": round(t1 - t0, 2),
                      "second_step_seconds": round(t2 - t1, 2),
                      "rss_after_submit_mib": round(base / 1024),
                      "peak_rss_mib": round(peak / 1024)}))  # fmt: skip


def bench_live(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as d:
        live = Live(Path(d) / "home")
        live.home.mkdir()
        live.up("--nodes", "4x8")
        try:
            spec = {"script": "true", "gpus_per_node": 1, "chdir": d}
            lat = []
            t0 = time.perf_counter()
            for _ in range(n):
                t = time.perf_counter()
                assert live.api("POST", "/v1/jobs", json=spec).status_code == 201
                lat.append(time.perf_counter() - t)
            live.wait(lambda js: len(js) == n and all(
                j["state"] == "COMPLETED" for j in js.values()), timeout=600)  # fmt: skip
            wall = time.perf_counter() - t0
        finally:
            live.down()
    lat.sort()
    return {"jobs": n, "submit_p50_ms": round(1000 * statistics.median(lat), 1),
            "submit_p99_ms": round(1000 * lat[int(0.99 * (n - 1))], 1),
            "wall_seconds": round(wall, 2), "jobs_per_s": round(n / wall, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pending", default="1000,5000")
    ap.add_argument("--live-jobs", type=int, default=300)
    ap.add_argument("--memory", default="", help="NODES,PENDING: peak memory (10000,100000)")
    a = ap.parse_args()
    out: dict[str, object] = {"step": [bench_step(int(p)) for p in a.pending.split(",") if p]}
    if a.memory:
        nodes, pending = (int(x) for x in a.memory.split(","))
        out["memory"] = bench_memory(nodes, pending)
    if a.live_jobs:
        out["live"] = bench_live(a.live_jobs)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
