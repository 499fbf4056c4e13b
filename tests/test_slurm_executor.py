"""The Slurm executor against a real Slurm 22.05 (scripts/slurm: 3 nodes × 8 GPUs on
loopback): `detente up --executor slurm` schedules the partition's nodes and every
job runs as one Slurm job pinned to the nodes detente chose. Named cases: a gang, an
array, a dependency, a cancel, a time limit, a preemption with its signal, a node
taken down mid-run (requeued elsewhere) and drained, detente restarted mid-run (jobs
re-adopted, none run twice), a service replica replaced after its Slurm job is
cancelled, a service scaled up by load in Slurm jobs, cohort borrowing with reclaim,
and slurmctld stopped mid-run. Skipped, with the reason, only where
Slurm cannot run (no root, no Debian packages)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from detente.api.hostlist import expand
from detente.conformance.systems import SlurmUnavailable, local_slurm
from detente.executors.slurm_jobs import SlurmJob, parse_jobs
from detente.testing.live import Live
from test_services_live import service, steady_load
from test_services_pool import BORROWER, OWN, SERVICE  # the same pool, here on Slurm

SERVE = Path(__file__).resolve().parent.parent / "examples" / "serve"


class Cluster:
    def __init__(self, env: dict[str, str], d: Path) -> None:
        self.env, self.d = env, d

    def stop_controller(self) -> None:
        """slurmctld stopped, as for an upgrade (SIGTERM: it saves its state; SIGKILL
        loses what it had not saved, and a restarted one reuses job ids that still run,
        which is Slurm's problem, not detente's). Its jobs run on in their slurmd."""
        pid = int((self.d / "run" / "slurmctld.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        while Path(f"/proc/{pid}").exists():
            time.sleep(0.05)

    def start_controller(self) -> None:
        """slurmctld again, recovering its state (jobs and nodes)."""
        conf = self.env["SLURM_CONF"]
        subprocess.run([str(self.d / "bin" / "slurmctld"), "-f", conf, "-i"], env=self.env,
                       check=True)  # fmt: skip

    def run(self, *cmd: str) -> str:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, check=True,
                              timeout=60).stdout  # fmt: skip

    def jobs(self, name: str | None = None) -> list[SlurmJob]:
        """Slurm's jobs (of job name ``name``), oldest first."""
        out = self.run("scontrol", "-o", "show", "job")
        found = parse_jobs(out)
        names = {int(line.split()[0][6:]): line.split()[1][8:] for line in out.splitlines()
                 if line.startswith("JobId=")}  # fmt: skip
        return [found[i] for i in sorted(found) if name is None or names.get(i) == name]

    def node(self, name: str, state: str, reason: str = "test") -> None:
        self.run("scontrol", "update", f"nodename={name}", f"state={state}", f"reason={reason}")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    try:
        # A node taken down stays down until resumed (a production setting; the
        # default here returns it the moment its running slurmd registers).
        d = tmp_path_factory.mktemp("slurm")
        with local_slurm(d, nodes=3, gpus=8, settings={"RETURN_TO_SERVICE": "1"}) as s:
            yield Cluster(dict(s.env), d)
    except SlurmUnavailable as e:
        pytest.skip(f"Slurm cannot run here (root and Debian's slurm packages needed): {e}")


@pytest.fixture
def live(slurm: Cluster, tmp_path: Path) -> Iterator[Live]:
    lv = Live(tmp_path / "home")
    lv.env["SLURM_CONF"] = slurm.env["SLURM_CONF"]
    lv.home.mkdir()
    lv.up("--executor", "slurm")
    yield lv
    lv.down()
    ids = [str(j.id) for j in slurm.jobs() if not j.ended]
    if ids:
        subprocess.run(["scancel", *ids], env=slurm.env)
    _all_idle(slurm)


def _all_idle(slurm: Cluster) -> None:
    """Every node back (a resumed node is NOT_RESPONDING until its slurmd reports)."""
    for name in ("n1", "n2", "n3"):
        subprocess.run(["scontrol", "update", f"nodename={name}", "state=resume"],
                       env=slurm.env, capture_output=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if slurm.run("sinfo", "-h", "-N", "-o", "%T").split() == ["idle"] * 3:
            return
        time.sleep(0.3)


def ours(path: Path) -> list[str]:
    """The job's own lines (not slurmstepd's ``*** JOB … CANCELLED ***`` notices)."""
    return [ln for ln in path.read_text().splitlines() if not ln.startswith("slurmstepd")]


def submit(live: Live, tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    live.cli("sbatch", name, cwd=tmp_path)


def ended(n: int, state: str = "COMPLETED"):  # type: ignore[no-untyped-def]
    return lambda js: len(js) >= n and all(js[i]["state"] == state for i in range(1, n + 1))


GANG = """#!/bin/bash
#SBATCH -J gang -N 2 --gres=gpu:2 --output=gang.out
echo "batch $SLURM_NNODES $DETENTE_JOB_ID"
echo "env ${MARK_OF_SUBMITTER:-none} ${DETENTE_DB:-none}"
srun bash -c 'echo "task $SLURM_PROCID $SLURMD_NODENAME"'
exit 3
"""


def test_a_gang_runs_as_one_slurm_job_on_the_nodes_detente_chose(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    live.env["MARK_OF_SUBMITTER"] = "42"
    submit(live, tmp_path, "gang.sh", GANG)
    job = live.wait(ended(1, "FAILED"))[1]
    [sj] = slurm.jobs("gang")
    assert list(sj.nodes) == expand(job["nodelist"]) and len(set(sj.nodes)) == 2
    assert sj.state == "FAILED" and sj.exit_code == 3 and job["exit_code"] == 3
    lines = (tmp_path / "gang.out").read_text().splitlines()
    assert lines[0] == "batch 2 1"  # the batch script once, with detente's job id
    assert lines[1] == "env 42 none"  # the submitter's environment, not the daemon's
    assert sorted(lines[2:]) == sorted(f"task {r} {n}" for r, n in enumerate(sj.nodes))
    # Slurm's own record of the run is detente's.
    assert sj.start is not None and sj.end is not None
    assert abs(job["start_time"] - sj.start) < 1 and abs(job["end_time"] - sj.end) < 1


ARRAY = """#!/bin/bash
#SBATCH -J arr --array=0-3 --gres=gpu:1 --output=arr-%a.out
echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT"
"""


def test_an_array_is_one_slurm_job_per_task(live: Live, slurm: Cluster, tmp_path: Path) -> None:
    submit(live, tmp_path, "arr.sh", ARRAY)
    live.wait(ended(4))
    assert len(slurm.jobs("arr")) == 4
    for t in range(4):
        assert (tmp_path / f"arr-{t}.out").read_text() == f"task {t} of 4\n"


def test_a_dependent_job_reaches_slurm_only_when_its_dependency_is_met(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    submit(live, tmp_path, "a.sh", "#!/bin/bash\n#SBATCH -J first\nsleep 2\n")
    submit(live, tmp_path, "b.sh", "#!/bin/bash\n#SBATCH -J second --dependency=afterok:1\ntrue\n")
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    assert slurm.jobs("second") == []  # detente holds it: Slurm never sees a dependency
    live.wait(ended(2))
    [first], [second] = slurm.jobs("first"), slurm.jobs("second")
    assert first.end is not None and second.start is not None and second.start >= first.end


def test_cancel_ends_the_slurm_job(live: Live, slurm: Cluster, tmp_path: Path) -> None:
    submit(live, tmp_path, "c.sh", "#!/bin/bash\n#SBATCH -J long -N 3\nsleep 300\n")
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    deadline = time.monotonic() + 30
    while [j.state for j in slurm.jobs("long")] != ["RUNNING"]:  # running in Slurm too
        assert time.monotonic() < deadline
        time.sleep(0.1)
    live.cli("cancel", "1")
    live.wait(ended(1, "CANCELLED"), 30)
    [sj] = slurm.jobs("long")
    # Slurm's own cancel: not FAILED by detente's SIGTERM (exit 143)
    assert sj.ended and sj.state == "CANCELLED" and sj.nodes == ("n1", "n2", "n3")


def test_a_term_warning_is_a_signal_not_a_stop(live: Live, slurm: Cluster, tmp_path: Path) -> None:
    """``--signal=TERM@8`` on a 12 s job: SIGTERM at 4 s, and the job lives on to its
    time limit (only a stop for good is Slurm's cancel)."""
    out = tmp_path / "warned.txt"
    script = (f"trap 'echo term >> {out}' TERM\necho start >> {out}\n"
              "for i in $(seq 120); do sleep 0.5; done\n")  # fmt: skip
    r = live.api("POST", "/v1/jobs", json={"script": script, "name": "termwarn",
                 "time_limit": 12, "signal": {"signal": 15, "seconds": 8},
                 "chdir": str(tmp_path)})  # fmt: skip
    assert r.status_code == 201, r.text
    job = live.wait(ended(1, "TIMEOUT"), 60)[1]
    # One SIGTERM at the warning (to the task, which lives on), one at the time limit.
    assert out.read_text().split() == ["start", "term", "term"]
    assert job["end_time"] - job["start_time"] >= 11  # not cut short at the warning
    [sj] = slurm.jobs("termwarn")
    assert sj.ended and sj.state == "CANCELLED"


def test_the_time_limit_is_detentes(live: Live, slurm: Cluster, tmp_path: Path) -> None:
    submit(live, tmp_path, "t.sh", "#!/bin/bash\n#SBATCH -J limited -t 0:03\nsleep 300\n")
    job = live.wait(ended(1, "TIMEOUT"), 40)[1]
    assert job["end_time"] - job["start_time"] < 20
    [sj] = slurm.jobs("limited")
    assert sj.ended


HIGH = """#!/bin/bash
#SBATCH --job-name=high --qos=high -N 3 --gres=gpu:8 --output=high.out
echo high
"""
WARNED = """#!/bin/bash
#SBATCH --job-name=warned --requeue -N 3 --gres=gpu:8 --output=warned.out --signal=B:USR1@2
echo "start $SLURM_RESTART_COUNT"
if [ "$SLURM_RESTART_COUNT" -ge 1 ]; then exit 0; fi
trap 'echo usr1' USR1
trap 'echo term; exit 143' TERM
while true; do sleep 60 & wait; done
"""
CLASSES = """apiVersion: kueue.x-k8s.io/v1beta1
kind: WorkloadPriorityClass
metadata: {name: high}
value: 1000
"""


def test_a_preempted_job_gets_its_signal_then_sigterm_and_runs_again(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "classes.yaml").write_text(CLASSES)
    live.cli("apply", "-y", "-f", str(tmp_path / "classes.yaml"))
    submit(live, tmp_path, "warned.sh", WARNED)
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    time.sleep(1)  # the script sets its traps
    submit(live, tmp_path, "high.sh", HIGH)
    jobs = live.wait(ended(2), 90)
    assert jobs[1]["attempt"] == 2 and jobs[2]["end_time"] <= jobs[1]["start_time"] + 1
    assert ours(tmp_path / "warned.out") == ["start 0", "usr1", "term", "start 1"]
    assert [j.state for j in slurm.jobs("warned")] == ["CANCELLED", "COMPLETED"]


NODE = """#!/bin/bash
#SBATCH -J survivor --requeue -N 1 --gres=gpu:8 --open-mode=append --output=survivor.out
echo "start $SLURM_RESTART_COUNT $SLURMD_NODENAME"
if [ "$SLURM_RESTART_COUNT" -ge 1 ]; then exit 0; fi
sleep 300
"""


def test_a_node_lost_under_a_job_requeues_it_elsewhere_and_drains_follow_slurm(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    submit(live, tmp_path, "s.sh", NODE)
    first = live.wait(lambda js: js[1]["state"] == "RUNNING")[1]["nodelist"]
    _wait_file(tmp_path / "survivor.out")
    slurm.node(first, "down", "lost power")
    job = live.wait(ended(1), 60)[1]
    assert job["attempt"] == 2 and job["nodelist"] != first
    runs = ours(tmp_path / "survivor.out")
    assert runs == [f"start 0 {first}", f"start 1 {job['nodelist']}"]
    assert [j.state for j in slurm.jobs("survivor")] == ["NODE_FAIL", "COMPLETED"]
    # A node Slurm drains takes no new work here within seconds, and comes back.
    other = job["nodelist"]
    slurm.node(other, "drain", "bad fan")
    assert _wait_node(live, other, "drain")["reason"].startswith("bad fan")
    slurm.node(other, "resume")
    _wait_node(live, other, "idle")


def _wait_file(path: Path) -> None:
    """Until the job has written its first line (RUNNING here is submitted to Slurm)."""
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)


def _wait_node(live: Live, name: str, state: str) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        nodes = {n["name"]: n for n in live.api("GET", "/v1/nodes").json()}
        if nodes[name]["state"] == state:
            return dict(nodes[name])
        time.sleep(0.3)
    raise AssertionError(f"{name} not {state}: {nodes[name]}")


RUN_ONCE = """#!/bin/bash
#SBATCH -J once-NAME --output=once-NAME.out
echo run
sleep SECONDS
"""


def test_a_restarted_detente_readopts_its_slurm_jobs_and_runs_none_twice(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    for name, secs in (("a", 2), ("b", 2), ("c", 15)):
        submit(live, tmp_path, f"{name}.sh",
               RUN_ONCE.replace("NAME", name).replace("SECONDS", str(secs)))  # fmt: skip
    live.wait(lambda js: all(js[i]["state"] == "RUNNING" for i in (1, 2, 3)))
    live.cli("down")
    time.sleep(4)  # a and b end while detente is down; c still runs
    assert [j.state for j in slurm.jobs("once-c")] == ["RUNNING"]
    live.up("--executor", "slurm")
    jobs = live.wait(ended(3), 60)
    assert all(jobs[i]["attempt"] == 1 for i in (1, 2, 3))
    for name in "abc":
        assert len(slurm.jobs(f"once-{name}")) == 1  # never submitted twice
        assert (tmp_path / f"once-{name}.out").read_text() == "run\n"


def test_a_replica_whose_slurm_job_is_cancelled_is_replaced(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "s.yaml").write_text(f"""apiVersion: detente.dev/v1
kind: Service
metadata: {{name: llm}}
spec:
  command: exec python3 {SERVE / "fake_llm.py"}
  resources: {{nvidia.com/gpu: 1, cpu: 1}}
  replicas: 1
  readiness: {{path: /healthz, periodSeconds: 0.2}}
""")
    live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
    svc = live.wait_service("llm", lambda s: s["ready"] == 1, 60)
    assert httpx.get(f"{live.gateway}/llm/who", timeout=10).status_code == 200
    [sj] = [j for j in slurm.jobs("llm-0") if not j.ended]
    slurm.run("scancel", str(sj.id))
    first = svc["replicas"][0]["id"]
    svc = live.wait_service("llm", lambda s: s["ready"] == 1 and all(
        r["id"] != first for r in s["replicas"]), 60)  # fmt: skip
    assert httpx.get(f"{live.gateway}/llm/who", timeout=10).status_code == 200
    assert any(e[1] == "ReplicaExited" for e in svc["events"])
    assert len([j for j in slurm.jobs("llm-0") if not j.ended]) == 1


def test_cohort_borrowing_and_reclaim_across_two_queues(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    live.cli("apply", "-y", "-f", str(SERVE / "pool.yaml"))
    submit(live, tmp_path, "own.sh", OWN)
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    submit(live, tmp_path, "borrower.sh", BORROWER)  # 16 GPUs: 8 borrowed from serving
    live.wait(lambda js: js[2]["state"] == "RUNNING")
    _wait_file(tmp_path / "borrower.out")
    (tmp_path / "s.yaml").write_text(SERVICE.replace("REPLICAS", "1"))
    live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
    live.wait_service("llm", lambda s: s["ready"] == 1, 90)
    jobs = live.wait(lambda js: js[2]["state"] == "PENDING")
    assert jobs[1]["state"] == "RUNNING"  # inside its own quota: untouched
    (tmp_path / "s.yaml").write_text(SERVICE.replace("REPLICAS", "0"))
    live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
    jobs = live.wait(lambda js: js[2]["state"] == "COMPLETED", 90)
    assert jobs[2]["attempt"] == 2 and jobs[1]["state"] == "RUNNING"
    assert ours(tmp_path / "borrower.out") == ["start 0", "term", "start 1"]
    assert [j.state for j in slurm.jobs("borrower")] == ["CANCELLED", "COMPLETED"]


def test_while_slurmctld_is_down_nothing_is_lost_and_launches_wait(
    live: Live, slurm: Cluster, tmp_path: Path
) -> None:
    submit(live, tmp_path, "a.sh", RUN_ONCE.replace("NAME", "down-a").replace("SECONDS", "30"))
    live.wait(lambda js: js[1]["state"] == "RUNNING")
    _wait_file(tmp_path / "once-down-a.out")
    slurm.stop_controller()
    try:
        time.sleep(3)  # its silence is noticed (a client would wait out MessageTimeout)
        submit(live, tmp_path, "b.sh", RUN_ONCE.replace("NAME", "down-b").replace("SECONDS", "0"))
        jobs = live.wait(lambda js: "EngineDown" in (js.get(2, {}).get("reason") or ""), 10)
        assert jobs[2]["state"] == "PENDING" and jobs[2]["attempt"] == 0
        time.sleep(3)  # a runs on, unseen: it is not taken for lost
        assert live.jobs()[1]["state"] == "RUNNING"
    finally:
        slurm.start_controller()
    jobs = live.wait(ended(2), 90)
    assert jobs[1]["attempt"] == 1 and jobs[2]["attempt"] == 1
    for name in ("down-a", "down-b"):
        assert len(slurm.jobs(f"once-{name}")) == 1
        assert (tmp_path / f"once-{name}.out").read_text() == "run\n"


def test_load_scales_a_service_up_in_slurm_jobs(live: Live, slurm: Cluster, tmp_path: Path) -> None:
    scale = "autoscaling: {min: 1, max: 4, target: {concurrency: 1}, scaleToZeroAfter: 2s}"
    (tmp_path / "s.yaml").write_text(service(scale=scale, env="TOKEN_RATE: '20'"))
    live.cli("apply", "-y", "-f", str(tmp_path / "s.yaml"))
    live.wait_service("llm", lambda s: s["ready"] == 1, 60)
    with steady_load(live.gateway, 4):
        svc = live.wait_service("llm", lambda s: s["ready"] >= 3, 60)
    running = [j for j in slurm.jobs() if not j.ended and j.comment.startswith("detente:")]
    assert len(running) >= 3 and len(svc["replicas"]) >= 3  # each replica a Slurm job
