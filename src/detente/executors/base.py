"""The executor contract the reconciler relies on.

An executor starts pods, reports how they ended and stops them; the reconciler records
every decision in the store before calling it. Contracts:

* `launch` returns only once the pod's process exists; its (pid, start) identify it.
* `exit_code` reads a pod's recorded end; None while it runs (or if it vanished).
* `signal` reaches the pod's whole process group, and nothing if the process is gone.
* `find` returns the live pods among ``tokens`` (re-adoption after a crash).
* `kill_pod` kills every process left of a pod whose leader is gone (by session and
  token), so its devices can be given to another job.
* `signal_batch` reaches a batch pod's batch shell alone, `signal_steps` its job steps
  (sbatch ``--signal`` with and without ``B:``).
* `run_times` gives a pod's (start, end) as the engine recorded them, where it does.

An executor that drives another engine starts a job's pods together
(`GangExecutor.launch_job`: one engine job per detente job); `EngineUnavailable` from
it means "not now" (the job waits again), any other error that the job failed.
"""

from __future__ import annotations

import signal as sig
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from detente.jobtools.alloc import NodeShare


@dataclass(frozen=True, slots=True)
class RunAs:
    """The Unix identity a pod runs as (multi-user mode)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    name: str
    umask: int = 0o077


@dataclass(frozen=True, slots=True)
class PodLaunch:
    """What one pod runs. ``stdout``/``stderr`` are the job's own paths: the pod opens
    them as ``user`` (None: the daemon's own user, single-user mode)."""

    token: str
    rank: int
    ntasks: int
    env: dict[str, str]
    cwd: str
    script: Path
    args: list[str]
    stdout: str
    stderr: str
    exit_file: Path
    user: RunAs | None = None
    #: Memory limit in bytes (0: none), enforced by a cgroup where possible.
    memory: int = 0
    #: CPU quota in milli-CPUs (0: none), enforced by a cgroup where possible.
    cpu_milli: int = 0
    #: Open the output files truncated (a batch job's first run), else appended.
    truncate: bool = False
    #: Serve the step channel to the script (a batch job's batch step).
    steps: bool = False


@dataclass(frozen=True, slots=True)
class GangLaunch:
    """A whole job for an executor that starts its pods together: its pods (rank
    order), what it holds on each node (node order), and its stored spec (a dict:
    `detente.api.jobspec`)."""

    job_id: int
    name: str
    #: What every pod's token starts with (``<tag>-<rank>``): the engine job's tag.
    tag: str
    pods: list[PodLaunch]
    shares: list[NodeShare]
    spec: dict[str, Any]


class EngineUnavailable(RuntimeError):
    """The engine could not be asked (not a refusal): try again later."""


class Executor(Protocol):
    def launch(self, pod: PodLaunch) -> tuple[int, int]: ...

    def exit_code(self, exit_file: Path) -> int | None: ...

    def signal(self, pid: int | None, start: int | None, signum: sig.Signals) -> None: ...

    def terminate(self, pid: int | None, start: int | None) -> None:
        """The SIGTERM of a stop for good (cancel, preemption, time limit, node loss),
        as the engine itself stops a job; a SIGKILL follows at the stop's deadline."""
        ...

    def alive(self, pid: int | None, start: int | None) -> bool: ...

    def reap(self) -> None: ...

    def find(self, tokens: set[str]) -> dict[str, tuple[int, int]]: ...

    def kill_pod(self, pid: int | None, token: str) -> int: ...

    def signal_batch(
        self, pid: int | None, start: int | None, exit_file: Path, sig: sig.Signals
    ) -> int: ...

    def signal_steps(self, pid: int | None, start: int | None, sig: sig.Signals) -> int: ...

    def run_times(self, exit_file: Path) -> tuple[float, float] | None: ...


class GangExecutor(Executor, Protocol):
    def launch_job(self, job: GangLaunch) -> list[tuple[int, int]]: ...
