"""``detente simulate --layout``: one shared pool against the training/inference split."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from detente.sim import layout_report
from detente.sim.clusters import ClusterError
from detente.sim.layouts import LAYOUTS, Slo, compare
from detente.sim.run import SimConfig
from detente.sim.traces import TraceError

__all__ = ["Slo", "run_layouts"]


def run_layouts(
    console: Console, cfg: SimConfig, profile: str, spec: str, search: bool, slo: Slo, out: Path
) -> None:
    """Runs the layouts, prints them side by side and writes the report to ``out``."""
    layouts = tuple(x.strip() for x in spec.split(",") if x.strip())
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad or not layouts:
        raise typer.BadParameter(f"unknown layout {bad}; known: shared, split",
                                 param_hint="--layout")  # fmt: skip
    if not cfg.services:
        raise typer.BadParameter("the layouts need an inference load", param_hint="--services")
    t0 = time.perf_counter()
    try:
        with console.status("simulating the layouts…"):
            result = compare(profile, cfg, layouts, search, slo)
    except (ClusterError, TraceError, ValueError) as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    meta = {
        "trace": cfg.trace, "services": cfg.services, "cluster": cfg.cluster, "profile": profile,
        "seed": cfg.seed, "preemptible_share": cfg.preemptible_share,
        "checkpoint_every": cfg.checkpoint_every, "checkpoint_grace": cfg.checkpoint_grace,
        "search": search, "wall_seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    files = layout_report.write(out, result, meta)
    head, rows = layout_report.table(result)
    t = Table(*head, title=f"one pool against the split ({meta['wall_seconds']} s)")
    for r in rows:
        t.add_row(*r)
    Console().print(t)
    Console().print(f"report: {files[1]} ({len(files)} files in {out})")
