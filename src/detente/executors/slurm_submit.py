"""How a detente job is put to Slurm: its ``sbatch`` command line, environment and
batch script (pure functions of the job, tested without Slurm).

The job is pinned to the nodes detente chose (``--nodelist`` and ``--nodes``) with
the tasks, CPUs, GPUs and memory detente charged on each; the time limit is detente's
own (it stops the job), given to Slurm one minute later as a backstop. Options
detente has already acted on (dependencies, arrays, --begin, holds) never reach
Slurm: the script's ``#SBATCH`` lines are neutralized and the submitter's
``SBATCH_*``/``SLURM_*`` input variables dropped.
"""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

from detente.api.hostlist import compress
from detente.executors.base import GangLaunch
from detente.executors.slurm_jobs import TAG

STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"
_IDENTITY = ("HOME", "USER", "LOGNAME", "SHELL")
_OURS = ("SLURM_ARRAY_", "SLURM_RESTART_COUNT")
#: A manifest's pods run ``tasks_per_node`` copies each (as on the local executor):
#: one ``srun`` task per copy, with the ranks torchrun-style launchers read.
_PER_TASK = (
    "#!/bin/bash\n# detente: one copy of the job's script per task\n"
    "exec srun --kill-on-bad-exit=1 /bin/bash -c "
    '\'export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID; exec /bin/bash "$0" "$@"\' '
    '{script} "$@"\n'
)


def slurm_script(job: GangLaunch, path: Path) -> Path:
    """Writes the script Slurm runs to ``path``: a batch job's own script with its
    ``#SBATCH`` lines neutralized (line numbers kept), or for a manifest's pods a
    wrapper running the script once per task."""
    script = job.pods[0].script
    if job.spec.get("batch"):
        text = re.sub(r"(?m)^#SBATCH", "# SBATCH", script.read_text())
        text = text if text.startswith("#!") else "#!/bin/bash\n" + text
    else:
        text = _PER_TASK.format(script=shlex.quote(str(script)))
    path.write_text(text)
    return path


def slurm_env(job: GangLaunch, base: dict[str, str]) -> dict[str, str]:
    """sbatch's environment, which Slurm gives the job (``--export=ALL``): the
    submitter's exported variables but Slurm's input ones, the user's identity, a
    standard PATH unless exported, ``base`` (SLURM_CONF), the array task and restart
    count (a requeue here is a new Slurm job) and DETENTE_JOB_ID. Nothing
    of the daemon's own environment."""
    first = job.pods[0].env
    env = {k: first[k] for k in _IDENTITY if k in first}
    env["PATH"] = STANDARD_PATH
    exported = job.spec.get("env", {})
    env.update({k: v for k, v in exported.items() if not k.startswith(("SLURM_", "SBATCH_"))})
    env.update({k: v for k, v in base.items() if k != "PATH"})
    # What Slurm cannot know of a job detente runs: its array task and its restarts.
    env.update({k: v for k, v in first.items() if k.startswith(_OURS)})
    env["DETENTE_JOB_ID"] = str(job.job_id)
    return env


def _escape(path: str) -> str:
    """detente has expanded the filename patterns: Slurm must not expand them again."""
    return path.replace("%", "%%")


def sbatch_argv(
    job: GangLaunch, script: Path, partition: str | None, euid: int, sbatch: str = "sbatch"
) -> list[str]:
    """The ``sbatch`` command (program ``sbatch``) for ``job`` on its nodes. ValueError
    for what Slurm cannot be asked: another Unix user when not root, resources other
    than CPUs, memory and GPUs."""
    spec, first, shares = job.spec, job.pods[0], job.shares
    tasks = [s.tasks for s in shares]
    cpus = math.ceil(spec.get("cpus_per_task", 1))
    gpus = [len(s.gpus) for s in shares]
    argv = [
        sbatch, "--parsable", f"--job-name={job.name}",
        f"--comment={TAG}{job.tag}:{len(job.pods)}", "--no-requeue", "--export=ALL",
        "--ignore-pbs",  # sbatch would honour a script's #PBS and #BSUB lines too
        f"--nodelist={compress([s.node for s in shares])}", f"--nodes={len(shares)}",
        f"--ntasks={max(sum(tasks), 1)}", f"--cpus-per-task={cpus}",
        f"--chdir={first.cwd}", f"--output={_escape(first.stdout)}",
        f"--error={_escape(first.stderr)}",
        f"--open-mode={'truncate' if first.truncate else 'append'}",
    ]  # fmt: skip
    if partition:
        argv.append(f"--partition={partition}")
    if len(set(tasks)) == 1 and tasks[0] > 0:
        argv.append(f"--ntasks-per-node={tasks[0]}")
    if len(set(gpus)) == 1 and gpus[0] > 0:
        argv.append(f"--gres=gpu:{gpus[0]}")
    elif sum(gpus):
        argv.append(f"--gpus={sum(gpus)}")
    if mem := spec.get("mem_per_node", 0):
        argv.append(f"--mem={math.ceil(mem / (1 << 20))}M")
    if (limit := spec.get("time_limit")) is not None:
        argv.append(f"--time={math.ceil(limit / 60) + 1}")
    if spec.get("exclusive"):
        argv.append("--exclusive")
    if extra := spec.get("extra_resources"):
        raise ValueError(f"the Slurm executor cannot ask Slurm for {', '.join(sorted(extra))}")
    if (user := first.user) is not None:
        if euid != 0 and user.uid != euid:
            raise ValueError(f"running a job as {user.name} on Slurm needs detente to run as root")
        argv += [f"--uid={user.uid}", f"--gid={user.gid}"]
    return [*argv, str(script), *first.args]
