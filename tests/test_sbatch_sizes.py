"""sbatch's options that size a job together, as named cases: -n with -N and
--ntasks-per-node, -G, --gpus-per-task, --cpus-per-gpu, --mem-per-cpu, --mem-per-gpu,
-w/-x/-C, --open-mode; and the combinations sbatch refuses, naming both options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest

from detente.api.sbatch import SbatchError, parse

GIB = 1 << 30


@dataclass
class Size:
    args: list[str]
    want: dict[str, Any]
    warns: str = ""


SIZES = {
    "-N 2 -n 4: two tasks per node": Size(
        ["-N", "2", "-n", "4"], {"nodes": 2, "tasks_per_node": 2, "total_tasks": None}),
    "-N 2 -n 3: sized for 2, laid out 2,1": Size(
        ["-N", "2", "-n", "3"], {"nodes": 2, "tasks_per_node": 2, "total_tasks": 3}),
    "-n 4 alone: four one-task pods that may share nodes": Size(
        ["-n", "4"], {"ntasks": 4, "tasks_per_node": 1, "nodes": 1}),
    "-n 8 --ntasks-per-node=4: two nodes": Size(
        ["-n", "8", "--ntasks-per-node=4"], {"nodes": 2, "tasks_per_node": 4}),
    "-n 1 -N 2: nodes lowered to tasks, with a warning": Size(
        ["-n", "1", "-N", "2"], {"nodes": 1}, warns="setting nodes to 1"),
    "--gpus-per-task=2 -N 2 -n 4: four per node": Size(
        ["--gpus-per-task=2", "-N", "2", "-n", "4"], {"gpus_per_node": 4, "gpus_per_task": 2}),
    "--gpus-per-task=gpu:1 -n 3: one per pod": Size(
        ["--gpus-per-task=gpu:1", "-n", "3"], {"gpus_per_node": 1, "ntasks": 3}),
    "-G 8 -N 2: four per node": Size(["-G", "8", "-N", "2"], {"gpus_per_node": 4}),
    "-G 3 -N 2: rounded up, with a warning": Size(
        ["-G", "3", "-N", "2"], {"gpus_per_node": 2}, warns="does not divide"),
    "--gpus=a100:2 alone: one node": Size(["--gpus=a100:2"], {"gpus_per_node": 2, "nodes": 1}),
    "--cpus-per-gpu=4 --gpus-per-task=2": Size(
        ["--cpus-per-gpu=4", "--gpus-per-task=2", "-n", "2"], {"cpus_per_task": 8}),
    "--mem-per-cpu=2G -c 3 --ntasks-per-node=2": Size(
        ["--mem-per-cpu=2G", "-c", "3", "--ntasks-per-node=2"], {"mem_per_node": 12 * GIB}),
    "--mem-per-gpu=10G --gres=gpu:4": Size(
        ["--mem-per-gpu=10G", "--gres=gpu:4"], {"mem_per_node": 40 * GIB}),
    "-w node[1-2]: exactly those, -N from the list": Size(
        ["-w", "node[1-2]"], {"nodelist": ["node1", "node2"], "nodes": 2}),
    "-x and -C": Size(["-x", "node0", "-C", "a100&ib|h100"],
                      {"exclude": ["node0"], "constraint": "a100&ib|h100"}),
    "--open-mode=append": Size(["--open-mode=append"], {"open_mode": "append"}),
    "no --open-mode: Slurm's default": Size([], {"open_mode": None, "batch": True}),
}  # fmt: skip


@pytest.mark.parametrize("case", SIZES.values(), ids=SIZES.keys())
def test_sizes(case: Size) -> None:
    p = parse("#!/bin/bash\ntrue\n", "job.sh", case.args)
    got = {k: getattr(p.spec, k) for k in case.want}
    assert got == case.want
    assert (case.warns in " ".join(p.warnings)) if case.warns else p.warnings == []


REFUSED = {
    "--mem with --mem-per-cpu": (["--mem=1G", "--mem-per-cpu=1G"], "mutually exclusive"),
    "--mem-per-gpu with --mem-per-cpu": (["--mem-per-gpu=1G", "--mem-per-cpu=1G"],
                                         "mutually exclusive"),
    "--cpus-per-gpu with -c": (["--cpus-per-gpu=2", "-c", "2", "-G", "1"], "mutually exclusive"),
    "--gpus-per-task with --gres": (["--gpus-per-task=1", "--gres=gpu:1"], "mutually exclusive"),
    "--gpus with --gpus-per-task": (["-G", "2", "--gpus-per-task=1"], "give one"),
    "--cpus-per-gpu without GPUs": (["--cpus-per-gpu=2"], "asks for no GPU"),
    "-n more than -N × per node": (["-n", "5", "-N", "2", "--ntasks-per-node=2"], "more than"),
    "-w fewer nodes than -N": (["-w", "node1", "-N", "2"], "name every node"),
    "-w a node twice": (["-w", "node1,node1"], "names a node twice"),
    "-w from a file": (["-w", "/etc/hosts"], "file is not supported"),
    "-C with brackets": (["-C", "[a|b]"], "only features joined by"),
    "--open-mode=sometimes": (["--open-mode=sometimes"], "invalid value 'sometimes'"),
    "-n 0": (["-n", "0"], "invalid value '0'"),
}  # fmt: skip


@pytest.mark.parametrize(("args", "says"), REFUSED.values(), ids=REFUSED.keys())
def test_refused(args: list[str], says: str) -> None:
    with pytest.raises(SbatchError, match=re.escape(says)):
        parse("#!/bin/bash\ntrue\n", "job.sh", args)


def test_a_refused_pair_names_both_lines() -> None:
    script = "#!/bin/bash\n#SBATCH --mem=4G\n#SBATCH -N 1\n#SBATCH --mem-per-cpu=1G\ntrue\n"
    with pytest.raises(SbatchError) as e:
        parse(script, "train.sh")
    assert "--mem (train.sh:2), --mem-per-cpu (train.sh:4)" in str(e.value)
