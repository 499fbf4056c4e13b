"""One driver: the same small workload gives the same decisions in `detente plan`, in
the live reconciler (with a fake executor that starts nothing) and in the simulator,
for every profile — each run in its own process with its own hash seed, so no
decision may depend on set or dict iteration order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detente.control import layout
from detente.core.profiles import PROFILES

NODES = "6x8"
#: (name, nodes, GPUs per node): gangs and single-node jobs that do not all fit.
JOBS = [("a", 2, 8), ("b", 1, 4), ("c", 3, 8), ("d", 1, 8), ("e", 2, 4), ("f", 1, 2), ("g", 4, 8)]


def manifests(d: Path) -> list[Path]:
    """The live layout of ``NODES`` as Node manifests, and the jobs."""
    nodes = []
    for n in layout.node_specs(NODES):
        nodes.append(json.dumps({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": n["name"], "labels": {layout.RACK: n["rack"]}},
            "status": {"capacity": {"nvidia.com/gpu": n["gpus"], "cpu": f"{n['cpu']}m",
                                    "memory": n["memory"]}},
        }))  # fmt: skip
    jobs = [
        json.dumps({"apiVersion": "detente.dev/v1", "kind": "Job", "metadata": {"name": name},
                    "spec": {"queue": "default", "nodes": count,
                             "resources": {"nvidia.com/gpu": gpus}, "command": "true"}})
        for name, count, gpus in JOBS
    ]  # fmt: skip
    # A Kueue-managed batch/v1 Job: one gang of 3 pods that may share nodes.
    jobs.append(json.dumps({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "k", "labels": {"kueue.x-k8s.io/queue-name": "default"}},
        "spec": {"parallelism": 3, "template": {"spec": {"containers": [{
            "name": "m", "command": ["true"],
            "resources": {"limits": {"nvidia.com/gpu": 2}}}]}}},
    }))  # fmt: skip
    (d / "nodes.yaml").write_text("\n---\n".join(nodes))
    (d / "jobs.yaml").write_text("\n---\n".join(jobs))
    return [d / "nodes.yaml", d / "jobs.yaml"]


LIVE = r"""
import json, sys, time
from pathlib import Path
from detente.api.loader import read_documents
from detente.control import auth, layout, manifests, workloads
from detente.control.reconciler import Reconciler
from detente.control.store.db import open_store
from detente.control.store.models import Job
from detente.core.profiles import build

class FakeExecutor:
    "A fake: records launches and starts nothing (the decisions are what is compared)."
    def launch(self, pod): return (1, 1)
    def exit_code(self, f): return None
    def signal(self, *a): pass
    def terminate(self, *a): pass
    def alive(self, pid, start): return True
    def reap(self): pass
    def find(self, tokens): return {}
    def kill_pod(self, pid, token): return 0
    def run_times(self, f): return None

d, profile, nodes, jobs_file = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sessions = open_store(f"sqlite:///{d / 'live.db'}")
prof = build(profile)
with sessions() as s:
    workloads.put_setting(s, "nodes", layout.node_specs(nodes))
    admin = auth.authenticate(s, auth.create_admin(s))
    s.commit()
    manifests.apply(s, admin, read_documents([jobs_file]), False, prof, time.time())
rec = Reconciler(sessions, prof, d, FakeExecutor())
rec.step()
with sessions() as s:
    print(json.dumps({j.name: j.nodes for j in s.query(Job) if j.nodes}))
"""

SIM = r"""
import json, sys
from detente.api.loader import load_files
from detente.control.plan import build_snapshot
from detente.core.profiles import build
from detente.sim.driver import Simulation

prof = build(sys.argv[1])
man = load_files(sys.argv[2:])
sim = Simulation(build_snapshot(man), prof, seed=prof.seed)
for j in man.jobs:
    sim.submit(j.workload, 3600.0)
records = sim.run(until=0.0)
names = [n.name for n in sim.snap.cluster.nodes]
print(json.dumps({k: [names[i] for i in r.nodes] for k, r in records.items() if r.start == 0.0}))
"""


def _run(args: list[str], seed: int) -> dict[str, list[str]]:
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _plan(files: list[Path], profile: str, seed: int) -> dict[str, list[str]]:
    detente = str(Path(sys.executable).parent / "detente")
    args = [detente, "plan", "-o", "json", "--profile", profile]
    for f in files:
        args += ["-f", str(f)]
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {
        w["name"]: w["nodes"]
        for w in json.loads(out.stdout)["workloads"]
        if w["state"] == "Admitted"
    }


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_plan_live_and_simulator_decide_alike(tmp_path: Path, profile: str) -> None:
    files = manifests(tmp_path)
    planned = _plan(files, profile, seed=1)
    live = _run([sys.executable, "-c", LIVE, str(tmp_path), profile, NODES, str(files[1])], 2)
    simulated = _run([sys.executable, "-c", SIM, profile, *map(str, files)], seed=3)
    assert planned, "the plan admitted nothing: the comparison would be empty"
    assert planned == live == simulated
