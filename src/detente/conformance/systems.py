"""The two systems the conformance cases run on: real Slurm (its clients, with
``SLURM_CONF``) and detente (its CLI and API, in a ``DETENTE_HOME``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from detente.conformance.run import env_with

_ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
#: The project's own local Slurm (learned from ../shared/peers/slurm).
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts" / "slurm"


class SlurmUnavailable(RuntimeError):
    pass


@contextmanager
def local_slurm(
    d: Path, nodes: int = 4, gpus: int = 8, settings: dict[str, str] | None = None
) -> Iterator[Slurm]:
    """A real Slurm 22.05 of ``nodes`` × ``gpus`` on loopback (scripts/slurm/setup.sh,
    which installs the Debian packages if missing); stopped by PID on exit.
    SlurmUnavailable, with setup's own words, where it cannot start. ``settings``:
    setup.sh's variables (``RETURN_TO_SERVICE``, ``SCHEDULER``, …). Its ports are
    setup.sh's defaults unless ``CTLD_PORT`` / ``NODE_BASE_PORT`` are in this process's
    environment (parallel test workers each set their own)."""
    ports = {k: os.environ[k] for k in ("CTLD_PORT", "NODE_BASE_PORT") if k in os.environ}
    env = {"SLURMPEER_DIR": str(d), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **ports,
           **(settings or {})}  # fmt: skip
    up = subprocess.run(["bash", str(SCRIPTS / "setup.sh"), str(nodes), str(gpus)], env=env,
                        capture_output=True, text=True)  # fmt: skip
    try:
        if up.returncode != 0:
            raise SlurmUnavailable(up.stderr.strip()[-1500:])
        yield Slurm(str(d / "etc" / "slurm.conf"))
    finally:
        subprocess.run(["bash", str(SCRIPTS / "stop.sh")], env=env, capture_output=True)


@contextmanager
def local_detente(home: Path, nodes: str = "4x8") -> Iterator[Detente]:
    """``detente up --nodes NODES`` in ``home`` (single-user); down on exit."""
    home.mkdir(parents=True, exist_ok=True)
    system = Detente(home)
    cli = str(Path(sys.executable).parent / "detente")
    subprocess.run([cli, "up", "--nodes", nodes, "--single-user"], env=system.env, check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield system
    finally:
        subprocess.run([cli, "down"], env=system.env, capture_output=True)


class Slurm:
    name = "slurm"

    def __init__(self, conf: str) -> None:
        self.env = env_with({"SLURM_CONF": conf})

    def _run(self, cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(cmd, cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=60)  # fmt: skip

    def sbatch(self, cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
        return self._run(["sbatch", *args], cwd)

    def ended(self, ids: set[int]) -> bool:
        out = self._run(["squeue", "-h", "-o", "%F %i"]).stdout.split()
        return not any(int(x.split("_")[0]) in ids for x in out if x.split("_")[0].isdigit())

    def states(self, job_id: int) -> list[tuple[str, str]]:
        out = self._run(["scontrol", "-o", "show", "job", str(job_id)]).stdout
        rows = []
        for line in out.splitlines():
            state = re.search(r"\bJobState=(\S+)", line)
            code = re.search(r"\bExitCode=(\d+):", line)
            task = re.search(r"\bArrayTaskId=(\d+)", line)
            if state:
                rows.append((int(task.group(1)) if task else 0, state.group(1),
                             code.group(1) if code else ""))  # fmt: skip
        return [(s, c) for _, s, c in sorted(rows)]


class Detente:
    name = "detente"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = env_with({"DETENTE_HOME": str(home)})
        self.env.pop("DETENTE_TOKEN", None)
        self.env.pop("DETENTE_URL", None)

    def sbatch(self, cwd: Path, args: list[str]) -> subprocess.CompletedProcess[str]:
        cli = str(Path(sys.executable).parent / "detente")
        return subprocess.run([cli, "sbatch", *args], cwd=cwd, env=self.env,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    def _jobs(self) -> list[dict[str, object]]:
        port = (self.home / "detente.port").read_text().strip()
        token = (self.home / "admin.token").read_text().strip()
        r = httpx.get(f"http://127.0.0.1:{port}/v1/jobs", params={"all": True},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        r.raise_for_status()
        jobs: list[dict[str, object]] = r.json()
        return jobs

    def ended(self, ids: set[int]) -> bool:
        return all(j["state"] in _ENDED for j in self._jobs()
                   if j["id"] in ids or j["array_job_id"] in ids)  # fmt: skip

    def states(self, job_id: int) -> list[tuple[str, str]]:
        mine = [j for j in self._jobs() if j["id"] == job_id or j["array_job_id"] == job_id]
        mine.sort(key=lambda j: j["array_task_id"] or 0)  # type: ignore[arg-type,return-value]
        return [(str(j["state"]), "" if j["exit_code"] is None else str(j["exit_code"]))
                for j in mine]  # fmt: skip
