"""`detente`: typer commands. Each one parses options and calls a service; no logic here."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)


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
    profile: str = typer.Option("detente", "--profile", help="Scheduling profile: detente, k8s."),
    seed: int = typer.Option(0, "--seed", help="Seed for profiles that break ties at random."),
) -> None:
    """Show what the scheduler would admit now, where, and why the rest waits."""
    from detente.api.loader import ManifestError, load_files
    from detente.control.plan import plan
    from detente.core.profiles import build

    try:
        prof = build(profile, seed)
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--profile") from None
    try:
        decisions = plan(load_files(files), prof, now)
    except ManifestError as e:
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        raise typer.Exit(2) from None
    if output == Output.json:
        print(json.dumps({"workloads": [d.as_json() for d in decisions]}, indent=2))
        return
    _table(decisions)


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
