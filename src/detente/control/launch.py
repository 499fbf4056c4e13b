"""What a pod is started with: its environment (torchrun's and Slurm's variables), its
working directory, and its log files. Pure functions of the job row."""

from __future__ import annotations

import os
import pwd
import re
import socket
import sys
from pathlib import Path
from typing import Any

from detente.api.hostlist import compress
from detente.api.jobspec import JobSpec, stored
from detente.control.store.models import Job, Pod
from detente.executors.base import PodLaunch, RunAs
from detente.executors.local import pod_log
from detente.jobtools import alloc

#: ``srun`` and ``scontrol`` for jobs: first on every job's PATH.
TOOLS_BIN = Path(alloc.__file__).parent / "bin"

STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"

BASE_PORT = 29500


def job_dir(state_dir: Path, job: Job) -> Path:
    """The job's own folder: its working directory when it names none (made only then)."""
    return state_dir / "jobs" / str(job.id)


def script_path(state_dir: Path, job: Job) -> Path:
    """The batch script, one file per stored spec: an array's tasks share it (written
    once, not once per task)."""
    return state_dir / "specs" / f"{job.spec_id}.sh"


def master_port(job_id: int) -> int:
    """A per-job port so concurrent jobs' rendezvous do not collide on loopback."""
    return BASE_PORT + job_id % 20000


def expand(pattern: str, job: Job, node: str, rank: int) -> str:
    """sbatch's filename patterns: %j %A %a %x %u %N %n and %% ."""
    arr = job.array_job_id if job.array_job_id is not None else job.id
    values = {
        "j": str(job.id), "A": str(arr), "a": str(job.array_task_id or 0), "x": job.name,
        "u": job.user, "N": node, "n": str(rank), "%": "%",
    }  # fmt: skip
    return re.sub(r"%([jAaxuNn%])", lambda m: values[m.group(1)], pattern)


def run_as(unix_user: str | None) -> RunAs | None:
    """The identity of ``unix_user`` (None: the daemon's own, single-user mode);
    KeyError if no such account exists."""
    if unix_user is None:
        return None
    pw = pwd.getpwnam(unix_user)
    groups = tuple(g for g in os.getgrouplist(pw.pw_name, pw.pw_gid) if g != pw.pw_gid)
    return RunAs(pw.pw_uid, pw.pw_gid, groups, pw.pw_dir, pw.pw_name)


def log_paths(job: Job, spec: JobSpec, node: str, rank: int) -> tuple[str, str]:
    """The job's ``--output``/``--error`` with sbatch's patterns expanded, relative to
    its working directory (opened by the pod as its user, never by the daemon)."""
    default = "slurm-%A_%a.out" if job.array_task_id is not None else "slurm-%j.out"
    out = expand(spec.output or default, job, node, rank)
    err = expand(spec.error, job, node, rank) if spec.error else out
    return out, err


def allocation(job: Job, spec: JobSpec) -> list[alloc.NodeShare]:
    """What the job holds per node, in its node order: task slots (``--ntasks`` laid
    out as Slurm's block layout, else pods × tasks per pod), CPUs and GPU devices."""
    pods, devices = job.nodes or [], job.devices or []
    order = list(dict.fromkeys(pods))
    count = {n: pods.count(n) for n in order}
    gpus = {n: [g for p, d in zip(pods, devices, strict=False) if p == n for g in d] for n in order}
    tasks = [count[n] * spec.tasks_per_node for n in order]
    if spec.total_tasks is not None and spec.one_per_node and order:
        tasks = alloc.block(spec.total_tasks, len(order))
    return [alloc.NodeShare(n, t, count[n] * spec.cpus_per_pod(), tuple(gpus[n]))
            for n, t in zip(order, tasks, strict=True)]  # fmt: skip


def environment(
    job: Job, spec: JobSpec, rank: int, user: RunAs | None = None, api: str | None = None
) -> dict[str, str]:
    """The pod's environment: a standard PATH (detente's ``srun``/``scontrol`` first)
    and the user's HOME, the submitter's exported variables, then the rendezvous
    (MASTER_ADDR/PORT, WORLD_SIZE, NODE_RANK) and Slurm's job variables as the batch
    step sees them. Nothing of the daemon's own environment. RANK and LOCAL_RANK are
    per task, set by the shim."""
    pods = job.nodes or []  # one entry per pod: ntasks pods may share a node
    shares = allocation(job, spec)
    nodes = [a.node for a in shares]
    here = shares[nodes.index(pods[rank])] if pods else alloc.NodeShare("", 0, 0, ())
    devices = (job.devices or [[]])[rank]
    ntasks = spec.tasks_per_node
    total = sum(a.tasks for a in shares) if spec.batch else len(pods) * ntasks
    pw = pwd.getpwuid(user.uid if user else os.geteuid())
    env = {"PATH": STANDARD_PATH, "HOME": pw.pw_dir, "USER": pw.pw_name,
           "LOGNAME": pw.pw_name, "SHELL": pw.pw_shell or "/bin/sh"}  # fmt: skip
    env.update(spec.env)
    env.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port(job.id)),
        WORLD_SIZE=str(total), NODE_RANK=str(rank), GROUP_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(ntasks), CUDA_VISIBLE_DEVICES=",".join(map(str, devices)),
        SLURM_JOB_ID=str(job.id), SLURM_JOBID=str(job.id), SLURM_JOB_NAME=job.name,
        SLURM_JOB_USER=job.user, SLURM_JOB_PARTITION=job.queue,
        SLURM_NNODES=str(len(nodes)), SLURM_JOB_NUM_NODES=str(len(nodes)),
        SLURM_NODEID=str(nodes.index(pods[rank]) if pods else 0),
        SLURMD_NODENAME=pods[rank] if pods else "", SLURM_TOPOLOGY_ADDR=here.node,
        SLURM_JOB_NODELIST=compress(nodes), SLURM_NODELIST=compress(nodes),
        SLURM_NTASKS=str(total), SLURM_NPROCS=str(total),
        SLURM_TASKS_PER_NODE=alloc.tasks_per_node([a.tasks for a in shares]),
        SLURM_JOB_CPUS_PER_NODE=alloc.tasks_per_node([round(a.cpus) for a in shares]),
        SLURM_CPUS_ON_NODE=str(round(here.cpus)),
        SLURM_NTASKS_PER_NODE=str(ntasks), SLURM_CPUS_PER_TASK=f"{spec.cpus_per_task:g}",
        SLURM_GPUS_ON_NODE=str(len(devices)), SLURM_JOB_GPUS=",".join(map(str, devices)),
        SLURM_SUBMIT_DIR=spec.submit_dir or spec.chdir or ".",
        SLURM_SUBMIT_HOST=socket.gethostname(), SLURM_RESTART_COUNT=str(max(job.attempt - 1, 0)),
        SLURM_CLUSTER_NAME="detente", DETENTE_PYTHON=sys.executable,
    )  # fmt: skip
    env[alloc.ENV] = alloc.to_env(shares)
    if api:  # where the job's scontrol asks (with its pod token: DETENTE_POD_TOKEN)
        env["DETENTE_URL"] = api
    if spec.gpus_per_task:
        env["SLURM_GPUS_PER_TASK"] = str(spec.gpus_per_task)
    if job.array_task_id is not None:
        count, low, high = spec.array_span or (1, job.array_task_id, job.array_task_id)
        env.update(
            SLURM_ARRAY_JOB_ID=str(job.array_job_id), SLURM_ARRAY_TASK_ID=str(job.array_task_id),
            SLURM_ARRAY_TASK_COUNT=str(count), SLURM_ARRAY_TASK_MIN=str(low),
            SLURM_ARRAY_TASK_MAX=str(high),
        )  # fmt: skip
    if spec.time_limit is not None:
        env["SLURM_JOB_TIME_LIMIT"] = str(int(spec.time_limit))
    # First on PATH whatever the submitter exported, as Slurm's own are on a cluster.
    env["PATH"] = f"{TOOLS_BIN}:{env['PATH']}"
    return env


def pod_tasks(spec: JobSpec, rank: int) -> int:
    """How many copies of the script a pod runs: a batch job's first pod one (its
    batch step), its other pods none (they hold their nodes for its steps); a
    manifest's pods ``tasks_per_node`` each."""
    if spec.batch:
        return 1 if rank == 0 else 0
    return spec.tasks_per_node


def pod_launch(
    state_dir: Path,
    job: Job,
    pod: Pod,
    user: RunAs | None = None,
    api: str | None = None,
    spec_data: dict[str, Any] | JobSpec | None = None,
) -> PodLaunch:
    """How ``pod`` starts: as ``user`` (None: the daemon's user), in ``--chdir`` (else
    the user's home in multi-user mode, the job's state directory otherwise).
    ``spec_data``: the job's stored spec, or it read back (`stored`) by the caller."""
    if isinstance(spec_data, JobSpec):
        spec = spec_data
    else:
        spec = stored(job.spec if spec_data is None else spec_data)
    d = job_dir(state_dir, job)
    out, err = log_paths(job, spec, pod.node, pod.rank)
    cwd = spec.chdir or (user.home if user else str(d))
    return PodLaunch(
        token=pod.token, rank=pod.rank, ntasks=pod_tasks(spec, pod.rank),
        env=environment(job, spec, pod.rank, user, api), cwd=cwd,
        script=script_path(state_dir, job), args=spec.args, stdout=out, stderr=err,
        exit_file=exit_file(state_dir, job, pod),
        user=user, memory=spec.mem_per_node,
        cpu_milli=round(spec.cpus_per_pod() * 1000),
        truncate=spec.batch
        and (spec.open_mode == "truncate" or (spec.open_mode is None and job.attempt <= 1)),
        steps=spec.batch and pod.rank == 0,
    )  # fmt: skip


def exit_file(state_dir: Path, job: Job, pod: Pod) -> Path:
    return _pod_file(state_dir, job, pod.attempt, pod.rank)


def _pod_file(state_dir: Path, job: Job, attempt: int, rank: int) -> Path:
    """A pod's exit file, ``pods/JOB-ATTEMPT-RANK.exit``; its own log and its other
    files sit beside it (`executors.local.pod_log`). One folder for all pods: a folder
    per job and attempt cost two mkdirs a job (≈ 0.3 ms each on this machine's ext4)."""
    # One Path from one string: settle asks for every running pod's at every step.
    return Path(f"{state_dir}/pods/{job.id}-{attempt}-{rank}.exit")


def out_of_memory(state_dir: Path, job: Job, pod: Pod) -> bool:
    """Whether the pod's memory cgroup killed a task (its shim leaves a marker)."""
    return exit_file(state_dir, job, pod).with_suffix(".oom").exists()


def launch_reason(state_dir: Path, job: Job, pod: Pod) -> str | None:
    """Why the pod could not start, as its shim recorded it, if it could not."""
    try:
        return exit_file(state_dir, job, pod).with_suffix(".reason").read_text()[:1000]
    except OSError:
        return None


def read_logs(
    state_dir: Path, job: Job, offset: int, pod: int | None = None, limit: int = 1 << 20
) -> tuple[str, int]:
    """Text from byte ``offset`` of the job's output: its pods' logs in the daemon's
    own spool (rank order), or with ``pod`` that pod's log only — never a path the
    user gave, so a job pointed at another file cannot read it through the API."""
    ranks = [pod] if pod is not None else range(len(job.nodes or [None]))
    files = [pod_log(_pod_file(state_dir, job, job.attempt, r)) for r in ranks]
    chunks, skip = [], offset
    for p in files:
        try:
            size = p.stat().st_size
        except OSError:
            continue
        if skip >= size:
            skip -= size
            continue
        with p.open("rb") as f:
            f.seek(skip)
            chunks.append(f.read(limit - sum(map(len, chunks))))
        skip = 0
        if sum(map(len, chunks)) >= limit:
            break
    blob = b"".join(chunks)
    return blob.decode(errors="replace"), offset + len(blob)


def write_atomically(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` via a temp file and rename: a reader (a bash running
    the old script) sees the old file or the new one, never part of one. Not fsynced
    (it cost ≈ 10 ms a job here): after a machine crash nothing runs, and a control
    plane writes every script again before its first launch (`Starter._write_script`)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
