"""``detente srun`` outside a job: Slurm's salloc + srun in one command.

It submits a batch job whose script is ``srun [STEP OPTIONS] COMMAND`` (so the
command runs as one step over the whole allocation, every task with Slurm's step
variables), streams the job's output as it comes, and exits with the job's exit
code. Allocation options are sbatch's (``-N``, ``-n``, ``--gpus-per-task``, ``-t``,
``-p``, ``-J``, …); step-only options (``-l``, ``-K``) go to the inner srun. Ctrl-C
cancels the job. stdin is not forwarded (the job's tasks read /dev/null).
"""

from __future__ import annotations

import os
import shlex
import sys
import time

import typer

from detente.api.sbatch_argv import FLAGS, SHORT, SHORT_FLAGS
from detente.cli.live import _RAW, _call, err
from detente.cli.main import app

#: srun options that shape the step, not the allocation.
STEP_FLAGS = frozenset({"-l", "--label", "-K", "--kill-on-bad-exit"})
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}


def split(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(allocation options, step options, command): options end at the first word
    that is neither an option nor an option's value."""
    alloc: list[str] = []
    step: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok in STEP_FLAGS:
            step.append(tok)
        elif tok.startswith("--"):
            name = tok[2:].partition("=")[0]
            takes = "=" not in tok and name not in FLAGS
            alloc.extend(argv[i : i + 2] if takes else [tok])
            i += 1 if takes else 0
        elif tok in SHORT_FLAGS:
            alloc.append(tok)
        elif tok[:2] in SHORT:
            alloc.extend(argv[i : i + 2] if len(tok) == 2 else [tok])
            i += 1 if len(tok) == 2 else 0
        else:
            return alloc, step, argv[i:]
        i += 1
    return alloc, step, []


@app.command("srun", context_settings=_RAW)
def srun_cmd(
    argv: list[str] = typer.Argument(..., help="[OPTIONS] COMMAND [ARGS]"),
) -> None:
    """Allocate and run COMMAND on every task of the allocation, streaming its output
    (salloc + srun); exits with the job's exit code."""
    alloc, step, command = split(argv)
    if not command:
        err.print("[red]error:[/red] srun: no command given to execute")
        raise typer.Exit(2)
    inner = shlex.join(["srun", *step, *command])
    out = _call("POST", "/v1/sbatch", json={
        "options": [*alloc, "--output=/dev/null", f"--wrap={inner}"], "script": "",
        "script_name": command[0], "args": [], "env": dict(os.environ), "cwd": os.getcwd(),
    })  # fmt: skip
    for w in out.get("warnings", []):
        err.print(f"warning: {w}")
    jid = out["ids"][0]
    try:
        raise typer.Exit(_follow(jid))
    except KeyboardInterrupt:
        _call("POST", "/v1/jobs/cancel", json={"ids": [jid]})
        err.print(f"srun: job {jid} cancelled")
        raise typer.Exit(130) from None


def _follow(jid: int) -> int:
    """Streams the job's output until it ends; its exit code."""
    offset, said = 0, False
    while True:
        job = _call("GET", f"/v1/jobs/{jid}")
        if job["state"] == "PENDING" and not said:
            err.print(f"srun: job {jid} queued and waiting for resources")
            said = True
        r = _call("GET", f"/v1/jobs/{jid}/logs", params={"offset": offset})
        sys.stdout.write(r["data"])
        sys.stdout.flush()
        offset = r["offset"]
        if job["state"] in ENDED and not r["data"]:
            if job["state"] != "COMPLETED":
                err.print(f"srun: job {jid} {job['state']}: {job.get('reason') or ''}".rstrip(": "))
            return int(job["exit_code"] or 0) if job["exit_code"] is not None else 1
        time.sleep(0.2)
