"""How a job is put to Slurm and how Slurm's answers are read (pure functions of the
Slurm executor, named cases): the sbatch command line, the job's environment and
script, ``scontrol -o show job`` output and exit codes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from detente.executors.base import GangLaunch, PodLaunch, RunAs
from detente.executors.slurm_jobs import exit_status, parse_jobs, tag_of
from detente.executors.slurm_submit import sbatch_argv, slurm_env, slurm_script
from detente.jobtools.alloc import NodeShare


def gang(tmp_path: Path, **spec: object) -> GangLaunch:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH --array=1-9 --dependency=afterok:7\necho hi\n")
    env = {"HOME": "/home/ada", "USER": "ada", "SLURM_ARRAY_TASK_ID": "3",
           "SLURM_RESTART_COUNT": "1", "SLURM_JOB_ID": "99", "SECRET_OF_DAEMON": "x"}  # fmt: skip
    pods = [
        PodLaunch(
            token=f"t-{r}",
            rank=r,
            ntasks=1,
            env=env,
            cwd="/work",
            script=script,
            args=["a b"],
            stdout="out-%j.txt",
            stderr="err.txt",
            exit_file=tmp_path / f"pod-{r}.exit",
        )
        for r in range(2)
    ]
    shares = [NodeShare("n1", 2, 2.0, (0, 1)), NodeShare("n2", 2, 2.0, (0, 1))]
    exported = {"PATH": "/opt/bin", "SBATCH_ARRAY_INX": "1-3", "X": "1"}
    base = {"batch": True, "cpus_per_task": 1.5, "env": exported}
    return GangLaunch(7, "train", "t", pods, shares, {**base, **spec})


def test_the_job_is_pinned_with_what_detente_charged(tmp_path: Path) -> None:
    argv = sbatch_argv(gang(tmp_path, time_limit=90, mem_per_node=3 << 30, exclusive=True),
                       tmp_path / "s.sh", "gpu", euid=1000, sbatch="/usr/bin/sbatch")  # fmt: skip
    assert argv[0] == "/usr/bin/sbatch" and argv[-2:] == [str(tmp_path / "s.sh"), "a b"]
    for want in ("--nodelist=n[1-2]", "--nodes=2", "--ntasks=4", "--ntasks-per-node=2",
                 "--cpus-per-task=2", "--gres=gpu:2", "--mem=3072M", "--time=3",
                 "--exclusive", "--partition=gpu", "--no-requeue", "--comment=detente:t:2",
                 "--output=out-%%j.txt", "--open-mode=append", "--chdir=/work",
                 "--ignore-pbs"):  # fmt: skip
        assert want in argv, want


def test_uneven_gpus_are_asked_as_a_total(tmp_path: Path) -> None:
    g = gang(tmp_path)
    g.shares[1] = NodeShare("n2", 1, 1.0, (0,))
    argv = sbatch_argv(g, tmp_path / "s.sh", None, euid=0)
    assert "--gpus=3" in argv and not any(a.startswith(("--gres", "--ntasks-per")) for a in argv)


@pytest.mark.parametrize(("spec", "user", "euid", "words"), [
    ({"extra_resources": {"fpga": 1}}, None, 0, "cannot ask Slurm for fpga"),
    ({}, RunAs(1001, 1001, (), "/home/b", "bob"), 1000, "needs detente to run as root"),
])  # fmt: skip
def test_what_slurm_cannot_be_asked_is_refused(
    tmp_path: Path, spec: dict[str, object], user: RunAs | None, euid: int, words: str
) -> None:
    g = gang(tmp_path, **spec)
    if user is not None:
        g.pods[0] = _as(g.pods[0], user)
    with pytest.raises(ValueError, match=words):
        sbatch_argv(g, tmp_path / "s.sh", None, euid=euid)


def _as(p: PodLaunch, user: RunAs) -> PodLaunch:
    return replace(p, user=user)


def test_root_runs_the_job_as_its_user(tmp_path: Path) -> None:
    g = gang(tmp_path)
    g.pods[0] = _as(g.pods[0], RunAs(1001, 1002, (), "/home/b", "bob"))
    assert {"--uid=1001", "--gid=1002"} <= set(sbatch_argv(g, tmp_path / "s", None, euid=0))


def test_the_environment_is_the_submitters_not_the_daemons(tmp_path: Path) -> None:
    env = slurm_env(gang(tmp_path), {"SLURM_CONF": "/etc/x.conf", "PATH": "/daemon/bin"})
    assert env["PATH"] == "/opt/bin" and env["X"] == "1" and env["HOME"] == "/home/ada"
    assert env["SLURM_CONF"] == "/etc/x.conf" and env["DETENTE_JOB_ID"] == "7"
    assert env["SLURM_ARRAY_TASK_ID"] == "3" and env["SLURM_RESTART_COUNT"] == "1"
    assert "SBATCH_ARRAY_INX" not in env and "SLURM_JOB_ID" not in env
    assert "SECRET_OF_DAEMON" not in env


def test_the_scripts_directives_never_reach_slurm(tmp_path: Path) -> None:
    text = slurm_script(gang(tmp_path), tmp_path / "b.sh").read_text()
    assert text.splitlines() == ["#!/bin/bash", "# SBATCH --array=1-9 --dependency=afterok:7",
                                 "echo hi"]  # fmt: skip
    wrapper = slurm_script(gang(tmp_path, batch=False), tmp_path / "w.sh").read_text()
    assert "exec srun --kill-on-bad-exit=1" in wrapper and str(tmp_path / "job.sh") in wrapper


JOBS = "\n".join([
    "JobId=4 JobName=a JobState=RUNNING Reason=None ExitCode=0:0 StartTime=2026-12-01T02:00:00 "
    "EndTime=2026-12-01T03:00:00 NodeList=n[1-2] Comment=detente:abc:2 StdOut=/x",
    "JobId=5 JobName=b JobState=CANCELLED Reason=None ExitCode=0:0 StartTime=2026-12-01T02:00:00 "
    "EndTime=2026-12-01T02:00:05 NodeList=n3 Comment=(null)",
    "JobId=6 JobName=c JobState=FAILED Reason=NonZeroExitCode ExitCode=0:9 StartTime=Unknown "
    "EndTime=Unknown NodeList=(null) Comment=detente:def:1",
    "No jobs in the system",
])  # fmt: skip


def test_scontrol_show_job_is_read() -> None:
    jobs = parse_jobs(JOBS)
    assert sorted(jobs) == [4, 5, 6]
    assert jobs[4].nodes == ("n1", "n2") and not jobs[4].ended and jobs[4].exit_code is None
    assert jobs[4].end is None and jobs[4].start is not None
    assert jobs[5].ended and jobs[5].end is not None and jobs[5].end - jobs[5].start == 5
    assert jobs[6].start is None and jobs[6].nodes == ()
    assert [tag_of(j.comment) for j in jobs.values()] == ["abc", "", "def"]


@pytest.mark.parametrize(("code", "state", "want"), [
    ("0:0", "COMPLETED", 0), ("3:0", "FAILED", 3), ("0:9", "FAILED", 137),
    ("0:15", "CANCELLED", 143), ("0:0", "CANCELLED", 143), ("0:0", "TIMEOUT", 143),
    ("0:0", "RUNNING", None), ("", "FAILED", None),
])  # fmt: skip
def test_exit_codes_as_a_shell_reports_them(code: str, state: str, want: int | None) -> None:
    assert exit_status(code, state) == want


def test_a_replica_is_reached_at_its_nodes_address() -> None:
    """The gateway and the probes use the node's address from the layout (Slurm's
    NodeAddr), 127.0.0.1 for a node without one (the local executor's)."""
    from detente.control.service_controller import ServiceController
    from detente.control.store.models import Job
    from detente.gateway.registry import Registry

    ctl = ServiceController(None, Registry())  # type: ignore[arg-type]
    ctl.addrs = {"n2": "10.0.0.12"}
    assert ctl._where(Job(nodes=["n2"], port=8000)) == "10.0.0.12:8000"
    assert ctl._where(Job(nodes=["node0"], port=8001)) == "127.0.0.1:8001"
