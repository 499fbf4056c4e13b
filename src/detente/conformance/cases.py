"""The Slurm conformance cases: batch scripts as people write them, each printing
``KEY=VALUE`` lines of what it saw (Slurm's variables, step layouts, exit codes), run
on real Slurm and on detente and compared field by field (`detente.conformance.run`).

A case's script runs under ``#!/bin/bash`` with its ``args`` given to sbatch; ``pre``
is a job submitted first (its id fills ``{pre}`` in ``args``); ``outputs`` are the
files read after the job (``{id}`` is the job id, ``{task}`` an array task).
``known`` lists fields that differ on purpose, with the reason (the report shows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENV = 'echo "NODELIST=$SLURM_JOB_NODELIST"\n'


@dataclass(frozen=True)
class Case:
    name: str
    script: str
    args: tuple[str, ...] = ()
    pre: str | None = None
    pre_args: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("slurm-{id}.out",)
    files: dict[str, str] = field(default_factory=dict)
    #: Only sbatch's own answer is compared (exit code, first words of its message).
    submit_only: bool = False
    known: dict[str, str] = field(default_factory=dict)


def _v(*names: str) -> str:
    return "printf '%s\\n' " + " ".join(f'"{n}=${n}"' for n in names) + "\n"


STEP = ("srun bash -c 'echo \"TASK$SLURM_PROCID=L$SLURM_LOCALID,N$SLURM_NODEID,"
        "S$SLURM_STEP_ID\"' | sort\n")  # fmt: skip

CASES: tuple[Case, ...] = (
    Case("batch script runs once (-N 2)", ENV + "echo BATCH=1\n", ("-N", "2")),
    Case(
        "SLURM_NNODES, SLURM_JOB_NUM_NODES (-N 2)",
        ENV + _v("SLURM_NNODES", "SLURM_JOB_NUM_NODES"),
        ("-N", "2"),
    ),
    Case(
        "SLURM_NTASKS (-N 2 --ntasks-per-node=2)",
        ENV + _v("SLURM_NTASKS", "SLURM_NPROCS"),
        ("-N", "2", "--ntasks-per-node=2"),
    ),
    Case(
        "SLURM_TASKS_PER_NODE (-N 2 -n 3)",
        ENV + _v("SLURM_TASKS_PER_NODE", "SLURM_NTASKS"),
        ("-N", "2", "-n", "3"),
    ),
    Case(
        "SLURM_TASKS_PER_NODE (-N 2 --ntasks-per-node=2)",
        ENV + _v("SLURM_TASKS_PER_NODE"),
        ("-N", "2", "--ntasks-per-node=2"),
    ),
    Case(
        "-n 4 --ntasks-per-node=2: nodes",
        ENV + _v("SLURM_NNODES", "SLURM_TASKS_PER_NODE"),
        ("-n", "4", "--ntasks-per-node=2"),
    ),
    Case("SLURM_JOB_NAME (-J)", _v("SLURM_JOB_NAME"), ("-J", "conf-name")),
    Case("SLURM_JOB_NAME (script name)", _v("SLURM_JOB_NAME")),
    Case("SLURM_CPUS_PER_TASK (-c 2)", _v("SLURM_CPUS_PER_TASK"), ("-c", "2")),
    Case(
        "SLURM_CPUS_ON_NODE (-c 2 --ntasks-per-node=2)",
        _v("SLURM_CPUS_ON_NODE"),
        ("-c", "2", "--ntasks-per-node=2"),
    ),
    Case(
        "SLURM_JOB_CPUS_PER_NODE (-N 2 -c 3)", _v("SLURM_JOB_CPUS_PER_NODE"), ("-N", "2", "-c", "3")
    ),
    Case("SLURM_GPUS_ON_NODE (--gres=gpu:2)", _v("SLURM_GPUS_ON_NODE"), ("--gres=gpu:2",)),
    Case(
        "SLURM_JOB_GPUS count (--gres=gpu:3)",
        "echo \"COUNT=$(echo $SLURM_JOB_GPUS | tr , '\\n' | wc -l)\"\n",
        ("--gres=gpu:3",),
    ),
    Case(
        "CUDA_VISIBLE_DEVICES in the batch step (--gres=gpu:2)",
        "echo \"COUNT=$(echo $CUDA_VISIBLE_DEVICES | tr , '\\n' | wc -l)\"\n",
        ("--gres=gpu:2",),
    ),
    Case(
        "-G 4 -N 2: GPUs per node",
        _v("SLURM_GPUS_ON_NODE"),
        ("-G", "4", "-N", "2"),
        known={
            "SLURM_GPUS_ON_NODE": "detente spreads --gpus evenly (2 + 2: every node of a "
            "job is sized alike); Slurm's cons_tres may split them unevenly (3 + 1 here)"
        },
    ),
    Case(
        "--gpus-per-task=2 -n 2 -N 1: GPUs on the node",
        _v("SLURM_GPUS_ON_NODE"),
        ("--gpus-per-task=2", "-n", "2", "-N", "1"),
    ),
    Case(
        "srun: default task count (-N 2 --ntasks-per-node=2)",
        ENV + 'echo "LINES=$(srun hostname | wc -l)"\n',
        ("-N", "2", "--ntasks-per-node=2"),
    ),
    Case(
        "srun: ranks, local ids, node ids (-N 2 --ntasks-per-node=2)",
        ENV + STEP,
        ("-N", "2", "--ntasks-per-node=2"),
    ),
    Case(
        "srun -n 3 on -N 2 --ntasks-per-node=2: layout",
        ENV + STEP.replace("srun", "srun -n 3"),
        ("-N", "2", "--ntasks-per-node=2"),
    ),
    Case("srun -N 1 -n 1", ENV + 'echo "LINES=$(srun -N1 -n1 hostname | wc -l)"\n', ("-N", "2")),
    Case("srun -l: label format", "srun -l -n1 echo hi | sed 's/^/OUT=/'\n"),
    Case("srun: exit code of a failing task", "srun sh -c 'exit 3'\necho RC=$?\n"),
    Case(
        "srun: message for a failing task", ENV + "srun -n1 sh -c 'exit 3' 2>&1 | sed 's/^/MSG=/'\n"
    ),
    Case("srun -K: exit code", "srun -K -n 2 sh -c 'exit 4'\necho RC=$?\n", ("-n", "2")),
    Case(
        "srun: step ids in order",
        "srun -n1 sh -c 'echo A=$SLURM_STEP_ID'\nsrun -n1 sh -c 'echo B=$SLURM_STEP_ID'\n",
    ),
    Case(
        "srun: step variables (-N 2 -n 3)",
        ENV
        + "srun -n1 -N1 bash -c '"
        + _v("SLURM_STEP_NUM_TASKS", "SLURM_STEP_NUM_NODES", "SLURM_NTASKS", "SLURM_NNODES")
        .strip()
        .replace("'", '"')
        + "'\n",
        ("-N", "2", "-n", "3"),
    ),
    Case(
        "srun --gpus-per-task=1: one distinct GPU per task",
        "srun -n 2 --gpus-per-task=1 bash -c 'echo $CUDA_VISIBLE_DEVICES' | sort -u | "
        "wc -l | sed 's/^/DISTINCT=/'\n",
        ("-n", "2", "--gres=gpu:2"),
    ),
    Case(
        "srun -w HEAD: runs on the named node",
        ENV + "h=$(scontrol show hostnames | head -1)\n"
        'echo "SAME=$([ "$(srun -N1 -n1 -w $h printenv SLURMD_NODENAME)" = $h ] && echo yes)"\n',
        ("-N", "2"),
    ),
    Case("srun: stdin reaches the task", "echo piped | srun -n1 cat | sed 's/^/IN=/'\n"),
    Case(
        "scontrol show hostnames: as many as nodes",
        'echo "COUNT=$(scontrol show hostnames $SLURM_JOB_NODELIST | wc -l)"\n',
        ("-N", "3"),
    ),
    Case(
        "scontrol show hostnames LIST",
        "scontrol show hostnames 'a[1-3],b' | tr '\\n' ' ' | sed 's/^/HOSTS=/;s/ $//'; echo\n",
    ),
    Case("job state and exit code: exit 5", "exit 5\n"),
    Case("job state: exit 0", "true\n"),
    Case(
        "array: SLURM_ARRAY_* (--array=1-3)",
        _v("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX"),
        ("--array=1-3",),
        outputs=("slurm-{id}_{task}.out",),
    ),
    Case(
        "array: default output names slurm-%A_%a.out",
        "echo T=$SLURM_ARRAY_TASK_ID\n",
        ("--array=0-1",),
        outputs=("slurm-{id}_{task}.out",),
    ),
    Case("-o with %j", "echo X=1\n", ("-o", "out-%j.txt"), outputs=("out-{id}.txt",)),
    Case(
        "-e: stderr to its own file",
        "echo E=1 >&2\necho O=1\n",
        ("-e", "err-%j.txt"),
        outputs=("slurm-{id}.out", "err-{id}.txt"),
    ),
    Case(
        "default open mode truncates",
        "echo NEW=1\n",
        ("-o", "o.txt"),
        outputs=("o.txt",),
        files={"o.txt": "OLD=1\n"},
    ),
    Case(
        "--open-mode=append",
        "echo NEW=1\n",
        ("-o", "o.txt", "--open-mode=append"),
        outputs=("o.txt",),
        files={"o.txt": "OLD=1\n"},
    ),
    Case("--wrap", "", ("--wrap", "echo WRAP=ok")),
    Case("--export=ALL,FOO=bar", _v("FOO"), ("--export=ALL,FOO=bar",)),
    Case(
        "-D/--chdir",
        'echo "DIR=$(basename $PWD)"\n',
        ("-D", "sub"),
        files={"sub/.keep": ""},
        outputs=("sub/slurm-{id}.out",),
    ),
    Case("SLURM_SUBMIT_DIR", 'echo "SAME=$([ $SLURM_SUBMIT_DIR = $PWD ] && echo yes)"\n'),
    Case(
        "-D: SLURM_SUBMIT_DIR stays where sbatch ran",
        'printf "SUB=%s\\nDIR=%s\\nHOST=%s\\n" $(basename $SLURM_SUBMIT_DIR) $(basename $PWD) '
        '$([ "$SLURM_SUBMIT_HOST" = "$(hostname)" ] && echo same)\n',
        ("-D", "sub"),
        files={"sub/.keep": ""},
        outputs=("sub/slurm-{id}.out",),
    ),
    Case(
        "afterok: waits for success",
        'echo "AFTER=$(cat pre.done)"\n',
        ("--dependency=afterok:{pre}",),
        pre="sleep 1; echo done > pre.done\n",
    ),
    Case(
        "afterany after a failure", "echo RAN=1\n", ("--dependency=afterany:{pre}",), pre="exit 1\n"
    ),
    Case(
        "afternotok after a success, --kill-on-invalid-dep=yes",
        "echo RAN=1\n",
        ("--dependency=afternotok:{pre}", "--kill-on-invalid-dep=yes"),
        pre="true\n",
        outputs=(),
        known={"EXIT": "a job that never ran has no exit code in detente (empty); Slurm shows 0:0"},
    ),
    Case("-d ID (afterany)", "echo RAN=1\n", ("-d", "{pre}"), pre="sleep 1\n"),
    Case("sbatch: invalid --nodes", "true\n", ("--nodes=abc",), submit_only=True),
    Case(
        "sbatch: more nodes than exist",
        "true\n",
        ("-N", "9"),
        submit_only=True,
        known={
            "RC": "detente refuses at submission a job no set of its nodes could ever "
            "hold; Slurm 22.05 (EnforcePartLimits=NO) queues it to pend forever"
        },
    ),
    Case("sbatch: unknown option", "true\n", ("--frobnicate=1",), submit_only=True),
    Case("sbatch --test-only: submits nothing", "true\n", ("--test-only",), submit_only=True),
)
