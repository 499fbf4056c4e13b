"""`detente`: typer commands. Each one parses options and calls a service; no logic here."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="detente: one scheduler for one GPU pool. Plan decisions; simulate real traces.",
)


class Output(StrEnum):
    table = "table"
    json = "json"


@app.callback()
def main() -> None:
    """detente: one scheduler for one GPU pool."""


@app.command("plan")
def plan_cmd(
    files: list[Path] = typer.Option(
        ..., "-f", "--file", help="Manifest files (YAML, many documents each)."
    ),
    now: float = typer.Option(
        0.0, "--now", help="The time to plan at, in seconds on the manifests' clock."
    ),
    output: Output = typer.Option(Output.table, "-o", "--output"),
    profile: str = typer.Option(
        "detente", "--profile", help="A profile name (detente, slurm, k8s, …) or a Profile file."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for profiles that break ties at random."),
) -> None:
    """Show what the scheduler would admit now, where, and why the rest waits."""
    from detente.api.loader import ManifestError, load_files
    from detente.api.profiles import ProfileError, load
    from detente.control.plan import plan

    try:
        prof = load(profile, seed)
    except ProfileError as e:
        raise typer.BadParameter(str(e), param_hint="--profile") from None
    try:
        manifests = load_files(files)
    except ManifestError as e:
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    for line in manifests.warnings:
        print(f"warning: {line}", file=sys.stderr)
    decisions = plan(manifests, prof, now)
    if output == Output.json:
        print(json.dumps({"workloads": [d.as_json() for d in decisions]}, indent=2))
        return
    _table(decisions)


DEFAULT_PROFILES = "slurm,k8s,kueue,volcano,detente"


@app.command("simulate")
def simulate_cmd(
    trace: str = typer.Option(
        "philly-sample", "--trace", help="philly, philly-sample, synthetic[:N] or a trace file."
    ),
    trace_format: str | None = typer.Option(
        None, "--trace-format", help="philly, itp, openb or pollux (else detected)."
    ),
    cluster: str = typer.Option(
        "16x8", "--cluster", help="NxG (e.g. 128x8), openb, lingjun, or a manifest file."
    ),
    profile: str = typer.Option(DEFAULT_PROFILES, "--profile", help="Comma-separated profiles."),
    out: Path = typer.Option(Path("detente-report"), "--out", help="Report folder."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N jobs."),
    seed: int = typer.Option(0, "--seed"),
    load_scale: float = typer.Option(1.0, "--load-scale", help="Divide inter-arrival times by X."),
    over_estimate: float = typer.Option(2.0, "--over-estimate", help="Time limit = run time × F."),
    mtbf_hours: float | None = typer.Option(None, "--mtbf-hours", help="Inject node failures."),
    workers: int | None = typer.Option(
        None, "--workers", help="Parallel processes (default: cores)."
    ),
    vc_quotas: bool = typer.Option(
        False, "--vc-quotas", help="One ClusterQueue per trace queue (VC), by GPU-time share."
    ),
    services: str | None = typer.Option(
        None,
        "--services",
        help="Inference services, ';'-separated: SOURCE[,name=,gpus=,throughput=,priority=,"
        "min=,max=,scale=]; SOURCE: diurnal[:PEAK], azure-llm[-code|-conv], "
        "alibaba-genai[:MODEL] or a request trace.",
    ),
    layout: str | None = typer.Option(
        None, "--layout", help="shared, split or both: one pool against two fixed clusters."
    ),
    gpus_search: bool = typer.Option(
        False, "--gpus-search", help="Size each layout to the fewest nodes meeting the SLO."
    ),
    preemptible_share: float | None = typer.Option(
        None,
        "--preemptible-share",
        help="Share of training jobs that may be preempted (default: 0.5 with --layout, else 0).",
    ),
    checkpoint_every: float = typer.Option(
        1800.0, "--checkpoint-every", help="Seconds of run between checkpoints (0: none)."
    ),
    checkpoint_grace: float = typer.Option(
        30.0, "--checkpoint-grace", help="Seconds a preempted job gets to stop."
    ),
    slo_availability: float = typer.Option(0.999, "--slo-availability"),
    slo_wait: float = typer.Option(120.0, "--slo-wait", help="Scale-up wait p99 bound, s."),
    train_slack: float = typer.Option(
        1.1, "--train-slack", help="Training JCT bound: F × training alone on --cluster."
    ),
) -> None:
    """Replay a real GPU-cluster trace through each profile and write a report; with
    --layout, compare one shared pool against the training/inference split."""
    from rich.console import Console

    from detente.sim import report, traces
    from detente.sim.clusters import ClusterError
    from detente.sim.run import SimConfig
    from detente.sim.services import parse_spec as parse_service

    names = _profiles(profile)
    if load_scale <= 0 or over_estimate < 1:
        raise typer.BadParameter("--load-scale must be > 0 and --over-estimate ≥ 1")
    if preemptible_share is None:
        preemptible_share = 0.5 if layout is not None else 0.0
    if not 0 <= preemptible_share <= 1 or checkpoint_every < 0 or checkpoint_grace < 0:
        raise typer.BadParameter(
            "--preemptible-share must be in [0, 1]; --checkpoint-every and "
            "--checkpoint-grace must be ≥ 0"
        )
    cfg = SimConfig(
        trace=trace, trace_format=trace_format, cluster=cluster, seed=seed, limit=limit,
        load_scale=load_scale, over_estimate=over_estimate, mtbf_hours=mtbf_hours,
        vc_quotas=vc_quotas, services=services, preemptible_share=preemptible_share,
        checkpoint_grace=checkpoint_grace, checkpoint_every=checkpoint_every or None,
    )  # fmt: skip
    console = Console(stderr=True, soft_wrap=True)
    try:
        if services:
            parse_service(services, 86400.0)  # a bad spec fails before any run starts
        total = len(traces.load(trace, trace_format, seed, limit))
    except (traces.TraceError, OSError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    if layout is not None:
        from detente.cli.layouts import Slo, run_layouts

        slo = Slo(slo_availability, slo_wait, train_slack)
        one = "detente" if profile == DEFAULT_PROFILES else names[0]
        if len(names) > 1 and profile != DEFAULT_PROFILES:
            raise typer.BadParameter("--layout compares one profile", param_hint="--profile")
        run_layouts(console, cfg, one, layout, gpus_search, slo, out)
        return
    try:
        results = _with_progress(console, names, cfg, total, workers)
    except ClusterError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    meta = {
        "trace": trace, "jobs": total, "cluster": cluster, "seed": seed,
        "load_scale": load_scale, "over_estimate": over_estimate, "limit": limit,
        "vc_quotas": vc_quotas, "services": services,
    }  # fmt: skip
    files = report.write(out, results, meta)
    _sim_table(results)
    Console().print(f"report: {files[1]} ({len(files)} files in {out})")


def _profiles(spec: str) -> list[str]:
    from detente.core.profiles import PROFILES

    names = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in names if p not in PROFILES]
    if unknown or not names:
        known = ", ".join(sorted(PROFILES))
        raise typer.BadParameter(
            f"unknown profile {unknown}; known: {known}", param_hint="--profile"
        )
    return names


def _with_progress(console, names, cfg, total, workers):  # type: ignore[no-untyped-def]
    """Runs the profiles with a progress bar per profile (jobs finished of ``total``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from detente.sim.run import simulate_all

    columns = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=console, transient=True) as bar:
        tasks = {p: bar.add_task(p, total=total) for p in names}
        return simulate_all(names, cfg, lambda p, d: bar.update(tasks[p], completed=d), workers)


def _sim_table(results: dict) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    keys = [
        "jct_avg",
        "jct_p50",
        "wait_avg",
        "wait_p50",
        "gpu_util",
        "jain_fairness",
        "unfinished",
        "wall_seconds",
    ]
    if any("svc_availability" in r["metrics"] for r in results.values()):
        keys[-1:-1] = ["svc_availability", "svc_wait_p99"]
    t = Table(box=None)
    t.add_column("PROFILE")
    for k in keys:
        t.add_column(k.upper(), justify="right")
    for p, r in results.items():
        m = r["metrics"]
        t.add_row(
            p,
            *(
                f"{m[k]:,.3f}" if isinstance(m[k], float) and abs(m[k]) < 10 else f"{m[k]:,.0f}"
                for k in keys
            ),
        )
    Console(width=140).print(t)


def _table(decisions: list) -> None:  # type: ignore[type-arg]
    from rich.console import Console
    from rich.table import Table

    t = Table(box=None, pad_edge=False)
    for col in ("NAME", "STATE", "START", "NODES"):
        t.add_column(col, no_wrap=True)
    t.add_column("REASON", overflow="fold")
    for d in decisions:
        start = "" if d.start is None else f"{d.start:g}"
        nodes = _compact(d.nodes)
        t.add_row(d.name, d.state, start, nodes, d.reason or "")
    Console(width=max(Console().width, 120)).print(t)


def _compact(nodes: list[str]) -> str:
    from detente.api.hostlist import compress

    return compress(nodes)


# Commands of the live system register themselves on `app`.
from detente.cli import admin as _admin  # noqa: E402,F401
from detente.cli import interactive as _interactive  # noqa: E402,F401
from detente.cli import live as _live  # noqa: E402,F401
from detente.cli import services as _services  # noqa: E402,F401
from detente.cli import views as _views  # noqa: E402,F401
