"""One job model: sbatch, a `kind: Job` manifest and the API give one `JobSpec`, and one
conversion makes it the core's `Workload`; what the live control plane cannot honour
is refused with the field named, never dropped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from detente.api.jobs import to_workload
from detente.api.jobspec import JobSpec
from detente.api.loader import load_files
from detente.api.sbatch import parse
from detente.control import auth, jobs, layout, workloads
from detente.control.store.db import open_store
from detente.control.store.models import Job
from detente.core.profiles import build
from detente.core.queues import QueueConfig
from detente.testing.api import Api

SBATCH = """#!/bin/bash
#SBATCH -J train -N 2 --ntasks-per-node=1 --gres=gpu:4 -c 8 --mem=32G -t 60
#SBATCH --requeue --exclusive -p default
true
"""
MANIFEST = """apiVersion: detente.dev/v1
kind: Job
metadata: {name: train}
spec:
  nodes: 2
  resources: {nvidia.com/gpu: 4, cpu: 8, memory: 32Gi}
  timeLimit: 1h
  preemptible: true
  exclusive: true
"""
API = {"name": "train", "nodes": 2, "gpus_per_node": 4, "cpus_per_task": 8,
       "mem_per_node": 32 << 30, "time_limit": 3600, "requeue": True, "exclusive": True,
       "queue": "default", "script": "true"}  # fmt: skip


def _shape(spec: JobSpec) -> tuple[object, ...]:
    w = to_workload(spec, name="x", queue="default/default", seq=0, submit_time=0.0,
                    config=QueueConfig())  # fmt: skip
    (ps,) = w.pod_sets
    return (ps.count, ps.request, ps.one_per_node, w.time_limit, w.exclusive, w.preemptible)


def test_sbatch_a_manifest_and_the_api_give_one_workload(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(MANIFEST)
    (entry,) = load_files([tmp_path / "j.yaml"]).jobs
    from_sbatch = _shape(parse(SBATCH, "train.sh").spec)
    assert from_sbatch == _shape(entry.spec) == _shape(JobSpec.model_validate(API))
    assert from_sbatch[:3] == (2, entry.workload.pod_sets[0].request, True)


def test_a_manifest_with_replicas_or_ntasks_lets_pods_share_nodes(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text(MANIFEST.replace("nodes: 2", "replicas: 3"))
    (entry,) = load_files([tmp_path / "j.yaml"]).jobs
    (ps,) = entry.workload.pod_sets
    assert (ps.count, ps.one_per_node, entry.spec.replicas) == (3, False, 3)


def test_the_job_model_refuses_two_shapes_at_once() -> None:
    with pytest.raises(ValueError, match="give one of nodes, ntasks or replicas"):
        JobSpec.model_validate({**API, "replicas": 2})


REFUSED = {
    "a GPU share cannot run on the local executor": (
        "nvidia.com/gpu: 4", "nvidia.com/gpu: 0.5", "spec.resources.nvidia.com/gpu"),
    "independent replicas are not a live Job": ("nodes: 2", "replicas: 2", "spec.replicas"),
    "a live job is submitted when it arrives": ("nodes: 2", "nodes: 2\n  submitTime: 5",
                                                 "spec.submitTime"),
    "a live job runs as its submitter": ("nodes: 2", "nodes: 2\n  user: bob", "spec.user"),
}  # fmt: skip


@pytest.mark.parametrize("old, new, path", REFUSED.values(), ids=REFUSED.keys())
def test_live_apply_refuses_what_it_cannot_honour(
    tmp_path: Path, old: str, new: str, path: str
) -> None:
    api = Api(tmp_path)
    doc = yaml.safe_load(MANIFEST.replace(old, new).replace("nodes: 2", "nodes: 1"))
    doc["spec"]["queue"] = "vision"
    r = api.call("ana", "POST", "/v1/apply", json={"documents": [["j.yaml", 0, doc]]})
    assert r.status_code == 400, r.text
    assert f"j.yaml: document 0 (Job train): {path}" in r.json()["detail"]
    assert api.call("ana", "GET", "/v1/jobs").json() == []  # nothing half applied


def test_the_api_refuses_the_same_fields(tmp_path: Path) -> None:
    api = Api(tmp_path)
    r = api.submit("ana", queue="vision", replicas=2)
    assert r.status_code == 400 and "spec.replicas:" in r.json()["detail"]
    r = api.submit("ana", queue="vision", gpus_per_node=0.25)
    assert r.status_code == 400 and "spec.gpus_per_node:" in r.json()["detail"]
    assert api.submit("ana", queue="vision", gpus_per_node=1).status_code == 201


def test_a_batch_of_submissions_is_all_or_nothing(tmp_path: Path) -> None:
    api = Api(tmp_path)
    ok = {"queue": "vision", "script": "true"}
    r = api.call("ana", "POST", "/v1/jobs/batch", json={"jobs": [ok] * 3})
    assert r.status_code == 201 and [len(x) for x in r.json()["ids"]] == [1, 1, 1]
    bad = {"queue": "nlp", "script": "true"}  # not ana's team's queue
    r = api.call("ana", "POST", "/v1/jobs/batch", json={"jobs": [ok, ok, bad]})
    assert r.status_code == 403 and r.json()["detail"].startswith("jobs[2]: ")
    assert len(api.call("ana", "GET", "/v1/jobs").json()) == 3  # nothing of the second batch


def test_an_array_tasks_environment_names_its_arrays_count_and_bounds() -> None:
    """SLURM_ARRAY_TASK_COUNT/MIN/MAX of an array with ids out of order, for a spec read
    back from the store (as the launcher reads it); and the allocation reads back."""
    from detente.api.jobspec import JobSpec, stored
    from detente.control import launch
    from detente.control.store.models import Job
    from detente.jobtools import alloc

    spec = stored(JobSpec(script="true", gpus_per_node=2, array=[7, 3, 5]).model_dump())
    job = Job(id=9, name="a", user="u", queue="default", nodes=["n1"], devices=[[4, 6]],
              attempt=1, array_job_id=8, array_task_id=5)  # fmt: skip
    env = launch.environment(job, spec, 0)
    got = [env[f"SLURM_ARRAY_TASK_{k}"] for k in ("ID", "COUNT", "MIN", "MAX")]
    assert got == ["5", "3", "3", "7"]
    assert alloc.from_env(env[alloc.ENV]) == [alloc.NodeShare("n1", 1, 1.0, (4, 6))]
    # The span is kept with the spec; a copy given another array computes its own.
    assert spec.model_copy(update={"array": [9]}).array_span == (1, 9, 9)


def test_an_arrays_tasks_are_the_workloads_the_one_conversion_gives_each(db_url: str) -> None:
    """`workloads.load` converts an array's spec once and copies it to every task: each
    copy equals what `to_workload` gives that task alone, its derived fields too. The
    tasks are rows of their own, numbered in order (SQLite and PostgreSQL)."""
    sessions = open_store(db_url)
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        users = [
            auth.authenticate(s, auth.create_user(s, n, t)) for n, t in (("a", "x"), ("b", "y"))
        ]
        config = workloads.cluster_and_config(s)[1]
        array = JobSpec(script="true", gpus_per_node=2, array=[0, 3, 7], time_limit=60)
        for user in users:
            ids = jobs.submit(s, user, array, config, time.time())
            tasks = {j.id: (j.array_job_id, j.array_task_id) for j in s.scalars(select(Job))}
            assert ids == sorted(set(ids)) and len(ids) == 3
            assert [tasks[i] for i in ids] == [(ids[0], 0), (ids[0], 3), (ids[0], 7)]
        jobs.submit(s, users[0], JobSpec(script="true", nodes=2, gpus_per_node=8), config, 5.0)
        prof = build("detente")
        _, queues, _ = workloads.load(s, prof)
        config = workloads.cluster_and_config(s)[1]
        loaded = {w.name: w for w in queues.active()}
        assert len(loaded) == 7
        for job in s.scalars(select(Job)):
            alone = workloads.workload(job, config, prof.default_grace)
            got = loaded[str(job.id)]
            assert got == alone
            assert (got.total, got.shape, got.pod_count) == (
                alone.total,
                alone.shape,
                alone.pod_count,
            )
