"""The Slurm executor: every detente job is one Slurm job pinned to the nodes detente
chose (``sbatch --nodelist --nodes``), run by Slurm's own daemons, cgroups and
``srun``.

Contracts (those of `detente.executors.base`, for an engine):

* A pod is identified by (Slurm job id, rank); every pod of a job shares its Slurm
  job, which is signalled once, through rank 0.
* The job's tag (its pods' token base) is in the Slurm job's ``--comment`` and in a
  file beside each pod's exit file, written *before* ``sbatch``: after a crash the
  Slurm job is found again by its tag (`find`), never submitted twice.
* A pod's end is read from Slurm (`Tracker`, one ``scontrol`` call per half second for
  every job) and written to its exit file; a job Slurm lost with its node
  (``NODE_FAIL``) leaves none, so it is settled as lost (and requeued if it asked).
* While slurmctld does not answer, every job counts as alive and launches raise
  `EngineUnavailable` (the job waits again): nothing is lost for want of an answer.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from signal import SIGKILL, Signals
from typing import Any

from detente.executors import slurm_nodes
from detente.executors.base import EngineUnavailable, GangLaunch, PodLaunch
from detente.executors.slurm_jobs import Tracker
from detente.executors.slurm_submit import sbatch_argv, slurm_env, slurm_script

#: sbatch's words when it could not reach slurmctld (not a refusal of the job).
_UNREACHABLE = ("Unable to contact slurm controller", "Socket timed out", "Connection refused",
                "Zero Bytes were transmitted", "temporarily unavailable")  # fmt: skip
#: How long launches wait after slurmctld did not answer before asking again.
RETRY = 5.0
#: How long a job may be missing from Slurm's answer before it counts as gone.
MISSING_GRACE = 30.0
#: How often the partition's node states are read again.
NODE_PERIOD = 2.0


class SlurmRefused(ValueError):
    """Slurm refused the job (sbatch's own words)."""


def tag_file(exit_file: Path) -> Path:
    return exit_file.with_suffix(".slurm")


class SlurmExecutor:
    """`detente.executors.base.GangExecutor` for a Slurm cluster whose clients find
    it through ``SLURM_CONF`` (in ``env``) and ``PATH``."""

    def __init__(
        self, env: Mapping[str, str], partition: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.env = {"PATH": env.get("PATH", "/usr/local/bin:/usr/bin:/bin")}
        if "SLURM_CONF" in env:
            self.env["SLURM_CONF"] = env["SLURM_CONF"]
        self.partition, self.clock = partition, clock
        self.tracker = Tracker(self.env, clock)
        #: Found on the daemon's PATH: the job's own PATH is the submitter's.
        self.sbatch = shutil.which("sbatch", path=self.env["PATH"]) or "sbatch"
        self._retry_at = -math.inf
        self._nodes_at = -math.inf
        self._nodes: dict[str, dict[str, str]] | None = None
        #: Tags of jobs whose sbatch gave no answer (the job waits again here).
        self._abandoned: set[str] = set()
        #: Slurm job id → when it was first missing from Slurm's answer.
        self._missing: dict[int, float] = {}

    # -- starting -----------------------------------------------------------------------

    def launch(self, pod: PodLaunch) -> tuple[int, int]:
        raise NotImplementedError("the Slurm executor starts whole jobs (launch_job)")

    def launch_job(self, job: GangLaunch) -> list[tuple[int, int]]:
        """Submits ``job`` as one Slurm job on its nodes; (Slurm id, rank) per pod.
        SlurmRefused with sbatch's words, or EngineUnavailable."""
        if self.clock() < self._retry_at or not self.tracker.fresh:
            raise EngineUnavailable(f"slurmctld did not answer: {self.tracker.error}")
        first = job.pods[0]
        first.exit_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        for pod in job.pods:  # before sbatch: a crash after it still finds the job by tag
            _private(tag_file(pod.exit_file), f"{job.tag} {int(bool(job.spec.get('batch')))}\n")
        # The job's own files beside its pods' (JOB-ATTEMPT-RANK.exit): JOB-ATTEMPT.*
        stem = first.exit_file.stem.rpartition("-")[0]
        script = slurm_script(job, first.exit_file.with_name(f"{stem}.slurm-batch.sh"))
        # The job's environment goes in a file Slurm reads: sbatch itself runs with the
        # daemon's own few variables (a user's LD_PRELOAD never runs in its name).
        envfile = first.exit_file.with_name(f"{stem}.slurm-env")
        blob = "".join(f"{k}={v}\0" for k, v in slurm_env(job, self.env).items())
        _private(envfile, blob)
        argv = sbatch_argv(job, script, self.partition, os.geteuid(), self.sbatch)
        argv.insert(1, f"--export-file={envfile}")
        try:
            p = subprocess.run(argv, env=self.env, capture_output=True,
                               text=True, timeout=60, cwd=first.exit_file.parent)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as e:
            # sbatch may have submitted it all the same: if it turns up, it is cancelled.
            self._abandoned.add(job.tag)
            self._unreachable(str(e))
            raise EngineUnavailable(f"sbatch: {e}") from None
        words = p.stderr.strip()[-800:]
        if p.returncode != 0:
            if any(w in words for w in _UNREACHABLE):
                self._unreachable(words)
                raise EngineUnavailable(words)
            raise SlurmRefused(f"Slurm refused the job: {words}")
        slurm_id = int(p.stdout.strip().split(";")[0])
        self.tracker.expire()
        return [(slurm_id, rank) for rank in range(len(job.pods))]

    def unavailable(self) -> str | None:
        """Why no job can be started now (slurmctld does not answer), or None."""
        if self.tracker.fresh and self.clock() >= self._retry_at:
            return None
        return f"EngineDown: slurmctld did not answer ({self.tracker.error[:200]})"

    def _unreachable(self, why: str) -> None:
        self._retry_at = self.clock() + RETRY
        self.tracker.reachable, self.tracker.error = False, why

    # -- ends -----------------------------------------------------------------------------

    def alive(self, pid: int | None, start: int | None) -> bool:
        """Whether the Slurm job still runs (or waits); True while Slurm cannot be asked."""
        if pid is None:
            return False
        job = self.tracker.get(pid)
        if not self.tracker.fresh:
            return True
        if job is None:  # not (yet) in a restarted slurmctld's answer, or purged
            first = self._missing.setdefault(pid, self.clock())
            return self.clock() - first < MISSING_GRACE
        self._missing.pop(pid, None)
        return not job.ended

    def exit_code(self, exit_file: Path) -> int | None:
        """The pod's exit code once its Slurm job ended (written to its exit file, with
        its run times and an out-of-memory marker); None while it runs, or if Slurm
        lost it with a node."""
        with contextlib.suppress(OSError, ValueError):
            return int(exit_file.read_text().strip())
        try:
            tag, batch = tag_file(exit_file).read_text().split()
        except (OSError, ValueError):
            return None
        job = self.tracker.by_tag(tag)
        if job is None or not job.ended or job.state in ("NODE_FAIL", "BOOT_FAIL"):
            return None
        rank = int(exit_file.stem.rpartition("-")[2])
        code = job.exit_code if rank == 0 or batch == "0" else 0
        if code is None:
            return None
        if job.state == "OUT_OF_MEMORY":
            _private(exit_file.with_suffix(".oom"), "")
        if job.start is not None and job.end is not None:
            _private(exit_file.with_suffix(".times"), f"{job.start} {job.end}\n")
        _private(exit_file, f"{code}\n")
        return code

    def run_times(self, exit_file: Path) -> tuple[float, float] | None:
        """(start, end) as Slurm recorded them, once the pod's end was read."""
        try:
            start, end = exit_file.with_suffix(".times").read_text().split()
            return float(start), float(end)
        except (OSError, ValueError):
            return None

    def find(self, tokens: set[str]) -> dict[str, tuple[int, int]]:
        """token → (Slurm id, rank) of the Slurm jobs launched for ``tokens``' pods,
        running or ended (an ended one's end is then read by `exit_code`).
        EngineUnavailable if Slurm does not answer: recovery must not guess."""
        if not tokens:
            return {}
        self.tracker.ask()
        jobs = self.tracker.jobs()
        if jobs is None or not self.tracker.reachable:
            raise EngineUnavailable(f"slurmctld did not answer: {self.tracker.error}")
        found = {}
        for t in tokens:
            tag, _, rank = t.rpartition("-")
            if (job := self.tracker.by_tag(tag)) is not None and rank.isdigit():
                found[t] = (job.id, int(rank))
        return found

    # -- signals -----------------------------------------------------------------------------

    def signal(self, pid: int | None, start: int | None, sig: Signals) -> None:
        """SIGKILL: the whole Slurm job (batch shell and steps), ended in Slurm. Any
        other signal (a manifest's ``--signal`` warning): its steps, where its tasks
        run under ``srun`` — not the batch shell, detente's own wrapper, which would
        die of it and end the job. A job still waiting in Slurm is cancelled by any
        signal."""
        if pid is None or start != 0 or not self.tracker.fresh:
            return  # a stop is sent again at the next step (SIGKILL until it is gone)
        job = self.tracker.get(pid)
        if job is not None and job.ended:
            return
        if sig == SIGKILL:
            self._scancel("--signal=KILL", "--full", str(pid))
            self._scancel(str(pid))
        elif job is not None and job.state == "PENDING":
            self._scancel(str(pid))
        else:
            self._scancel(f"--signal={sig.name[3:]}", str(pid))

    def terminate(self, pid: int | None, start: int | None) -> None:
        """Slurm's own cancel, ``scancel <id>``: Slurm records the job CANCELLED (a
        SIGTERM of detente's own would leave it FAILED, exit 143) and sends SIGTERM,
        then SIGKILL after its KillWait: a grace of detente's longer than the
        cluster's KillWait is cut to it. A user's ``--signal=TERM`` warning is a
        `signal`, not this: the job lives on to its deadline."""
        if pid is None or start != 0 or not self.tracker.fresh:
            return  # sent again at the next step
        job = self.tracker.get(pid)
        if job is None or not job.ended:
            self._scancel(str(pid))

    def signal_batch(
        self, pid: int | None, start: int | None, exit_file: Path, sig: Signals
    ) -> int:
        return self._scancel("--batch", f"--signal={sig.name[3:]}", str(pid)) if pid else 0

    def signal_steps(self, pid: int | None, start: int | None, sig: Signals) -> int:
        return self._scancel(f"--signal={sig.name[3:]}", str(pid)) if pid else 0

    def kill_pod(self, pid: int | None, token: str) -> int:
        return self._scancel(str(pid)) if pid else 0

    def _scancel(self, *args: str) -> int:
        try:
            p = subprocess.run(["scancel", *args], env=self.env, capture_output=True,
                               timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return 0
        self.tracker.expire()
        return int(p.returncode == 0)

    def reap(self) -> None:
        """Nothing to reap: Slurm's daemons run the jobs."""

    # -- nodes -----------------------------------------------------------------------------

    def watch_exits(self, on_change: Callable[[], None]) -> None:
        """Slurm is asked in a thread from now on (`Tracker.start`): a job's change
        calls ``on_change`` (the loop wakes), and no step waits on slurmctld."""
        self._nodes = None
        self.tracker.start(on_change, self._after_answer)

    def _after_answer(self) -> None:
        """After each answer of Slurm's: cancels what an unanswered sbatch submitted
        after all (its job waits again here), and reads the node states when due."""
        for tag in list(self._abandoned):
            job = self.tracker.by_tag(tag)
            if job is not None and not job.ended:
                self._scancel(str(job.id))
            elif job is not None:
                self._abandoned.discard(tag)
        self._read_nodes()

    def _read_nodes(self) -> None:
        if self.clock() - self._nodes_at >= NODE_PERIOD:
            self._nodes_at = self.clock()
            # Unchanged until Slurm answers.
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                self._nodes = slurm_nodes.read(self.env, self.partition)[1]

    def node_states(self) -> dict[str, dict[str, str]] | None:
        """Slurm's DRAIN/DOWN nodes of the partition when a new reading came (None
        between readings, or while Slurm does not answer)."""
        if self.tracker.threaded:
            fresh, self._nodes = self._nodes, None
            return fresh
        self._read_nodes()
        fresh, self._nodes = self._nodes, None
        return fresh

    def layout(self) -> list[dict[str, Any]]:
        """The partition's nodes as detente's layout (`slurm_nodes.read`)."""
        return slurm_nodes.read(self.env, self.partition)[0]


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
