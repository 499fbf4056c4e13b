"""Commands of the live system: up, down, submit/sbatch, nodes, describe, logs,
cancel, hold, release (queue, history, priority and share are in
`detente.cli.views`; the admin's in `detente.cli.admin`). Each parses options, calls
the API, prints."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from detente.cli.client import Client, ClientError
from detente.cli.main import Output, app

err = Console(stderr=True, soft_wrap=True)  # errors stay whole lines, for scripts


def _client() -> Client:
    try:
        return Client()
    except ClientError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None


def _call(method: str, path: str, **kw: Any) -> Any:
    try:
        return _client().call(method, path, **kw)
    except ClientError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None


def _table(rows: list[dict[str, Any]], cols: list[tuple[str, str]], output: Output) -> None:
    if output == Output.json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(box=None, pad_edge=False)
    for title, _ in cols:
        t.add_column(title, no_wrap=True)
    for r in rows:
        t.add_row(*(str(r.get(k, "")) if r.get(k) is not None else "" for _, k in cols))
    _out().print(t)


def _clock(t: float | None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else "Unknown"


def _out() -> Console:
    # Piped output keeps whole columns (scripts parse it); a terminal gets its width.
    return Console() if sys.stdout.isatty() else Console(width=400)


@app.command("up")
def up_cmd(
    nodes: str | None = typer.Option(None, "--nodes", help="NxG virtual nodes, e.g. 4x8."),
    db: str | None = typer.Option(None, "--db", help="sqlite:///PATH or postgresql://…"),
    port: int = typer.Option(0, "--port", help="Port on 127.0.0.1 (default: a free one)."),
    gateway_port: int = typer.Option(
        0, "--gateway-port", help="The services' gateway port (default: a free one)."
    ),
    profile: str = typer.Option("detente", "--profile"),
    single_user: bool = typer.Option(
        False, "--single-user", help="Run every job as this user even when root."
    ),
    max_array_size: int = typer.Option(
        1001, "--max-array-size", min=1, max=100_000, help="Slurm's MaxArraySize."
    ),
    max_script_size: int = typer.Option(
        4 << 20, "--max-script-size", min=1, max=64 << 20, help="Largest batch script (bytes)."
    ),
    keep_job_files: float = typer.Option(
        7.0,
        "--keep-job-files",
        min=0,
        max=36_500,
        help="Days a job's files (its pods' logs) are kept after it ended; 0: for ever.",
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local (processes here) or slurm (a Slurm cluster)."
    ),
    slurm_partition: str | None = typer.Option(
        None, "--slurm-partition", help="The Slurm partition whose nodes detente schedules."
    ),
) -> None:
    """Start the control plane (API, scheduler, executor) in the background: jobs run
    here (local executor) or, with --executor slurm, as Slurm jobs on the nodes of a
    Slurm partition (its clients found through SLURM_CONF and PATH).

    As root it runs in multi-user mode: each user's jobs run as their Unix account
    (`detente token NAME --unix-user ACCOUNT`). Otherwise, or with --single-user,
    every job runs as the user who started it."""
    from detente.api.profiles import ProfileError, load
    from detente.control.daemon import DaemonError, mode_for, up
    from detente.control.home import data_dir
    from detente.control.layout import LayoutError

    try:
        load(profile)  # refused here, not in the background process
    except ProfileError as e:
        err.print(f"[red]error:[/red] --profile: {e}")
        raise typer.Exit(2) from None
    if profile.endswith((".yaml", ".yml")):
        profile = os.path.abspath(profile)
    d = data_dir()
    mode = mode_for(single_user)
    options: dict[str, Any] = {"mode": mode, "max_array_size": max_array_size,
                               "max_script_bytes": max_script_size,
                               "job_files_keep_days": keep_job_files}  # fmt: skip
    if executor not in ("local", "slurm"):
        err.print(f"[red]error:[/red] --executor: local or slurm (got {executor!r})")
        raise typer.Exit(2)
    if executor == "slurm" and nodes is not None:
        err.print("[red]error:[/red] --nodes: the Slurm executor takes the partition's nodes")
        raise typer.Exit(2)
    if executor == "slurm":
        options["executor"] = {"kind": "slurm", "partition": slurm_partition,
                               "slurm_conf": os.environ.get("SLURM_CONF")}  # fmt: skip
    elif slurm_partition is not None:
        err.print("[red]error:[/red] --slurm-partition needs --executor slurm")
        raise typer.Exit(2)
    else:
        options["executor"] = {"kind": "local"}
    try:
        pid, port = up(d, db or os.environ.get("DETENTE_DB"), nodes, port, profile, options,
                       gateway_port)  # fmt: skip
    except (DaemonError, LayoutError) as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    gw = (d / "detente.gateway").read_text().strip()
    where = (
        f"admin token in {d / 'admin.token'}"
        if (d / "admin.token").exists()
        else "the admin exists on this store: its token stays where it was made"
    )
    Console().print(
        f"detente up: pid {pid}, http://127.0.0.1:{port} ({where}); gateway http://127.0.0.1:{gw}"
    )
    if mode == "single-user":
        Console().print(
            "single-user mode: every job runs as this Unix user; tokens cannot map to "
            "another Unix identity"
        )
    else:
        Console().print("multi-user mode: jobs run as their users' Unix accounts")


@app.command("down")
def down_cmd() -> None:
    """Stop the control plane. Running jobs go on and are re-adopted by the next `up`."""
    from detente.control.daemon import down
    from detente.control.home import data_dir

    pid = down(data_dir())
    Console().print("detente down" + (f": stopped pid {pid}" if pid else ": was not running"))


_RAW = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("submit", context_settings=_RAW)
def submit_cmd(
    argv: list[str] = typer.Argument(..., help="[SBATCH OPTIONS] SCRIPT [ARGS]"),
) -> None:
    """Submit a batch script; its `#SBATCH` lines are honoured, and options before the
    script (e.g. `detente submit -N 2 --gres=gpu:8 job.sh`) override them."""
    _submit(argv)


@app.command("sbatch", context_settings=_RAW)
def sbatch_cmd(
    argv: list[str] = typer.Argument(..., help="[SBATCH OPTIONS] SCRIPT [ARGS]"),
) -> None:
    """Alias of `submit`."""
    _submit(argv)


def _submit(argv: list[str]) -> None:
    """The fast path (`detente.cli.fast`) handles submit; this is reached with options
    it passes on (``--help``): the same call, through the full CLI."""
    from detente.cli.fast import _submit as fast_submit

    raise typer.Exit(fast_submit(argv))


@app.command("nodes")
def nodes_cmd(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Nodes per rack (like sinfo -N): state, GPUs free of total, CPUs free."""
    rows = _call("GET", "/v1/nodes")
    for r in rows:
        r["gres"] = f"{r['gpus_free']:g}/{r['gpus']}"
        r["cpu"] = f"{r['cpus_free']:g}/{r['cpus']:g}"
    cols = [("RACK", "rack"), ("NODE", "name"), ("STATE", "state"), ("GPUS(FREE/TOT)", "gres"),
            ("CPUS(FREE/TOT)", "cpu"), ("PODS", "pods"), ("REASON", "reason")]  # fmt: skip
    _table(sorted(rows, key=lambda r: (r["rack"], r["name"])), cols, output)


@app.command("describe")
def describe_cmd(
    what: str = typer.Argument(..., help="A job id, or `service NAME`."),
    name: str | None = typer.Argument(None),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """One job (placement, priority factors, events, why it waits) or one service
    (replicas, scaling decisions, events)."""
    if what == "service" and name is not None:
        from detente.cli.services import describe_service

        describe_service(name, output)
        return
    if not what.isdigit():
        err.print(f"[red]error:[/red] not a job id: {what!r} (or: describe service NAME)")
        raise typer.Exit(2)
    d = _call("GET", f"/v1/jobs/{what}")
    if output == Output.json:
        print(json.dumps(d, indent=2))
        return
    c = Console()
    c.print(f"[bold]Job {d['jobid']}[/bold] {d['name']}  user={d['user']} queue={d['queue']}")
    c.print(f"State: {d['state']}  Reason: {d['reason'] or '-'}  Exit: {d['exit_code']}")
    c.print(f"Request: {json.dumps(d['spec'])}")
    for p in d["placement"]:
        where = f"{p['node']} GPUs {p['devices']}"
        c.print(f"  pod {p['rank']}: {where} pid {p['pid']} exit {p['exit_code']}")
    if d.get("priority"):
        c.print(f"Priority {d['priority']['total']}: {d['priority']['factors']}")
    c.print("Events:")
    for e in d["events"]:
        c.print(f"  {_clock(e['time'])}  {e['kind']:<12} {e['message']}")


@app.command("logs")
def logs_cmd(
    job: int = typer.Argument(...),
    follow: bool = typer.Option(False, "-f", "--follow"),
    pod: int | None = typer.Option(None, "--pod", help="One pod's own log (node rank)."),
) -> None:
    """The job's output; with -f, follow it until the job ends."""
    offset = 0
    while True:
        params: dict[str, int] = {"offset": offset} | ({"pod": pod} if pod is not None else {})
        r = _call("GET", f"/v1/jobs/{job}/logs", params=params)
        sys.stdout.write(r["data"])
        sys.stdout.flush()
        if r.get("removed"):
            err.print(f"job {job}: {r['removed']}")
        offset = r["offset"]
        if not follow or (r["done"] and not r["data"]):
            return
        time.sleep(0.5)


@app.command("cancel")
def cancel_cmd(
    jobs: list[int] = typer.Argument(...),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """Cancel jobs (like scancel): pending ones end now, running ones get SIGTERM, then
    SIGKILL after the grace."""
    done = _call("POST", "/v1/jobs/cancel", json={"ids": jobs})
    if output == Output.json:
        print(json.dumps(done))
        return
    for jid, what in done.items():
        print(f"{jid}: {what}")


@app.command("hold")
def hold_cmd(jobs: list[int] = typer.Argument(...)) -> None:
    """Keep pending jobs from starting (like scontrol hold) until released."""
    for jid, what in _call("POST", "/v1/jobs/hold", json={"ids": jobs}).items():
        print(f"{jid}: {what}")


@app.command("release")
def release_cmd(jobs: list[int] = typer.Argument(...)) -> None:
    """Let held jobs start again (like scontrol release)."""
    for jid, what in _call("POST", "/v1/jobs/release", json={"ids": jobs}).items():
        print(f"{jid}: {what}")
