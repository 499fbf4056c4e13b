"""What a pod is started with: its environment (torchrun's and Slurm's variables), its
working directory, and its log files. Pure functions of the job row."""

from __future__ import annotations

import os
import re
from pathlib import Path

from detente.api.hostlist import compress
from detente.control.spec import JobSpec
from detente.control.store.models import Job, Pod
from detente.executors.base import PodLaunch
from detente.executors.local import pod_log

BASE_PORT = 29500


def job_dir(state_dir: Path, job: Job) -> Path:
    return state_dir / "jobs" / str(job.id)


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


def log_paths(job: Job, spec: JobSpec, node: str, rank: int) -> tuple[Path, Path]:
    default = "slurm-%A_%a.out" if job.array_task_id is not None else "slurm-%j.out"
    cwd = Path(spec.chdir or ".")
    out = cwd / expand(spec.output or default, job, node, rank)
    err = cwd / expand(spec.error, job, node, rank) if spec.error else out
    return out, err


def environment(job: Job, spec: JobSpec, rank: int) -> dict[str, str]:
    """The pod's environment: the submitter's exported variables, then the rendezvous
    (MASTER_ADDR/PORT, WORLD_SIZE, NODE_RANK) and Slurm's job variables. RANK and
    LOCAL_RANK are per task, set by the shim."""
    nodes = job.nodes or []
    devices = (job.devices or [[]])[rank]
    ntasks = spec.tasks_per_node
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    env.update(spec.env)
    env.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port(job.id)),
        WORLD_SIZE=str(len(nodes) * ntasks), NODE_RANK=str(rank), GROUP_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(ntasks), CUDA_VISIBLE_DEVICES=",".join(map(str, devices)),
        SLURM_JOB_ID=str(job.id), SLURM_JOBID=str(job.id), SLURM_JOB_NAME=job.name,
        SLURM_JOB_USER=job.user, SLURM_JOB_PARTITION=job.queue,
        SLURM_NNODES=str(len(nodes)), SLURM_JOB_NUM_NODES=str(len(nodes)),
        SLURM_NODEID=str(rank), SLURMD_NODENAME=nodes[rank] if nodes else "",
        SLURM_JOB_NODELIST=compress(nodes), SLURM_NODELIST=compress(nodes),
        SLURM_NTASKS=str(len(nodes) * ntasks), SLURM_NPROCS=str(len(nodes) * ntasks),
        SLURM_NTASKS_PER_NODE=str(ntasks), SLURM_CPUS_PER_TASK=str(spec.cpus_per_task),
        SLURM_GPUS_ON_NODE=str(len(devices)), SLURM_SUBMIT_DIR=spec.chdir or ".",
        SLURM_RESTART_COUNT=str(max(job.attempt - 1, 0)),
    )  # fmt: skip
    if job.array_task_id is not None:
        tasks = spec.array or [job.array_task_id]
        env.update(
            SLURM_ARRAY_JOB_ID=str(job.array_job_id), SLURM_ARRAY_TASK_ID=str(job.array_task_id),
            SLURM_ARRAY_TASK_COUNT=str(len(tasks)), SLURM_ARRAY_TASK_MIN=str(min(tasks)),
            SLURM_ARRAY_TASK_MAX=str(max(tasks)),
        )  # fmt: skip
    if spec.time_limit is not None:
        env["SLURM_JOB_TIME_LIMIT"] = str(int(spec.time_limit))
    return env


def pod_launch(state_dir: Path, job: Job, pod: Pod) -> PodLaunch:
    spec = JobSpec.model_validate(job.spec)
    d = job_dir(state_dir, job)
    out, err = log_paths(job, spec, pod.node, pod.rank)
    return PodLaunch(
        token=pod.token, rank=pod.rank, ntasks=spec.tasks_per_node,
        env=environment(job, spec, pod.rank), cwd=spec.chdir or str(d), script=d / "script.sh",
        args=spec.args, stdout=out if out.is_absolute() else d / out,
        stderr=err if err.is_absolute() else d / err, exit_file=exit_file(state_dir, job, pod),
    )  # fmt: skip


def exit_file(state_dir: Path, job: Job, pod: Pod) -> Path:
    return _pod_file(state_dir, job, pod.attempt, pod.rank)


def _pod_file(state_dir: Path, job: Job, attempt: int, rank: int) -> Path:
    """A pod's exit file; its own log sits beside it (`executors.local.pod_log`)."""
    return job_dir(state_dir, job) / f"attempt-{attempt}" / f"pod-{rank}.exit"


def read_logs(
    state_dir: Path, job: Job, offset: int, pod: int | None = None, limit: int = 1 << 20
) -> tuple[str, int]:
    """Text from byte ``offset`` of the job's output files (each once, rank order), or
    with ``pod`` of that pod's own log in the current run."""
    files = [pod_log(_pod_file(state_dir, job, job.attempt, pod))] if pod is not None else []
    if pod is None:
        spec = JobSpec.model_validate(job.spec)
        d = job_dir(state_dir, job)
        for rank, node in enumerate(job.nodes or ["?"]):
            for p in log_paths(job, spec, node, rank):
                full = p if p.is_absolute() else d / p
                if full not in files:
                    files.append(full)
    blob = b"".join(p.read_bytes() for p in files if p.exists())
    chunk = blob[offset : offset + limit]
    return chunk.decode(errors="replace"), offset + len(chunk)
