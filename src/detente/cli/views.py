"""What Slurm users read: ``queue`` (squeue), ``history`` (sacct), ``priority``
(sprio) and ``share`` (sshare). Times are local ISO (``2026-11-30T14:05:00``),
durations Slurm's ``[D-]H:MM:SS``. ``--format`` picks columns by their titles, as
sacct's does (``--format=JobID,State,ExitCode``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from detente.cli.fast import QUEUE_COLS, duration
from detente.cli.live import _call, _clock, _table, err
from detente.cli.main import Output, app

Cols = list[tuple[str, str]]
#: Options queue and history share (squeue's and sacct's letters).
OutputOpt = Annotated[Output, typer.Option("-o", "--output")]
JobsOpt = Annotated[str | None, typer.Option("-j", "--jobs", help="Only these job ids (a,b).")]
UserOpt = Annotated[str | None, typer.Option("-u", "--user", help="Only these users (a,b).")]
QueueOpt = Annotated[str | None, typer.Option("-p", "--partition", help="Only these queues.")]
HISTORY_COLS: Cols = [("JOBID", "jobid"), ("NAME", "name"), ("QUEUE", "queue"),
                      ("USER", "user"), ("START", "start"), ("END", "end"),
                      ("ELAPSED", "elapsed_s"), ("GPU-H", "gpu_h"), ("STATE", "state"),
                      ("EXITCODE", "exit")]  # fmt: skip
#: Columns only --format shows.
MORE: Cols = [("NODELIST", "nodelist"), ("NODES", "nodes"), ("REASON", "reason"),
              ("SUBMIT", "submit"), ("TIMELIMIT", "limit"), ("GPUS", "gpus"),
              ("ATTEMPT", "attempt"), ("START_TIME", "expected")]  # fmt: skip
ALIASES = {"JOBNAME": "NAME", "PARTITION": "QUEUE", "EXIT": "EXITCODE", "ST": "ST",
           "NNODES": "NODES", "STARTTIME": "START", "ENDTIME": "END"}  # fmt: skip


def pick(spec: str | None, default: Cols, available: Cols) -> Cols:
    """The columns ``--format`` names (titles, any case, sacct's aliases); ``default``
    without it. BadParameter naming the unknown title and the choices."""
    if not spec:
        return default
    by = {t: (t, k) for t, k in available}
    out = []
    for name in (n.strip().upper() for n in spec.split(",") if n.strip()):
        title = ALIASES.get(name, name)
        if title not in by:
            raise typer.BadParameter(f"unknown column {name!r}; choose from "
                                     f"{', '.join(by)}", param_hint="--format")  # fmt: skip
        out.append(by[title])
    return out


def _ids(jobs: str | None) -> set[str] | None:
    return {j.strip() for j in jobs.split(",")} if jobs else None


def _mine(r: dict[str, Any], ids: set[str] | None) -> bool:
    return ids is None or str(r["id"]) in ids or r["jobid"] in ids or (
        r.get("array_job_id") is not None and str(r["array_job_id"]) in ids)  # fmt: skip


def _common(r: dict[str, Any]) -> None:
    r["time"] = duration(r["elapsed"])
    r["where"] = r["nodelist"] or f"({r['reason'] or 'None'})"
    r["submit"] = _clock(r["submit_time"])
    r["limit"] = duration(r["time_limit"]) if r.get("time_limit") else "UNLIMITED"
    r["expected"] = r.get("expected_start") or "N/A"


@app.command("queue")
def queue_cmd(
    output: OutputOpt = Output.table,
    jobs: JobsOpt = None,
    user: UserOpt = None,
    queue: QueueOpt = None,
    state: str | None = typer.Option(None, "-t", "--states", help="e.g. PENDING,RUNNING."),
    start: bool = typer.Option(False, "--start", help="Pending jobs' expected start."),
    fmt: str | None = typer.Option(None, "--format", help="Columns, e.g. JOBID,ST,REASON."),
) -> None:
    """Jobs pending and running (like squeue), with why each pending one waits; with
    --start, when each is expected to start (from the backfill plan's reservation)."""
    params = {k: v for k, v in (("owner", user), ("queue", queue), ("state", state)) if v}
    ids = _ids(jobs)
    rows = [r for r in _call("GET", "/v1/jobs", params=params) if _mine(r, ids)]
    for r in rows:
        _common(r)
    default = QUEUE_COLS
    if start:
        rows = [r for r in rows if r["state"] == "PENDING"]
        default = [*QUEUE_COLS[:5], ("START_TIME", "expected"), ("NODES", "nodes"),
                   ("NODELIST(REASON)", "where")]  # fmt: skip
    _table(rows, pick(fmt, default, [*QUEUE_COLS, *MORE, ("STATE", "state")]), output)


def _when(text: str | None, opt: str) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a time (2026-11-30 or "
                                 "2026-11-30T14:05:00)", param_hint=opt) from None  # fmt: skip


@app.command("history")
def history_cmd(
    output: OutputOpt = Output.table,
    jobs: JobsOpt = None,
    user: UserOpt = None,
    queue: QueueOpt = None,
    state: str | None = typer.Option(None, "-s", "--state", help="e.g. FAILED,TIMEOUT."),
    since: str | None = typer.Option(None, "-S", "--starttime", help="Ended at or after."),
    until: str | None = typer.Option(None, "-E", "--endtime", help="Started at or before."),
    fmt: str | None = typer.Option(None, "--format", help="Columns, e.g. JobID,State."),
) -> None:
    """Ended jobs (like sacct), each followed by its steps (JOBID.0, JOBID.1, …):
    start, end, elapsed, GPU-hours, state, exit code."""
    lo, hi = _when(since, "--starttime"), _when(until, "--endtime")
    ids, states = _ids(jobs), {x.upper() for x in state.split(",")} if state else None
    rows = [r for r in _call("GET", "/v1/history") if _mine(r, ids)
            and (user is None or r["user"] in user.split(","))
            and (queue is None or r["queue"] in queue.split(","))
            and (states is None or r["state"] in states)
            and (lo is None or (r["end_time"] or 0) >= lo)
            and (hi is None or (r["start_time"] or 0) <= hi)]  # fmt: skip
    if output != Output.json:  # sacct's step rows under each job
        rows = [x for r in rows for x in (r, *r.pop("steps", []))]
    for r in rows:
        r.setdefault("queue", "")
        r.setdefault("user", "")
        r["start"], r["end"] = _clock(r["start_time"]), _clock(r["end_time"])
        r["elapsed_s"] = duration(r["elapsed"])
        r["gpu_h"] = f"{r.get('gpu_hours', 0.0):.3f}"
        r["exit"] = "" if r["exit_code"] is None else f"{r['exit_code']}:0"
        r.setdefault("nodes", r.get("ntasks", ""))
    _table(rows, pick(fmt, HISTORY_COLS, [*HISTORY_COLS, ("NODELIST", "nodelist"),
                                           ("NODES", "nodes")]), output)  # fmt: skip


@app.command("priority")
def priority_cmd(output: OutputOpt = Output.table, jobs: JobsOpt = None) -> None:
    """Each pending job's priority and the weighted terms it sums (like sprio), in the
    order the scheduler will try them."""
    ids = _ids(jobs)
    rows = [r for r in _call("GET", "/v1/priority") if _mine(r, ids)]
    names = sorted({k for r in rows for k in r["terms"]})
    for r in rows:
        r.update({f"t_{k}": f"{v:g}" for k, v in r["terms"].items()})
        r["prio"] = f"{r['priority']:g}"
    cols = [("JOBID", "jobid"), ("QUEUE", "queue"), ("USER", "user"), ("PRIORITY", "prio"),
            *((n.upper(), f"t_{n}") for n in names)]  # fmt: skip
    _table(rows, cols, output)


@app.command("share")
def share_cmd(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Each queue's share, decayed GPU-hours and fair-share factor (like sshare)."""
    rows = _call("GET", "/v1/share")
    for r in rows:
        r["ns"], r["eu"] = f"{r['norm_shares']:.4f}", f"{r['effective_usage']:.4f}"
        r["gh"], r["fs"] = f"{r['gpu_hours']:.3f}", f"{r['fairshare']:.4f}"
    cols = [("QUEUE", "queue"), ("WEIGHT", "weight"), ("NORMSHARES", "ns"),
            ("GPU-H(DECAYED)", "gh"), ("EFFECTVUSAGE", "eu"), ("FAIRSHARE", "fs")]  # fmt: skip
    _table(rows, cols, output)
    if not rows:
        err.print("no queues")
