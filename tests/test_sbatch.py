"""`#SBATCH` parsing: named cases against sbatch's documented behaviour."""

from __future__ import annotations

import pytest

from detente.api.sbatch import SbatchError, parse, split_argv
from detente.control import launch
from detente.control.store.models import Job

SCRIPT = """#!/bin/bash
#SBATCH --job-name=train
#SBATCH -N 2 --ntasks-per-node=4
#SBATCH --gres=gpu:a100:8 --cpus-per-task=6 --mem=64G
#SBATCH --time=1-02:00:00 -p team-a --qos=high --exclusive

# a comment between directives is fine
#SBATCH --output=logs/%x-%j.out --error=logs/%x-%j.err --chdir=/tmp
srun python train.py
#SBATCH --nodes=99
"""


def test_directives_up_to_the_first_command() -> None:
    s = parse(SCRIPT, "train.sh").spec
    assert (s.name, s.nodes, s.tasks_per_node, s.gpus_per_node) == ("train", 2, 4, 8)
    assert s.cpus_per_task == 6 and s.mem_per_node == 64 << 30
    assert s.time_limit == 26 * 3600 and s.queue == "team-a" and s.priority_class == "high"
    assert s.exclusive and s.output == "logs/%x-%j.out" and s.chdir == "/tmp"


def test_command_line_overrides_directives() -> None:
    s = parse(SCRIPT, "train.sh", ["-N", "1", "--time=30", "--partition", "b"]).spec
    assert (s.nodes, s.time_limit, s.queue) == (1, 1800.0, "b")


def test_array_with_limit_and_dependencies() -> None:
    text = "#SBATCH --array=0-6:2,9%2\n#SBATCH --dependency=afterok:5:6,afterany:7\ntrue\n"
    s = parse(text, "a.sh").spec
    assert s.array == [0, 2, 4, 6, 9] and s.array_limit == 2
    assert [(d.kind, d.job_id) for d in s.dependencies] == [
        ("afterok", 5), ("afterok", 6), ("afterany", 7),
    ]  # fmt: skip


def test_unknown_directives_and_invalid_ones_fail_together() -> None:
    with pytest.raises(SbatchError) as unknown:  # as sbatch: refused, never dropped
        parse("#!/bin/bash\n#SBATCH -N 1\n#SBATCH --licenses=matlab\ntrue\n", "w.sh")
    assert str(unknown.value) == (
        "w.sh:3: unrecognized option '--licenses' (not supported by detente)"
    )
    with pytest.raises(SbatchError) as cli:  # the client took --overcommit as valueless too
        parse("true\n", "t.sh", ["--overcommit", "-o", "/dev/null", "-O"])
    assert str(cli.value).splitlines() == [
        "command line: unrecognized option '--overcommit' (not supported by detente)",
        "command line: unrecognized option '-O' (not supported by detente)",
    ]
    with pytest.raises(SbatchError) as e:
        parse("#SBATCH --nodes=0\n#SBATCH --time=soon\n#SBATCH --gres=fpga:1\n", "bad.sh")
    assert str(e.value).splitlines() == [
        "bad.sh:1: --nodes: invalid value '0'",
        "bad.sh:2: --time: invalid value 'soon'",
        "bad.sh:3: --gres: invalid value 'fpga:1'",
    ]


def test_export_never_carries_the_token() -> None:
    env = {"HOME": "/h", "DETENTE_TOKEN": "secret", "X": "1"}
    assert parse("true\n", "e.sh", env=env).spec.env == {"HOME": "/h", "X": "1"}
    none = parse("#SBATCH --export=NONE,Y=2,X\ntrue\n", "e.sh", env=env).spec.env
    assert none == {"Y": "2", "X": "1"}


def test_split_argv_finds_the_script_after_options() -> None:
    assert split_argv(["-N", "2", "--gres=gpu:8", "--exclusive", "job.sh", "--lr", "3"]) == (
        ["-N", "2", "--gres=gpu:8", "--exclusive"], "job.sh", ["--lr", "3"],
    )  # fmt: skip
    with pytest.raises(SbatchError, match="no batch script"):
        split_argv(["-N", "2"])


def test_output_patterns() -> None:
    job = Job(id=12, name="train", user="ana", array_job_id=10, array_task_id=2)
    assert launch.expand("%x-%A_%a-%j-%u-%N-%n-%%.out", job, "node3", 1) == (
        "train-10_2-12-ana-node3-1-%.out"
    )
