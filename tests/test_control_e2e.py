"""End to end: `detente up --nodes 4x8`, real processes, the real CLI and HTTP API."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from detente.testing.live import Live

TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up("--nodes", "4x8")
    yield lv
    lv.down()


def _write(d: Path, name: str, text: str) -> Path:
    p = d / name
    p.write_text(text)
    return p


TRAIN = """#!/bin/bash
#SBATCH --job-name=train --nodes=2 --gres=gpu:8 --ntasks-per-node=2 --time=5:00
echo "batch on $SLURMD_NODENAME"
srun bash -c 'echo "RANK=$RANK WORLD_SIZE=$WORLD_SIZE LOCAL_RANK=$LOCAL_RANK" \
  "NODE_RANK=$NODE_RANK CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES SLURM_PROCID=$SLURM_PROCID" \
  "SLURM_NNODES=$SLURM_NNODES SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST MASTER_ADDR=$MASTER_ADDR"'
sleep 1
"""
ARRAY = """#!/bin/bash
#SBATCH --array=0-3%2 --output=arr-%A_%a.out --gres=gpu:1
echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID count $SLURM_ARRAY_TASK_COUNT"
sleep 0.5
"""
AFTER = """#!/bin/bash
#SBATCH --job-name=eval --output=eval.out
echo "eval after $1"
"""


def test_gang_array_and_dependent_job_complete_in_order(live: Live, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    train = int(
        live.cli("submit", "--parsable", str(_write(work, "train.sh", TRAIN)), cwd=work).stdout
    )
    live.cli("sbatch", str(_write(work, "array.sh", ARRAY)), cwd=work)
    dep = f"--dependency=afterok:{train}"
    live.cli("submit", dep, str(_write(work, "eval.sh", AFTER)), "ckpt-7", cwd=work)
    jobs = live.wait(lambda js: len(js) == 6 and all(j["state"] in TERMINAL for j in js.values()))
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}

    # The batch script once, on the first node; its srun step on every task.
    out = (work / f"slurm-{train}.out").read_text().splitlines()
    assert [ln for ln in out if ln.startswith("batch on")] == ["batch on node0"]
    lines = sorted(ln for ln in out if ln.startswith("RANK="))
    assert len(lines) == 4
    for rank, line in enumerate(lines):
        f = dict(kv.split("=", 1) for kv in line.split())
        assert f["RANK"] == str(rank) and f["WORLD_SIZE"] == "4"
        assert f["LOCAL_RANK"] == str(rank % 2) and f["NODE_RANK"] == str(rank // 2)
        assert f["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7" and f["SLURM_PROCID"] == str(rank)
        assert f["SLURM_NNODES"] == "2" and re.fullmatch(r"node\[\d-\d\]", f["SLURM_JOB_NODELIST"])
        assert f["MASTER_ADDR"] == "127.0.0.1"

    logs = live.cli("logs", str(train)).stdout.splitlines()
    assert sorted(ln.split()[0] for ln in logs if ln.startswith("RANK=")) == [
        "RANK=0", "RANK=1", "RANK=2", "RANK=3"]  # fmt: skip
    assert live.cli("logs", str(train), "--pod", "1").stdout == ""  # it held node1 only

    arr = sorted((j for j in jobs.values() if j["array_task_id"] is not None),
                 key=lambda j: j["array_task_id"])  # fmt: skip
    master = arr[0]["id"]
    for j in arr:
        text = (work / f"arr-{master}_{j['array_task_id']}.out").read_text()
        assert text.strip() == f"task {j['array_task_id']} of {master} count 4"
    # %2: never more than two tasks at once.
    for j in arr:
        overlap = [k for k in arr if k["start_time"] < j["start_time"] < k["end_time"]]
        assert len(overlap) <= 1

    ev = next(j for j in jobs.values() if j["name"] == "eval")
    assert ev["start_time"] >= jobs[train]["end_time"]
    assert (work / "eval.out").read_text() == "eval after ckpt-7\n"

    hist = json.loads(live.cli("history", "-o", "json").stdout)
    assert {h["id"] for h in hist} == set(jobs)
    t = next(h for h in hist if h["id"] == train)
    assert t["gpus"] == 16 and t["gpu_hours"] > 0 and t["exit_code"] == 0
    table = live.cli("history").stdout
    assert "JOBID" in table and "GPU-H" in table and f"{master}_3" in table


def test_gang_whose_pod_fails_stops_whole(live: Live, tmp_path: Path) -> None:
    # A task failing on the second node: srun -K stops the step, the batch script ends.
    script = (
        "#!/bin/bash\n#SBATCH -N 2 --gres=gpu:4\n"
        "srun -K bash -c 'if [ $SLURM_NODEID = 1 ]; then exit 3; fi; sleep 60'\n"
    )
    live.cli("submit", str(_write(tmp_path, "f.sh", script)), cwd=tmp_path)
    jobs = live.wait(lambda js: all(j["state"] in TERMINAL for j in js.values()), timeout=30)
    (j,) = jobs.values()
    assert j["state"] == "FAILED" and j["exit_code"] == 3 and j["elapsed"] < 30


def test_time_limit_and_cancel(live: Live, tmp_path: Path) -> None:
    slow = "#!/bin/bash\n#SBATCH --time=0:02 --gres=gpu:1\nsleep 60\n"  # 2 s
    live.cli("submit", str(_write(tmp_path, "t.sh", slow)), cwd=tmp_path)
    live.cli("submit", str(_write(tmp_path, "c.sh", "#!/bin/bash\nsleep 60\n")), cwd=tmp_path)
    live.wait(lambda js: any(j["state"] == "RUNNING" and j["name"] == "c.sh" for j in js.values()))
    cancel_id = next(j["id"] for j in live.jobs().values() if j["name"] == "c.sh")
    assert "STOPPING" in live.cli("cancel", str(cancel_id)).stdout
    jobs = live.wait(lambda js: all(j["state"] in TERMINAL for j in js.values()), timeout=40)
    by_name = {j["name"]: j for j in jobs.values()}
    assert by_name["t.sh"]["state"] == "TIMEOUT" and by_name["c.sh"]["state"] == "CANCELLED"
    assert 2 <= by_name["t.sh"]["elapsed"] < 20


def test_tokens_users_and_views(live: Live, tmp_path: Path) -> None:
    assert live.api("GET", "/v1/jobs", token="wrong").status_code == 401
    ana = live.cli("token", "ana", "--team", "default").stdout.strip()
    bo = live.cli("token", "bo", "--team", "default").stdout.strip()
    assert (
        live.api("POST", "/v1/users", token=ana, json={"name": "x", "team": "t"}).status_code == 403
    )
    huge = _write(tmp_path, "h.sh", "#!/bin/bash\n#SBATCH -N 9 --gres=gpu:8\ntrue\n")
    rejected = live.cli("submit", str(huge), cwd=tmp_path, token=ana, check=False)
    assert rejected.returncode != 0 and "node configuration is not available" in rejected.stderr
    hog = _write(tmp_path, "hog.sh", "#!/bin/bash\n#SBATCH -N 4 --gres=gpu:8\nsleep 60\n")
    live.cli("submit", str(hog), cwd=tmp_path, token=ana)
    one = _write(tmp_path, "one.sh", "#!/bin/bash\n#SBATCH --gres=gpu:1\ntrue\n")
    live.cli("submit", str(one), cwd=tmp_path, token=ana)
    mine = json.loads(live.cli("queue", "-o", "json", token=ana).stdout)
    assert [j["user"] for j in mine] == ["ana", "ana"]
    assert json.loads(live.cli("queue", "-o", "json", token=bo).stdout) == []
    jid = mine[1]["id"]
    assert live.cli("cancel", str(jid), token=bo, check=False).returncode != 0
    live.wait(lambda js: js[mine[0]["id"]]["state"] == "RUNNING" and js[jid]["reason"])
    pending = json.loads(live.cli("queue", "-o", "json", "-t", "pending", "-u", "ana").stdout)
    assert [j["name"] for j in pending] == ["one.sh"]
    queue = live.cli("queue", token=ana).stdout
    assert "NODELIST(REASON)" in queue and "node[0-3]" in queue
    desc = json.loads(live.cli("describe", str(jid), "-o", "json").stdout)
    assert desc["state"] == "PENDING" and "GPU" in desc["reason"], desc["reason"]
    assert desc["events"][0]["kind"] == "Submitted" and "total" in desc["priority"]
    assert "CANCELLED" in live.cli("cancel", str(jid), token=ana).stdout
    assert "STOPPING" in live.cli("cancel", str(mine[0]["id"])).stdout
    nodes = json.loads(live.cli("nodes", "-o", "json").stdout)
    assert len(nodes) == 4 and all(n["gpus"] == 8 for n in nodes)
    metrics = live.api("GET", "/metrics").text
    assert "detente_queue_pending" in metrics and "detente_cycle_seconds" in metrics
    assert "process_resident_memory_bytes" in metrics and "python_gc_collections" in metrics
    # The startup heap is out of the collector's full passes (`daemon.freeze_startup_heap`).
    frozen = re.search(r"^detente_gc_frozen_objects (\S+)$", metrics, re.M)
    assert frozen is not None and float(frozen.group(1)) > 50_000, frozen
    assert live.api("GET", "/openapi.json").status_code == 200
    assert ana not in (live.home / "detente.log").read_text()
    assert live.token not in (live.home / "detente.log").read_text()
    assert oct((live.home / "admin.token").stat().st_mode & 0o777) == "0o600"


QUEUES_AND_JOBS = """apiVersion: kueue.x-k8s.io/v1beta1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: lab}
spec:
  resourceGroups:
  - coveredResources: ["nvidia.com/gpu", "cpu", "memory"]
    flavors:
    - name: default
      resources:
      - {name: nvidia.com/gpu, nominalQuota: 32}
      - {name: cpu, nominalQuota: 1000}
      - {name: memory, nominalQuota: 10Ti}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {name: vision, namespace: default}
spec: {clusterQueue: lab}
---
apiVersion: detente.dev/v1
kind: Job
metadata: {name: small}
spec:
  queue: vision
  nodes: 2
  resources: {nvidia.com/gpu: 8}
  command: ["bash", "-c", "echo small on $SLURM_JOB_NODELIST; sleep 2"]
---
apiVersion: detente.dev/v1
kind: Job
metadata: {name: whole}
spec:
  queue: vision
  nodes: 4
  resources: {nvidia.com/gpu: 8}
  command: "echo whole"
"""


def test_apply_plans_asks_and_submits(live: Live, tmp_path: Path) -> None:
    f = _write(tmp_path, "lab.yaml", QUEUES_AND_JOBS)
    declined = live.cli("apply", "-f", str(f), stdin="n\n", check=False)
    assert declined.returncode != 0
    assert "ClusterQueue/lab created" in declined.stdout
    assert "job small will be submitted and start now" in declined.stdout
    assert "job whole will be submitted\n" in declined.stdout  # waits for small's nodes
    assert live.api("GET", "/v1/jobs", params={"all": True}).json() == []  # nothing applied
    bad = _write(tmp_path, "bad.yaml", QUEUES_AND_JOBS.replace("nodes: 4", "nodes: -4"))
    refused = live.cli("apply", "-y", "-f", str(bad), check=False)
    assert refused.returncode != 0
    assert "bad.yaml: document 4 (Job whole): spec.nodes" in refused.stderr
    out = live.cli("apply", "-y", "-f", str(f)).stdout
    assert "submitted jobs [1, 2]" in out
    jobs = live.wait(
        lambda js: len(js) == 2 and all(j["state"] == "COMPLETED" for j in js.values())
    )
    assert jobs[2]["start_time"] >= jobs[1]["end_time"] and jobs[1]["queue"] == "vision"
    assert live.cli("logs", "1").stdout.startswith("small on node[")
    again = live.cli("apply", "-y", "-f", str(f)).stdout
    assert "ClusterQueue/lab unchanged" in again
    more = _write(tmp_path, "more.yaml", QUEUES_AND_JOBS.split("---")[1].replace("32", "24"))
    changed = live.cli("apply", "-y", "-f", str(more)).stdout
    assert "ClusterQueue/lab changed" in changed
    assert "spec.resourceGroups[0].flavors[0].resources[0].nominalQuota: 32 → 24" in changed
    refused = live.cli("delete", "-y", "-f", str(f), check=False)  # it holds Job documents
    assert (
        refused.returncode != 0 and "only queue objects and services are deleted" in refused.stderr
    )
    queues = _write(tmp_path, "queues.yaml", "---".join(QUEUES_AND_JOBS.split("---")[:3]))
    # The re-apply's 2 jobs (the first may have ended already: its end is not waited for).
    held = live.cli("delete", "-y", "-f", str(queues), check=False)
    assert held.returncode != 0 and re.search(r"LocalQueue vision \([12] job\(s\)\)", held.stderr)
    deleted = live.cli("delete", "-y", "--force", "-f", str(queues)).stdout
    assert "LocalQueue/vision deleted" in deleted and "ClusterQueue/lab deleted" in deleted


def test_up_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    import sqlalchemy as sa

    eng = sa.create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("DROP DATABASE IF EXISTS live"))
        c.execute(sa.text("CREATE DATABASE live"))
    eng.dispose()
    lv = Live(tmp_path / "home", db=pg_url.rsplit("/", 1)[0] + "/live")
    lv.home.mkdir()
    lv.up("--nodes", "2x8")
    try:
        script = _write(tmp_path, "pg.sh", "#!/bin/bash\n#SBATCH -N 2 --gres=gpu:8\necho $RANK\n")
        lv.cli("submit", str(script), cwd=tmp_path)
        jobs = lv.wait(lambda js: len(js) == 1 and js[1]["state"] == "COMPLETED")
    finally:
        lv.down()
    assert jobs[1]["nodelist"] == "node[0-1]"
    assert not (lv.home / "detente.db").exists()  # the store was PostgreSQL


def test_a_vanished_pod_fails_its_gang_as_node_fail(live: Live, tmp_path: Path) -> None:
    import os
    import signal

    script = _write(tmp_path, "n.sh", "#!/bin/bash\n#SBATCH -N 2 --gres=gpu:8\nsleep 60\n")
    live.cli("submit", str(script), cwd=tmp_path)
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    pods = live.api("GET", "/v1/jobs/1").json()["placement"]
    os.killpg(pods[1]["pid"], signal.SIGKILL)  # its "node" is gone: no exit file
    jobs = live.wait(lambda js: js[1]["state"] in TERMINAL, timeout=30)
    assert jobs[1]["state"] == "NODE_FAIL"
    follow = live.cli("logs", "-f", "1")
    assert follow.returncode == 0 and follow.stdout == ""


RENDEZVOUS = """#!/bin/bash
#SBATCH -N 2 --ntasks-per-node=2 --gres=gpu:1 --output=rdv.out --time=1:00
srun python3 - <<'PY'
# What torch.distributed's env:// rendezvous does: rank 0 listens on MASTER_ADDR:PORT,
# every other rank connects and says who it is.
import os, socket, time
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
if rank == 0:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen()
    print("rendezvous", sorted(int(s.accept()[0].recv(16)) for _ in range(world - 1)))
else:
    for _ in range(200):
        try:
            socket.create_connection((addr, port)).sendall(str(rank).encode())
            break
        except OSError:
            time.sleep(0.05)
PY
"""


def test_ranks_rendezvous_over_master_addr_and_port(live: Live, tmp_path: Path) -> None:
    live.cli("submit", str(_write(tmp_path, "rdv.sh", RENDEZVOUS)), cwd=tmp_path)
    jobs = live.wait(lambda js: js[1]["state"] in TERMINAL, timeout=60)
    assert jobs[1]["state"] == "COMPLETED"
    assert (tmp_path / "rdv.out").read_text() == "rendezvous [1, 2, 3]\n"


def test_drain_down_and_resume_nodes(live: Live, tmp_path: Path) -> None:
    for n in ("node0", "node1", "node2"):
        assert "drain" in live.cli("drain", n, "--reason", "bad fan").stdout
    ana = live.cli("token", "ana", "--team", "default").stdout.strip()
    refused = live.cli("drain", "node3", token=ana, check=False)
    assert refused.returncode != 0 and "only the admin" in refused.stderr
    assert live.cli("drain", "node9", check=False).returncode != 0
    gang = _write(tmp_path, "g.sh", "#!/bin/bash\n#SBATCH -N 2 --gres=gpu:8\nsleep 30\n")
    live.cli("submit", str(gang), cwd=tmp_path)
    jobs = live.wait(lambda js: bool(js[1]["reason"]))
    assert jobs[1]["state"] == "PENDING"
    nodes = {n["name"]: n for n in json.loads(live.cli("nodes", "-o", "json").stdout)}
    assert nodes["node0"]["state"] == "drain" and nodes["node0"]["reason"] == "bad fan"
    live.cli("resume", "node0")
    jobs = live.wait(lambda js: js[1]["state"] == "RUNNING")
    assert jobs[1]["nodelist"] == "node[0,3]"
    requeue = _write(tmp_path, "r.sh", "#!/bin/bash\n#SBATCH --requeue --gres=gpu:8\nsleep 30\n")
    live.cli("resume", "node1")
    live.cli("submit", str(requeue), cwd=tmp_path)
    jobs = live.wait(lambda js: js[2]["state"] == "RUNNING")
    assert jobs[2]["nodelist"] == "node1"
    live.cli("drain", "node3", "--down")
    jobs = live.wait(lambda js: js[1]["state"] in TERMINAL, timeout=30)
    assert jobs[1]["state"] == "NODE_FAIL"
    events = [e["kind"] for e in live.api("GET", "/v1/jobs/1").json()["events"]]
    assert "NodeDown" in events
    # A --requeue job whose node goes down runs again elsewhere (Slurm's JobRequeue).
    live.cli("drain", "node1", "--down")
    jobs = live.wait(lambda js: js[2]["attempt"] == 2 and js[2]["state"] == "RUNNING", 30)
    assert jobs[2]["nodelist"] == "node0"  # node1 and node3 down, node2 drained


def test_default_node_is_this_machine(tmp_path: Path) -> None:
    import os

    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up()
    try:
        (node,) = json.loads(lv.cli("nodes", "-o", "json").stdout)
        assert node["cpus"] == os.cpu_count()
        cpu_job = _write(
            tmp_path, "c.sh", "#!/bin/bash\n#SBATCH --cpus-per-task=1\necho $SLURMD_NODENAME\n"
        )
        lv.cli("submit", str(cpu_job), cwd=tmp_path)
        jobs = lv.wait(lambda js: js[1]["state"] in TERMINAL)
        assert jobs[1]["state"] == "COMPLETED" and jobs[1]["nodelist"] == node["name"]
        too_big = _write(
            tmp_path, "b.sh", f"#!/bin/bash\n#SBATCH --gres=gpu:{node['gpus'] + 1}\ntrue\n"
        )
        assert lv.cli("submit", str(too_big), cwd=tmp_path, check=False).returncode != 0
    finally:
        lv.down()


def test_hold_and_release(live: Live, tmp_path: Path) -> None:
    block = _write(tmp_path, "b.sh", "#!/bin/bash\n#SBATCH -N 4 --gres=gpu:8\nsleep 3\n")
    job = _write(tmp_path, "j.sh", "#!/bin/bash\n#SBATCH --gres=gpu:1\ntrue\n")
    live.cli("submit", str(block), cwd=tmp_path)
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    live.cli("submit", str(job), cwd=tmp_path)
    assert "2: held" in live.cli("hold", "2").stdout
    jobs = live.wait(lambda js: js[1]["state"] == "COMPLETED" and js[2]["reason"] == "JobHeldUser")
    assert jobs[2]["state"] == "PENDING"
    live.cli("release", "2")
    jobs = live.wait(lambda js: js[2]["state"] == "COMPLETED")
    assert jobs[2]["start_time"] > jobs[1]["end_time"]
    # sbatch -H: submitted held on an idle cluster, started once released.
    live.cli("submit", "-H", str(job), cwd=tmp_path)
    jobs = live.wait(lambda js: js[3]["reason"] == "JobHeldUser")
    assert jobs[3]["state"] == "PENDING"
    live.cli("release", "3")
    live.wait(lambda js: js[3]["state"] == "COMPLETED")


BATCH = """apiVersion: batch/v1
kind: Job
metadata:
  name: kjob
  labels: {kueue.x-k8s.io/queue-name: default}
spec:
  parallelism: 2
  template:
    spec:
      containers:
      - name: main
        image: ignored:1
        command: [bash, -c]
        args: ["echo $GREETING rank $RANK of $WORLD_SIZE"]
        env: [{name: GREETING, value: hi}]
        resources: {limits: {nvidia.com/gpu: 2}}
"""
DETENTE_JOB = """apiVersion: detente.dev/v1
kind: Job
metadata: {name: NAME}
spec:
  queue: default
  nodes: 2
  resources: {nvidia.com/gpu: 8}
  command: "echo $SLURM_RESTART_COUNT"
"""


def test_a_kueue_batch_job_is_planned_and_runs_live(live: Live, tmp_path: Path) -> None:
    f = _write(tmp_path, "kjob.yaml", BATCH)
    out = live.cli("apply", "-y", "-f", str(f)).stdout
    assert "job kjob will be submitted and start now" in out
    jobs = live.wait(lambda js: len(js) == 1 and js[1]["state"] == "COMPLETED")
    # Kueue admits the Job's pods as one gang that may share a node: both 2-GPU pods
    # pack onto one 8-GPU node, as `plan` placed them.
    assert (jobs[1]["name"], jobs[1]["pods"], jobs[1]["nodes"]) == ("kjob", 2, 1)
    logs = live.cli("logs", "1").stdout.splitlines()
    assert sorted(logs) == ["hi rank 0 of 2", "hi rank 1 of 2"]


def test_apply_honours_job_fields_or_refuses_them(live: Live, tmp_path: Path) -> None:
    spec = DETENTE_JOB.replace("NAME", "careful") + (
        "  preemptible: true\n  checkpointGrace: 45s\n"
        "  topology: {required: topology.detente.dev/rack}\n"
    )
    live.cli("apply", "-y", "-f", str(_write(tmp_path, "ok.yaml", spec)))
    stored = live.api("GET", "/v1/jobs/1").json()["spec"]
    assert stored["requeue"] is True and stored["checkpoint_grace"] == 45
    assert stored["topology"] == {"mode": "required", "level": "topology.detente.dev/rack"}
    for extra, field in (("  submitTime: 100\n", "spec.submitTime"),):
        bad = _write(tmp_path, "bad.yaml", DETENTE_JOB.replace("NAME", "x") + extra)
        refused = live.cli("apply", "-y", "-f", str(bad), check=False)
        assert refused.returncode != 0 and field in refused.stderr
    replicas = DETENTE_JOB.replace("NAME", "r").replace("nodes: 2", "replicas: 2")
    refused = live.cli("apply", "-y", "-f", str(_write(tmp_path, "r.yaml", replicas)), check=False)
    assert refused.returncode != 0 and "independent replicas do not run live" in refused.stderr
    # 4 nodes in one rack of 8: a 9-node rack-bound gang could never run.
    never = DETENTE_JOB.replace("NAME", "big").replace("nodes: 2", "nodes: 9") + (
        "  topology: {required: topology.detente.dev/rack}\n"
    )
    refused = live.cli("apply", "-y", "-f", str(_write(tmp_path, "n.yaml", never)), check=False)
    assert refused.returncode != 0 and "Requested node configuration" in refused.stderr
    nolevel = spec.replace("careful", "b").replace("detente.dev/rack", "detente.dev/block")
    refused = live.cli("apply", "-y", "-f", str(_write(tmp_path, "l.yaml", nolevel)), check=False)
    assert refused.returncode != 0 and "no such topology level" in refused.stderr
