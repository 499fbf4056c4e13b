"""Slurm's batch semantics on the live system: the script runs once on the first node,
the other nodes are held for its ``srun`` steps, and ``scontrol`` answers inside the
job. Real processes, real TCP rendezvous, the real CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from detente.testing.live import Live

#: PyTorch's multi-node Slurm example, as people write it (head node's address by srun,
#: then one srun over every task), with a worker that rendezvouses over TCP.
TORCH_STYLE = """#!/bin/bash
#SBATCH --job-name=multinode
#SBATCH --nodes=2
#SBATCH --ntasks=4
#SBATCH --gpus-per-task=2
#SBATCH --time=00:05:00

nodes=( $( scontrol show hostnames $SLURM_JOB_NODELIST ) )
nodes_array=($nodes)
head_node=${nodes_array[0]}
head_node_ip=$(srun --nodes=1 --ntasks=1 -w "$head_node" hostname --ip-address)
echo "batch once on $(hostname) head=$head_node ip=$head_node_ip tasks=$SLURM_NTASKS \
per_node=$SLURM_TASKS_PER_NODE"
export HEAD_IP=$head_node_ip
srun python3 worker.py
"""

WORKER = """import json, os, socket, sys, time
rank, world = int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
head = os.environ["HEAD_IP"]
port = 20000 + int(os.environ["SLURM_JOB_ID"]) % 20000
me = {k: os.environ[k] for k in ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_NODEID",
      "SLURMD_NODENAME", "CUDA_VISIBLE_DEVICES", "SLURM_STEP_ID")}
if rank == 0:
    srv = socket.create_server((head, port))
    seen = [me]
    for _ in range(world - 1):
        conn, _ = srv.accept()
        seen.append(json.loads(conn.makefile().readline()))
        conn.close()
    print("RENDEZVOUS " + json.dumps(sorted(seen, key=lambda m: int(m["SLURM_PROCID"]))))
else:
    for _ in range(200):
        try:
            c = socket.create_connection((head, port))
            break
        except OSError:
            time.sleep(0.05)
    c.sendall((json.dumps(me) + "\\n").encode())
    c.close()
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.home.mkdir()
    lv.up("--nodes", "4x8")
    yield lv
    lv.down()


def _done(live: Live, jid: int, timeout: float = 60) -> dict[str, object]:
    jobs = live.wait(lambda js: js[jid]["state"] not in ("PENDING", "RUNNING", "LAUNCHING",
                                                         "STOPPING"), timeout)  # fmt: skip
    return jobs[jid]


def test_pytorch_multinode_pattern_runs_unchanged(live: Live, tmp_path: Path) -> None:
    (tmp_path / "train.sh").write_text(TORCH_STYLE)
    (tmp_path / "worker.py").write_text(WORKER)
    jid = int(live.cli("sbatch", "--parsable", "train.sh", cwd=tmp_path).stdout.strip())
    job = _done(live, jid)
    out = (tmp_path / f"slurm-{jid}.out").read_text()
    assert job["state"] == "COMPLETED", (job, out)
    assert out.count("batch once on") == 1, out  # the batch script's own output, once
    assert re.search(r"tasks=4 per_node=2\(x2\)", out), out
    seen = json.loads(out.split("RENDEZVOUS ", 1)[1].splitlines()[0])
    assert [m["SLURM_PROCID"] for m in seen] == ["0", "1", "2", "3"]
    assert [m["SLURM_LOCALID"] for m in seen] == ["0", "1", "0", "1"]
    assert [m["SLURM_NODEID"] for m in seen] == ["0", "0", "1", "1"]
    assert len({m["SLURMD_NODENAME"] for m in seen}) == 2
    gpus = [(m["SLURMD_NODENAME"], m["CUDA_VISIBLE_DEVICES"]) for m in seen]
    assert all(len(g.split(",")) == 2 for _, g in gpus)  # two GPUs each
    assert len(set(gpus)) == 4  # and no two tasks on a node share one
    assert {m["SLURM_STEP_ID"] for m in seen} == {"1"}  # step 0 was the head's address


def test_steps_show_in_history_with_their_exit_codes(live: Live, tmp_path: Path) -> None:
    script = ("#!/bin/bash\n#SBATCH -N 2 --ntasks-per-node=2\n"
              "srun -l hostname\nsrun -N1 -n1 false\nsrun -n 3 true\necho done\n")  # fmt: skip
    (tmp_path / "s.sh").write_text(script)
    jid = int(live.cli("sbatch", "--parsable", "s.sh", cwd=tmp_path).stdout.strip())
    job = _done(live, jid)
    out = (tmp_path / f"slurm-{jid}.out").read_text()
    assert job["state"] == "COMPLETED" and job["exit_code"] == 0, (job, out)
    assert sorted(re.findall(r"^(\d): ", out, re.M)) == ["0", "1", "2", "3"], out
    assert "srun: error: node0: task 0: Exited with exit code 1" in out, out
    hist = live.cli("history").stdout
    rows = {ln.split()[0]: ln.split() for ln in hist.splitlines()[1:] if ln.strip()}
    assert rows[f"{jid}.0"][-2:] == ["COMPLETED", "0:0"], hist
    assert rows[f"{jid}.1"][-2:] == ["FAILED", "1:0"], hist
    assert rows[f"{jid}.2"][-2:] == ["COMPLETED", "0:0"], hist


def test_the_job_ends_with_its_batch_script_and_a_failed_step_fails_it(
    live: Live, tmp_path: Path
) -> None:
    ok = live.cli("sbatch", "--parsable", "-N", "3", "--wrap", "srun -N3 true",
                  cwd=tmp_path).stdout  # fmt: skip
    bad = live.cli("sbatch", "--parsable", "-N", "2", "--wrap", "srun -K -n 2 sh -c 'exit 7'",
                   cwd=tmp_path).stdout  # fmt: skip
    a, b = _done(live, int(ok)), _done(live, int(bad))
    assert (a["state"], a["exit_code"]) == ("COMPLETED", 0)
    assert (b["state"], b["exit_code"]) == ("FAILED", 7)


def test_scontrol_inside_a_job(live: Live, tmp_path: Path) -> None:
    script = ("#!/bin/bash\n#SBATCH -N 2 -J sc\nscontrol show hostnames\n"
              "scontrol show hostnames 'n[08-10],x'\nscontrol show job $SLURM_JOB_ID\n"
              "scontrol frobnicate || echo refused=$?\n")  # fmt: skip
    (tmp_path / "sc.sh").write_text(script)
    jid = int(live.cli("sbatch", "--parsable", "sc.sh", cwd=tmp_path).stdout.strip())
    job = _done(live, jid)
    out = (tmp_path / f"slurm-{jid}.out").read_text()
    assert job["state"] == "COMPLETED", (job, out)
    lines = out.splitlines()
    assert lines[:2] == ["node-0", "node-1"] or lines[:2] == sorted(lines[:2]), out
    assert lines[2:6] == ["n08", "n09", "n10", "x"], out
    assert f"JobId={jid} JobName=sc" in out and "JobState=RUNNING" in out, out
    assert "NumNodes=2" in out and "refused=1" in out, out
    assert "scontrol: error: detente's scontrol supports" in out, out


def test_a_job_requeues_itself_with_scontrol(live: Live, tmp_path: Path) -> None:
    script = ("#!/bin/bash\necho run $SLURM_RESTART_COUNT\n"
              "if [ $SLURM_RESTART_COUNT -eq 0 ]; then scontrol requeue $SLURM_JOB_ID; "
              "sleep 30; fi\n")  # fmt: skip
    (tmp_path / "rq.sh").write_text(script)
    jid = int(live.cli("sbatch", "--parsable", "rq.sh", cwd=tmp_path).stdout.strip())
    job = _done(live, jid, 90)
    out = (tmp_path / f"slurm-{jid}.out").read_text()
    assert job["state"] == "COMPLETED" and job["attempt"] == 2, (job, out)
    assert out.splitlines() == ["run 0", "run 1"], out  # a requeued run appends


def test_detente_srun_allocates_runs_and_streams(live: Live, tmp_path: Path) -> None:
    ok = live.cli("srun", "-N", "2", "--ntasks-per-node=2", "-l", "printenv", "SLURM_PROCID",
                  cwd=tmp_path)  # fmt: skip
    assert sorted(ok.stdout.splitlines()) == ["0: 0", "1: 1", "2: 2", "3: 3"], ok.stdout
    bad = live.cli("srun", "-n", "1", "sh", "-c", "echo out; exit 3", cwd=tmp_path, check=False)
    assert bad.returncode == 3 and bad.stdout.splitlines()[0] == "out", (bad.stdout, bad.stderr)
    assert "srun: error: node0: task 0: Exited with exit code 3" in bad.stdout + bad.stderr
    never = live.cli("srun", "-N", "9", "true", cwd=tmp_path, check=False)
    assert never.returncode != 0 and "node configuration is not available" in never.stderr
