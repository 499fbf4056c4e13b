"""The bash launcher (`detente/executors/launcher.sh`) on real processes: the task
sees the job's environment and nothing of the launcher's, whichever way it is set
(bash's own export, or env -i for a name bash cannot export), output reaches the
job's file and the pod's log, and the exit code is written whole, with its newline."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from detente.executors import cgroups, spawner
from detente.executors.base import PodLaunch
from detente.executors.local import LocalExecutor, cgroup_name, pod_log
from detente.executors.spawn import Spawner

#: What bash adds to any child's environment by itself.
BASH_OWN = {"PWD", "SHLVL", "_"}
RANKS = {"RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID"}


def run(tmp: Path, env: dict[str, str], script: str, output: str,
        **limits: int) -> tuple[int, Path]:  # fmt: skip
    body = tmp / "job.sh"
    body.write_text(f"#!/bin/bash\n{script}\n")
    exit_file = tmp / "pods" / "pod-0.exit"
    pod = PodLaunch(token="tok-0", rank=0, ntasks=1, env=env, cwd=str(tmp), script=body,
                    args=[], stdout=output, stderr=output, exit_file=exit_file,
                    **limits)  # fmt: skip
    ex = LocalExecutor()
    ex.launch(pod)  # started by the pod spawner: not this process's child
    deadline = time.monotonic() + 10
    while (code := ex.exit_code(exit_file)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert code is not None and spawner.ended(exit_file) == f"{code}\n"
    return code, exit_file


@pytest.mark.parametrize("odd", [None, "A-B"], ids=["exported-by-bash", "env-i-fallback"])
def test_the_task_sees_the_jobs_environment_alone(tmp_path: Path, odd: str | None) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nowhere", "WITH SPACE": "x", "Q": "a b\nc'd"}
    if odd:
        env[odd] = "1"
    if odd is None:
        del env["WITH SPACE"]  # bash cannot export it either
    out = tmp_path / "out.txt"
    code, exit_file = run(tmp_path, env, "env -0 > env.bin; echo done; exit 3", str(out))
    assert code == 3
    got = dict(kv.split("=", 1) for kv in (tmp_path / "env.bin").read_text().split("\0") if kv)
    assert set(got) - BASH_OWN == {*env, "DETENTE_POD_TOKEN", *RANKS}
    assert {k: got[k] for k in env} == env and got["DETENTE_POD_TOKEN"] == "tok-0"
    assert out.read_text() == "done\n" and "done" in pod_log(exit_file).read_text()


def test_output_to_dev_null_still_reaches_the_pods_log(tmp_path: Path) -> None:
    code, exit_file = run(tmp_path, {"PATH": "/usr/bin:/bin"}, "echo hi; echo err >&2", "/dev/null")
    assert code == 0
    assert pod_log(exit_file).read_text().splitlines() == ["hi", "err"]


def test_an_output_that_cannot_be_opened_fails_the_pod_with_the_reason(tmp_path: Path) -> None:
    code, exit_file = run(tmp_path, {}, "echo never", str(tmp_path / "no" / "such" / "dir.out"))
    assert code == 1
    assert "No such file or directory" in exit_file.with_suffix(".reason").read_text()


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.base_dir("cpu") is None,
                    reason="cgroups need root and the cpu controller")  # fmt: skip
def test_the_pod_runs_in_its_own_cgroups_removed_once_it_ended(tmp_path: Path) -> None:
    """The control plane makes the groups with the limits; the launcher joins them (so
    do its tasks); reading the pod's exit code removes them, found from the exit file."""
    code, exit_file = run(tmp_path, {}, "cat /proc/self/cgroup > cg.txt", "/dev/null",
                          memory=256 << 20, cpu_milli=500)  # fmt: skip
    assert code == 0
    mine = [ln.split(":", 2)[2] for ln in (tmp_path / "cg.txt").read_text().splitlines()
            if "cpu" in ln.split(":")[1].split(",")]  # fmt: skip
    name = cgroup_name(exit_file)
    assert mine and mine[0].endswith(f"/{name}")
    cpu = cgroups.base_dir("cpu")
    assert cpu is not None and not (cpu / name).exists()


def _cpu_group(cgroup_file: Path) -> Path:
    cpu = cgroups.base_dir("cpu")
    assert cpu is not None
    for ln in cgroup_file.read_text().splitlines():
        if "cpu" in ln.split(":")[1].split(","):
            return cpu.parent / "cpu" / ln.split(":", 2)[2].lstrip("/")
    raise AssertionError("no cpu group")


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.base_dir("cpu") is None,
                    reason="cgroups need root and the cpu controller")  # fmt: skip
def test_a_simple_pod_runs_in_a_group_of_its_own_kept_for_the_next_once_empty(
    tmp_path: Path,
) -> None:
    """The spawner makes the group with the pod's CPU limit (or reuses a kept one) and
    the task is born in it: pods running at once are in different groups; an ended
    pod's group, once empty, is the next one's; the spawner removes them as it exits."""
    ex = LocalExecutor()
    ex.spawner = Spawner(helpers=1)  # one helper: the one that keeps the groups
    body = tmp_path / "job.sh"
    body.write_text("#!/bin/bash\ncat /proc/self/cgroup > cg-$1.txt\n[ -z $2 ] || sleep $2\n")

    def pod(name: str, *args: str) -> PodLaunch:
        return PodLaunch(token=f"tok-{name}", rank=0, ntasks=1, env={}, cwd=str(tmp_path),
                         script=body, args=[name, *args], stdout="/dev/null",
                         stderr="/dev/null", exit_file=tmp_path / "pods" / f"{name}.exit",
                         cpu_milli=500)  # fmt: skip

    def ended(name: str) -> None:
        deadline = time.monotonic() + 10
        while ex.exit_code(tmp_path / "pods" / f"{name}.exit") is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)

    ex.launch_many([pod("a", "1"), pod("b", "1")])
    ended("a")
    ended("b")
    a, b = _cpu_group(tmp_path / "cg-a.txt"), _cpu_group(tmp_path / "cg-b.txt")
    assert a != b and a.name.startswith("detente-") and b.name.startswith("detente-")
    assert (a / "cpu.cfs_quota_us").read_text().strip() == "50000"  # 0.5 of a 100 ms period
    time.sleep(0.2)  # the spawner reaps and takes the groups back
    ex.launch(pod("c"))
    ended("c")
    assert _cpu_group(tmp_path / "cg-c.txt") in (a, b)
    helper = ex.spawner._helpers[0]
    assert helper is not None
    os.close(helper.wr)  # its input ends: it exits, its pods having ended
    os.waitpid(helper.pid, 0)
    assert not a.exists() and not b.exists()


def test_the_environment_reaches_the_launcher_without_a_file(tmp_path: Path) -> None:
    """On a memory file (fd 9), closed before the tasks start: nothing of the job's
    environment is written beside its exit file."""
    code, exit_file = run(tmp_path, {"SECRET": "s3"}, 'echo "$SECRET"; ls /proc/self/fd',
                          str(tmp_path / "o.txt"))  # fmt: skip
    out = (tmp_path / "o.txt").read_text().split()
    assert code == 0 and out[0] == "s3" and "9" not in out[1:]
    assert not exit_file.with_suffix(".env").exists()


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.base_dir("cpu") is None,
                    reason="cgroups need root and the cpu controller")  # fmt: skip
def test_empty_leftover_cgroups_are_swept_and_busy_ones_kept(tmp_path: Path) -> None:
    """Swept under a parent of the test's own, so a killed run's leftovers elsewhere on
    the machine (swept by the daemons, an hour on) cannot change the counts."""
    cpu = cgroups.base_dir("cpu")
    assert cpu is not None
    parent = cpu / f"sweep-test-{os.getpid()}"
    empty, busy = parent / "detente-sweep-empty", parent / "detente-sweep-busy"
    parent.mkdir()
    empty.mkdir()
    busy.mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        (busy / "cgroup.procs").write_text(str(sleeper.pid))
        assert cgroups.sweep([parent], older_than=3600) == 0  # too young to be a leftover
        assert cgroups.sweep([parent], older_than=0) == 1
        assert not empty.exists() and busy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
        busy.rmdir()
        parent.rmdir()


def test_a_pod_gets_sigpipe_as_a_shell_does(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; the pod spawner restores it, so `yes | head` ends `yes`
    by the signal (141), as on a login shell or under Slurm, not by a write error."""
    code, _ = run(tmp_path, {}, 'yes | head -1 >/dev/null; exit "${PIPESTATUS[0]}"', "/dev/null")
    assert code == 141


def test_the_spawner_is_started_again_after_it_died(tmp_path: Path) -> None:
    ex = LocalExecutor()
    body = tmp_path / "job.sh"
    body.write_text("#!/bin/bash\nexit 3\n")

    def pod(rank: int) -> PodLaunch:
        return PodLaunch(token=f"tok-{rank}", rank=rank, ntasks=1, env={}, cwd=str(tmp_path),
                         script=body, args=[], stdout="/dev/null", stderr="/dev/null",
                         exit_file=tmp_path / "pods" / f"p-{rank}.exit")  # fmt: skip

    ex.spawner = Spawner(helpers=1)
    ex.launch(pod(0))
    helper = ex.spawner._helpers[0]
    assert helper is not None
    os.kill(helper.pid, signal.SIGKILL)
    os.waitpid(helper.pid, 0)
    pid, _ = ex.launch(pod(1))  # a new helper starts it
    again = ex.spawner._helpers[0]
    assert again is not None and again.pid != helper.pid
    assert pid > 0
    deadline = time.monotonic() + 10
    while ex.exit_code(tmp_path / "pods" / "p-1.exit") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ex.exit_code(tmp_path / "pods" / "p-1.exit") == 3
    ex.spawner.close()


def test_an_unstartable_pod_is_an_error_and_the_others_start(tmp_path: Path) -> None:
    ex = LocalExecutor()
    body = tmp_path / "job.sh"
    body.write_text("#!/bin/bash\nexit 0\n")
    good = PodLaunch(token="tok-a", rank=0, ntasks=1, env={}, cwd=str(tmp_path), script=body,
                     args=[], stdout="/dev/null", stderr="/dev/null",
                     exit_file=tmp_path / "pods" / "a.exit")  # fmt: skip
    bad = dataclasses.replace(good, token="tok-b", env={"A=B": "1"},
                              exit_file=tmp_path / "pods" / "b.exit")  # fmt: skip
    out = ex.launch_many([bad, good])
    assert isinstance(out[0], ValueError) and "A=B" in str(out[0])
    assert not isinstance(out[1], Exception) and out[1][0] > 0
    ex.spawner.close()


def test_a_simple_pod_is_its_task_started_by_the_spawner(tmp_path: Path) -> None:
    """One task, output to the pod's log alone, no memory limit: no bash launcher —
    the pod's process is the job's batch shell, with exactly the job's environment
    (and its token and ranks), and the spawner writes its exit code."""
    env = {"PATH": "/usr/bin:/bin", "A-B": "1", "Q": "a b\nc'd"}
    script = 'env -0 > env.bin; tr "\\0" " " < /proc/$$/cmdline; echo; exit 3'
    code, exit_file = run(tmp_path, env, script, "/dev/null")
    assert code == 3
    got = dict(kv.split("=", 1) for kv in (tmp_path / "env.bin").read_text().split("\0") if kv)
    assert set(got) - BASH_OWN == {*env, "DETENTE_POD_TOKEN", *RANKS}
    assert {k: got[k] for k in env} == env
    cmdline = pod_log(exit_file).read_text().split()
    assert cmdline[:2] == ["/bin/bash", str(tmp_path / "job.sh")]  # no launcher.sh


def test_a_simple_pod_killed_by_a_signal_ends_with_128_plus_it(tmp_path: Path) -> None:
    code, _ = run(tmp_path, {}, "kill -TERM $$; sleep 5", "/dev/null")
    assert code == 128 + signal.SIGTERM


def pod_in_missing_folder(tmp_path: Path, cpu_milli: int = 0) -> PodLaunch:
    body = tmp_path / "job.sh"
    body.write_text("#!/bin/bash\ntrue\n")
    return PodLaunch(token="tok-0", rank=0, ntasks=1, env={}, cwd=str(tmp_path / "gone"),
                     script=body, args=[], stdout="/dev/null", stderr="/dev/null",
                     exit_file=tmp_path / "pods" / "p.exit", cpu_milli=cpu_milli)  # fmt: skip


def test_a_simple_pod_in_a_missing_folder_fails_with_the_reason(tmp_path: Path) -> None:
    (out,) = LocalExecutor().launch_many([pod_in_missing_folder(tmp_path)])
    assert isinstance(out, OSError) and str(tmp_path / "gone") in str(out)
    assert "No such file or directory" in str(out)


@pytest.mark.skipif(os.geteuid() != 0 or cgroups.base_dir("cpu") is None,
                    reason="cgroups need root and the cpu controller")  # fmt: skip
def test_a_simple_pod_that_cannot_start_leaves_no_cgroup(tmp_path: Path) -> None:
    pod = pod_in_missing_folder(tmp_path, cpu_milli=500)
    (out,) = LocalExecutor().launch_many([pod])
    cpu = cgroups.base_dir("cpu")
    assert isinstance(out, OSError) and cpu is not None
    assert not (cpu / cgroup_name(pod.exit_file)).exists()


@pytest.mark.parametrize("output", ["/dev/null", "out.txt"], ids=["spawner", "launcher"])
def test_a_task_inherits_no_descriptor_of_the_pod_spawner(tmp_path: Path, output: str) -> None:
    """The spawner's request, answer and exits pipes are its own: a task holding the
    answer pipe would keep the control plane waiting on a spawner that died, and one
    reading the request pipe would read other jobs' environments."""
    script = "find /proc/$$/fd -mindepth 1 -printf '%f %l\\n' > fds.txt"  # the batch shell's
    code, _ = run(tmp_path, {}, script, output)
    assert code == 0
    fds = dict(line.split(" ", 1) for line in (tmp_path / "fds.txt").read_text().splitlines())
    # 1 and 2 are pipes to tee under the launcher; no other descriptor may be one.
    assert not [f for f, what in fds.items() if what.startswith("pipe:") and int(f) > 2], fds


def test_a_pod_whose_folder_was_removed_still_ends(tmp_path: Path) -> None:
    """The bash launcher retries its exit file while the disk is full, not once its
    folder is gone (it looped for ever, and its pod with it)."""
    body = tmp_path / "job.sh"
    body.write_text(f"#!/bin/bash\ntouch {tmp_path / 'started'}\nsleep 0.5\n")
    exit_file = tmp_path / "pods" / "pod-0.exit"
    exit_file.parent.mkdir()
    pod = PodLaunch(token="tok-0", rank=0, ntasks=1, env={}, cwd=str(tmp_path), script=body,
                    args=[], stdout=str(tmp_path / "out"), stderr=str(tmp_path / "out"),
                    exit_file=exit_file)  # fmt: skip
    ex = LocalExecutor()
    pid, start = ex.launch(pod)
    deadline = time.monotonic() + 10
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)  # removed while its task runs, not before the launcher starts
    shutil.rmtree(exit_file.parent)
    deadline = time.monotonic() + 10
    while ex.alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = ex.alive(pid, start)
    if alive:
        ex.signal(pid, start, signal.SIGKILL)
    assert not alive


def test_the_spawner_tells_a_simple_pods_end_when_its_folder_was_removed(
    tmp_path: Path,
) -> None:
    """The pod spawner writes the exit file while the disk is full, not once its folder
    is gone: it still reaps the pod and tells its end (it spun for ever, reaping no
    other pod and serving no request)."""
    body = tmp_path / "job.sh"
    body.write_text("sleep 0.3\n")
    folder = tmp_path / "pods"
    folder.mkdir()
    r, w = os.pipe()
    pods = spawner.Pods(w)
    pid = pods.start(str(body), [], {"PATH": os.environ["PATH"]}, str(tmp_path),
                     str(tmp_path / "log"), str(folder / "1-1-0.exit"), [], "")  # fmt: skip
    shutil.rmtree(folder)
    done = threading.Thread(target=_reap_until_gone, args=(pods, pid), daemon=True)
    done.start()
    done.join(10)
    assert not done.is_alive()
    assert os.read(r, spawner.PID.size) == spawner.PID.pack(pid)


def _reap_until_gone(pods: spawner.Pods, pid: int) -> None:
    while pid in pods.running:
        pods.reap()
        time.sleep(0.02)


@pytest.mark.parametrize("output", ["/dev/null", "file"])
def test_a_simple_pods_end_is_recorded_on_its_log_and_any_others_in_its_exit_file(
    tmp_path: Path, output: str
) -> None:
    """A simple pod (output to its own log alone) makes no exit file: making a file
    costs an inode allocation, slow on this machine's ext4; a pod under the bash
    launcher still writes one."""
    out = output if output == "/dev/null" else str(tmp_path / "out.txt")
    code, exit_file = run(tmp_path, {"PATH": "/usr/bin:/bin"}, "exit 7", out)
    assert code == 7
    simple = output == "/dev/null"
    assert (spawner.END in os.listxattr(pod_log(exit_file))) is simple
    assert exit_file.exists() is not simple


def test_the_spawner_writes_the_exit_file_where_the_log_takes_no_record(tmp_path: Path) -> None:
    """No log beside the exit file (or a filesystem without user attributes): the exit
    file, as before."""
    (tmp_path / "pods").mkdir()
    exit_file = tmp_path / "pods" / "1-1-0.exit"
    spawner.record_end(str(exit_file), 3)
    assert exit_file.read_text() == "3\n" and spawner.ended(exit_file) == "3\n"
    assert LocalExecutor().exit_code(exit_file) == 3
