"""The local executor: each pod of a job is a process group on this machine.

Contract: `launch` returns once every pod's shim is running; a pod's end is read from
the exit file its shim writes (so it is known even if the control plane was down when
the pod ended). `find` locates a pod's process by the token in its environment, for
re-adoption after a crash. Processes are identified by (pid, start time): a reused
pid never passes for a pod.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from detente.executors import cgroups
from detente.executors.base import PodLaunch
from detente.executors.procs import TOKEN_VAR, _parent, alive, find, kill_pod
from detente.executors.spawn import Answer, Request, Spawner
from detente.executors.spawner import ended
from detente.executors.watch import ExitWatcher


def pod_log(exit_file: Path) -> Path:
    """Where a pod's own log is kept: beside its exit file."""
    return exit_file.with_suffix(".log")


#: Seconds between sweeps of pods' cgroups left empty (and their least age).
CGROUP_SWEEP = 60.0

#: The pod launcher without Python (pods of the daemon's own user).
LAUNCHER = Path(__file__).with_name("launcher.sh")


def _private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def cgroup_name(exit_file: Path) -> str:
    """The folder name of a bash-launched pod's cgroups: from its exit file, so they
    can be found and removed from it alone (no file listing them)."""
    return "detente-" + hashlib.sha1(str(exit_file).encode()).hexdigest()[:24]


def _cgroups(pod: PodLaunch, base: Callable[[str], Path | None]) -> list[Path]:
    """The pod's cgroups, made with its limits for the bash launcher to join (root
    only); a limit that cannot be enforced is said in its log."""
    made, warnings = cgroups.prepare(cgroup_name(pod.exit_file), pod.memory, pod.cpu_milli,
                                     base)  # fmt: skip
    _warn(pod, warnings)
    return made


def _warn(pod: PodLaunch, warnings: list[str]) -> None:
    if warnings:
        with pod_log(pod.exit_file).open("a") as log:
            log.writelines(f"{w}\n" for w in warnings)


def _env_blob(pod: PodLaunch) -> bytes:
    """The job's environment (and the pod's token), NUL-separated; ValueError for what
    exec(2) would refuse."""
    if bad := next((k for k in pod.env if not k or "=" in k or "\0" in k), None):
        raise ValueError(f"illegal environment variable name {bad[:80]!r}")  # as exec's
    if bad := next((k for k, v in pod.env.items() if "\0" in v), None):
        raise ValueError(f"environment variable {bad[:80]!r} holds a NUL")
    blob = b"".join(f"{k}={v}".encode() + b"\0" for k, v in pod.env.items())
    return blob + f"{TOKEN_VAR}={pod.token}".encode() + b"\0"


def direct(pod: PodLaunch) -> bool:
    """Whether the pod spawner launches ``pod`` itself, without the bash launcher:
    the daemon's user, one task, no memory limit (the spawner would join the group),
    output and errors to the pod's own log alone."""
    return (pod.user is None and pod.ntasks == 1 and not pod.memory
            and pod.stdout == pod.stderr == "/dev/null")  # fmt: skip


@dataclasses.dataclass(slots=True)
class Launching:
    """Pods sent to be started (`LocalExecutor.begin`), and what is known of them."""

    pods: list[PodLaunch]
    #: By pod: (pid, start), or why it did not start (final once `ready` is empty).
    out: list[tuple[int, int] | Exception]
    #: The pods sent, owed an answer: (index, request).
    ready: list[tuple[int, Request]] = dataclasses.field(default_factory=list)
    got: list[Answer] = dataclasses.field(default_factory=list)


def steps_file(exit_file: Path) -> Path:
    """Where a batch pod records its job's steps (`detente.executors.steps`)."""
    return exit_file.with_suffix(".steps")


class LocalExecutor:
    """`detente.executors.base.Executor` for processes on this machine. With
    ``on_exit`` set (`watch_exits`), the end of every pod it launches or adopts calls
    it back (`detente.executors.watch`)."""

    watcher: ExitWatcher | None = None

    def __init__(self) -> None:
        self._bases: dict[str, Path | None] = {}
        self._swept = time.monotonic()
        self._folders: set[Path] = set()  # pods' folders made (a mkdir a pod otherwise)
        self.spawner = Spawner(on_helper=self._helper_started)

    def watch_exits(self, on_exit: Callable[[], None]) -> None:
        self.watcher = ExitWatcher(on_exit)

    def _helper_started(self, exits: int) -> None:
        """A new spawner's pipe of its pods' ends: watched, or closed if nothing
        watches (it then drops them: the settle's sweep finds the exit files)."""
        if self.watcher is not None:
            self.watcher.watch_stream(exits)
        else:
            os.close(exits)

    def watch(self, pid: int) -> None:
        if self.watcher is not None:
            self.watcher.watch(pid)

    def ended(self) -> set[int] | None:
        """The pids of watched pods that ended since the last call; None without a
        watcher (then nothing tells which pods ended: the settle reads them all)."""
        return self.watcher.drain() if self.watcher is not None else None

    @staticmethod
    def alive(pid: int | None, start: int | None) -> bool:
        return alive(pid, start)

    def launch(self, pod: PodLaunch) -> tuple[int, int]:
        """`launch_many` for one pod: its (pid, start time), or the error."""
        out = self.launch_many([pod])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def launch_many(self, pods: list[PodLaunch]) -> list[tuple[int, int] | Exception]:
        """Starts each pod in a new session: (pid, start time), or the OSError or
        ValueError that stopped it (the others start all the same): `begin` and
        `finish`, waiting."""
        out = self.finish(self.begin(pods), wait=True)
        assert out is not None
        return out

    def begin(self, pods: list[PodLaunch]) -> Launching:
        """Sends ``pods`` to be started and returns at once; `finish` tells how each
        went. Batches are finished in the order they began.

        A pod of the daemon's own user runs under the bash launcher (`launcher.sh`: no
        Python interpreter per pod), or as its task alone (`direct`); one that must
        change identity under the Python shim (`detente.executors.shim`). Either way
        the job's environment reaches only its tasks (no LD_PRELOAD or PYTHONPATH of a
        user's runs in the daemon's name), and the pod's launch files sit beside its
        exit file, private to the daemon. The processes are spawned by helper
        processes (`detente.executors.spawner`): this one never waits for a child's
        exec, nor holds the GIL while one runs."""
        batch = Launching(pods, [OSError("not started")] * len(pods))
        for k, pod in enumerate(pods):
            try:
                batch.ready.append((k, self._request(pod)))
            except (OSError, ValueError) as e:
                batch.out[k] = e
        sent = self.spawner.send([r for _, r in batch.ready])
        for (k, _), err in zip(batch.ready, sent, strict=True):
            if err is not None:  # not sent: owed no answer
                batch.out[k] = err
        batch.ready = [kr for kr, err in zip(batch.ready, sent, strict=True) if err is None]
        return batch

    def finish(self, batch: Launching, wait: bool) -> list[tuple[int, int] | Exception] | None:
        """Each pod of ``batch``: (pid, start time) or why it did not start; None while
        some answer has not come (without ``wait``)."""
        batch.got += self.spawner.answers(wait, len(batch.ready) - len(batch.got))
        if len(batch.got) < len(batch.ready):
            return None
        for (k, req), answer in zip(batch.ready, batch.got, strict=True):
            pod = batch.pods[k]
            if isinstance(answer, OSError):
                if "spawner died" in str(answer):  # it may have started the pod
                    kill_pod(pod.token)
                elif req[0] == "pod":  # its words, as the spawner left them
                    why = pod.exit_file.with_suffix(".reason")
                    with contextlib.suppress(OSError):
                        answer = OSError(answer.errno, why.read_text()[:1000])
            elif req[0] != "pod" or self.watcher is None:  # else the spawner tells
                self.watch(answer[0])
            batch.out[k] = answer
        batch.ready, batch.got = [], []
        return batch.out

    def _request(self, pod: PodLaunch) -> Request:
        """What the spawner starts for ``pod`` (`detente.executors.spawner`'s
        requests): a simple pod — the daemon's user, one task, no memory limit, its
        output to its own log alone (``-o /dev/null``) — as its task directly, the
        spawner its launcher; any other under the bash launcher or the shim."""
        if (folder := pod.exit_file.parent) not in self._folders:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._folders.add(folder)
        if pod.user is not None:
            argv, env = self._shim(pod)
            return "exec", argv, env, b""
        blob = _env_blob(pod)
        if direct(pod):
            return self._direct(pod)
        on_fd = hasattr(os, "memfd_create")
        argv, env = self._bash(pod, blob if not on_fd else None)
        return "exec", argv, env, blob if on_fd else b""

    def _direct(self, pod: PodLaunch) -> Request:
        """The request for a pod the spawner launches itself: its task's exact
        environment (the job's, its token, its rank as the launcher sets it)."""
        rank = pod.rank * pod.ntasks
        env = {**pod.env, TOKEN_VAR: pod.token, "RANK": str(rank), "LOCAL_RANK": "0",
               "SLURM_PROCID": str(rank), "SLURM_LOCALID": "0"}  # fmt: skip
        if pod.steps:
            env["DETENTE_STEPS_FILE"] = str(steps_file(pod.exit_file))
        groups, warnings = cgroups.plan(cgroup_name(pod.exit_file), pod.memory, pod.cpu_milli,
                                        self._base)  # fmt: skip
        _warn(pod, warnings)  # made (or kept ones reused) by the spawner, without our waiting
        return ("pod", str(pod.script), list(pod.args), env, pod.cwd,
                str(pod_log(pod.exit_file)), str(pod.exit_file), groups, "")  # fmt: skip

    def _base(self, controller: str) -> Path | None:
        """This process's cgroup folder for ``controller``, read once."""
        if controller not in self._bases:
            self._bases[controller] = cgroups.base_dir(controller)
        return self._bases[controller]

    def _bash(self, pod: PodLaunch, in_file: bytes | None) -> tuple[list[str], dict[str, str]]:
        """The launcher's argv and environment; the job's environment reaches it on
        `ENV_FD`, or (``in_file``: it) in a 0600 file beside the exit file."""
        envfile = ""
        if in_file is not None:
            envfile = str(pod.exit_file.with_suffix(".env"))
            _private(Path(envfile), in_file)
        steps = str(steps_file(pod.exit_file)) if pod.steps else ""
        groups = _cgroups(pod, self._base) if pod.ntasks else []
        env = {
            TOKEN_VAR: pod.token, "PATH": "/usr/local/bin:/usr/bin:/bin",
            "L_EXIT": str(pod.exit_file), "L_LOG": str(pod_log(pod.exit_file)),
            "L_NTASKS": str(pod.ntasks), "L_BASE": str(pod.rank * pod.ntasks),
            "L_SCRIPT": str(pod.script), "L_CWD": pod.cwd, "L_OUT": pod.stdout,
            "L_ERR": pod.stderr, "L_TRUNC": "1" if pod.truncate else "0", "L_STEPS": steps,
            "L_CGROUPS": ":".join(str(d) for d in groups), "L_ENVFILE": envfile,
        }  # fmt: skip
        return ["/bin/bash", str(LAUNCHER), *pod.args], env

    @staticmethod
    def _shim(pod: PodLaunch) -> tuple[list[str], dict[str, str]]:
        cfg = {
            "exit_file": str(pod.exit_file), "pod_log": str(pod_log(pod.exit_file)),
            "ntasks": pod.ntasks, "base": pod.rank * pod.ntasks, "script": str(pod.script),
            "args": pod.args, "env": {**pod.env, TOKEN_VAR: pod.token}, "cwd": pod.cwd,
            "stdout": pod.stdout, "stderr": pod.stderr,
            "user": dataclasses.asdict(pod.user) if pod.user else None,
            "memory": pod.memory, "cpu_milli": pod.cpu_milli, "token": pod.token,
            "truncate": pod.truncate,
            "steps": str(steps_file(pod.exit_file)) if pod.steps else None,
        }  # fmt: skip
        conf = pod.exit_file.with_suffix(".json")
        _private(conf, json.dumps(cfg).encode())
        env = {TOKEN_VAR: pod.token, "PATH": "/usr/local/bin:/usr/bin:/bin"}
        return [sys.executable, "-I", "-m", "detente.executors.shim", str(conf)], env

    @staticmethod
    def run_times(exit_file: Path) -> tuple[float, float] | None:
        """None: the control plane's own clock is the record here."""
        return None

    @staticmethod
    def out_of_memory(exit_file: Path) -> bool:
        """Whether the pod's cgroup saw the kernel kill a task for memory."""
        return exit_file.with_suffix(".oom").exists()

    def exit_code(self, exit_file: Path) -> int | None:
        """The code a pod's launcher recorded, once whole ("CODE\\n": the bash launcher
        writes it in place, without a rename); None before. The pod spawner records a
        simple pod's on its log (`spawner.record_end`), the others in the exit file.
        The pod's cgroups, made for its bash launcher, are removed once its code is
        read."""
        try:
            text = ended(exit_file)
            code = int(text) if text is not None and text.endswith("\n") else None
        except ValueError:
            return None
        if code is not None and os.geteuid() == 0:
            name = cgroup_name(exit_file)
            cgroups.remove([b / name for c in cgroups.CONTROLLERS if (b := self._base(c))])
        return code

    @staticmethod
    def signal(pid: int | None, start: int | None, sig: signal.Signals) -> None:
        """Signals the pod's whole process group, if it is still that process."""
        if pid is not None and alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig)

    @classmethod
    def terminate(cls, pid: int | None, start: int | None) -> None:
        """SIGTERM to the pod's process group."""
        cls.signal(pid, start, signal.SIGTERM)

    @staticmethod
    def signal_batch(
        pid: int | None, start: int | None, exit_file: Path, sig: signal.Signals
    ) -> int:
        """Signals the batch shell alone (sbatch ``--signal=B:``): the pid its pod's
        shim recorded, if that process is still the shim's child — or the pod itself,
        where the spawner launched it (`direct`: it is the batch shell). How many
        signalled."""
        try:
            child = int(exit_file.with_suffix(".batch").read_text())
        except (OSError, ValueError):
            if pid is None or _launcher(pid):
                return 0
            child = pid
        if not alive(pid, start) or (child != pid and _parent(child) != pid):
            return 0
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, sig)
            return 1
        return 0

    @staticmethod
    def signal_steps(pid: int | None, start: int | None, sig: signal.Signals) -> int:
        """Signals every job step of the pod (each ``srun`` in its process group, which
        forwards to its tasks), not the batch shell: sbatch ``--signal`` without B:."""
        if pid is None or not alive(pid, start):
            return 0
        sent = 0
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                if os.getpgid(int(d.name)) != pid:
                    continue
                argv = (d / "cmdline").read_bytes().split(b"\0")
            except (OSError, ProcessLookupError):
                continue
            tool = len(argv) > 3 and b"jobtools" in argv[2] and argv[2].endswith(b"/run.py")
            if tool and argv[3] == b"srun":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(d.name), sig)
                    sent += 1
        return sent

    @staticmethod
    def kill_pod(pid: int | None, token: str) -> int:
        return kill_pod(token)

    def reap(self) -> None:
        """Collects ended children so they do not linger as zombies; every
        `CGROUP_SWEEP` seconds, removes pods' cgroups left empty (a pod lost without an
        exit file, whose groups nothing else removes)."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
        now = time.monotonic()
        if os.geteuid() == 0 and now - self._swept >= CGROUP_SWEEP:
            self._swept = now
            parents = [b for c in cgroups.CONTROLLERS if (b := self._base(c)) is not None]
            cgroups.sweep(parents, older_than=CGROUP_SWEEP)

    @staticmethod
    def find(tokens: set[str]) -> dict[str, tuple[int, int]]:
        """token → (pid, start) for live processes carrying one of ``tokens``."""
        return find(tokens)


def _launcher(pid: int) -> bool:
    """Whether ``pid`` runs a launcher (bash's or the shim), not a job's task."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return LAUNCHER.name.encode() in argv or b"executors.shim" in argv
