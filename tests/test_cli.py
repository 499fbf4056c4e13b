"""`detente plan` as a real process: output shapes, exit codes, the --now clock."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"
FILES = [str(EXAMPLES / f) for f in ("cluster.yaml", "queues.yaml", "jobs.yaml")]


def detente(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "detente", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def file_args(files: list[str]) -> list[str]:
    return [a for f in files for a in ("-f", f)]


def test_plan_json_shape_and_decisions() -> None:
    out = detente("plan", *file_args(FILES), "-o", "json", "--now", "60")
    assert out.returncode == 0, out.stderr
    wl = {w["name"]: w for w in json.loads(out.stdout)["workloads"]}
    assert set(wl["pretrain-a"]) == {"name", "state", "nodes", "start", "reason"}
    assert wl["pretrain-a"] == {
        "name": "pretrain-a", "state": "Admitted", "nodes": ["gpu-00", "gpu-01"],
        "start": 0.0, "reason": None,
    }  # fmt: skip
    b = wl["finetune-b"]
    assert b["state"] == "Admitted" and b["start"] == 60.0
    assert len({n[:-1] for n in b["nodes"]}) == 1  # one rack: gpu-0[4-7] share a prefix
    assert wl["too-wide"]["state"] == "Pending"
    assert "one rack can hold at most 4" in wl["too-wide"]["reason"]


def test_plan_table_lists_every_workload() -> None:
    out = detente("plan", *file_args(FILES))
    assert out.returncode == 0, out.stderr
    for name in ("pretrain-a", "finetune-b", "too-wide", "notebook"):
        assert name in out.stdout


def test_plan_bad_manifest_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        textwrap.dedent("""\
        apiVersion: detente.dev/v1
        kind: Job
        metadata: {name: j}
        spec: {nodes: zero}
        """)
    )
    out = detente("plan", "-f", str(bad))
    assert out.returncode == 2
    assert "bad.yaml: document 0 (Job j): spec.nodes" in out.stderr
    assert "'zero'" in out.stderr


def test_plan_k8s_profile_shows_partial_binding(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.yaml"
    docs = [
        f"apiVersion: detente.dev/v1\nkind: Job\nmetadata: {{name: {n}}}\n"
        "spec: {nodes: 12, resources: {nvidia.com/gpu: 8}}\n"
        for n in ("a", "b")
    ]
    jobs.write_text("---\n".join(docs))
    out = detente("plan", "-f", FILES[0], "-f", str(jobs), "--profile", "k8s", "-o", "json")
    assert out.returncode == 0, out.stderr
    wl = json.loads(out.stdout)["workloads"]
    partial = [w for w in wl if w["name"] in "ab"]
    assert all(w["state"] == "Pending" for w in partial)
    assert sum(len(w["nodes"]) for w in partial) == 16
    assert all("pods bound" in w["reason"] for w in partial)


def test_unknown_profile_is_a_usage_error() -> None:
    out = detente("plan", *file_args(FILES), "--profile", "nope")
    assert out.returncode == 2
    assert "unknown profile" in out.stderr


def test_plan_backfill_example() -> None:
    """4 nodes, a 2-node job with 1 h left: the 4-node head reserves at +1 h, a 30-min job
    starts now, a 2-h job waits and its reason names the reservation it would delay."""
    out = detente("plan", "-f", str(EXAMPLES / "backfill.yaml"), "-o", "json")
    assert out.returncode == 0, out.stderr
    wl = {w["name"]: w for w in json.loads(out.stdout)["workloads"]}
    assert wl["head"]["state"] == "Pending"
    assert wl["head"]["reservation"]["start"] == 3600.0
    assert len(wl["head"]["reservation"]["nodes"]) == 4
    assert wl["short"]["state"] == "Admitted" and wl["short"]["start"] == 0.0
    assert wl["long"]["state"] == "Pending"
    assert "would delay the reservation of head (from t=3600)" in wl["long"]["reason"]


def test_plan_json_shows_priority_factors_of_pending_work() -> None:
    out = detente("plan", *file_args(FILES), "-o", "json", "--now", "86400")
    wl = {w["name"]: w for w in json.loads(out.stdout)["workloads"]}
    prio = wl["too-wide"]["priority"]
    assert set(prio["factors"]) == {"age", "size", "fairshare", "qos", "work"}
    assert prio["factors"]["age"] > 0  # a day of waiting counts
    assert prio["total"] == round(sum(prio["factors"].values()), 3)
    assert "priority" not in wl["pretrain-a"]  # running work has no pending priority


def test_plan_preemption_example() -> None:
    out = detente("plan", "-f", str(EXAMPLES / "preemption.yaml"), "-o", "json")
    assert out.returncode == 0, out.stderr
    wl = {w["name"]: w for w in json.loads(out.stdout)["workloads"]}
    assert wl["deadline"]["state"] == "Admitted"
    assert wl["deadline"]["start"] == 120.0  # after the victim's 2-minute checkpoint grace
    assert wl["scavenger"]["state"] == "Pending"
    assert "preempted by deadline" in wl["scavenger"]["reason"]


QUOTA_NOT_PLACEMENT = """\
apiVersion: detente.dev/v1
kind: NodePool
metadata: {name: n}
spec: {count: 2, namePattern: "n{i}", capacity: {nvidia.com/gpu: 8, cpu: 64, memory: 512Gi}}
---
apiVersion: detente.dev/v1
kind: Job
metadata: {name: half-a}
spec: {replicas: 1, resources: {nvidia.com/gpu: 4}}
status: {nodes: [n0], startTime: 0}
---
apiVersion: detente.dev/v1
kind: Job
metadata: {name: half-b}
spec: {replicas: 1, resources: {nvidia.com/gpu: 4}}
status: {nodes: [n1], startTime: 0}
---
apiVersion: detente.dev/v1
kind: Job
metadata: {name: whole}
spec: {replicas: 1, resources: {nvidia.com/gpu: 8}}
"""


def test_plan_kueue_profile_admits_on_quota_what_cannot_be_placed(tmp_path: Path) -> None:
    """kueue#4329: 8 GPUs free as 4 + 4 admit an 8-GPU pod on quota; it never binds.
    detente checks placement at admission and keeps it pending with the reason."""
    f = tmp_path / "m.yaml"
    f.write_text(QUOTA_NOT_PLACEMENT)
    kueue = json.loads(detente("plan", "-f", str(f), "--profile", "kueue", "-o", "json").stdout)
    ours = json.loads(detente("plan", "-f", str(f), "-o", "json").stdout)
    k = {w["name"]: w for w in kueue["workloads"]}["whole"]
    d = {w["name"]: w for w in ours["workloads"]}["whole"]
    assert k["state"] == "Pending" and "quota reserved in default" in k["reason"]
    assert d["state"] == "Pending" and "quota reserved" not in d["reason"]
