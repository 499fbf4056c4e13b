"""The admin's commands: token, audit, apply, delete, drain, resume. Each parses
options, calls the API, prints."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from detente.cli.live import _call, _clock, _table, err
from detente.cli.main import Output, app

#: apply and delete: a LocalQueue that holds jobs goes only when asked.
FORCE = typer.Option(
    False, "--force", help="Also remove LocalQueues that hold jobs (they wait for it)."
)


@app.command("token")
def token_cmd(
    user: str = typer.Argument(...),
    team: str = typer.Option(..., "--team", help="The user's team (LocalQueue)."),
    role: str = typer.Option("user", "--role", help="user, team-admin or admin."),
    unix_user: str | None = typer.Option(
        None, "--unix-user", help="Unix account the user's jobs run as (default: the name)."
    ),
) -> None:
    """Create a user (or re-key one) and print their token once. Admin only."""
    body = {"name": user, "team": team, "role": role}
    if unix_user is not None:
        body["unix_user"] = unix_user
    print(_call("POST", "/v1/users", json=body)["token"])


@app.command("audit")
def audit_cmd(
    limit: int = typer.Option(100, "--limit", "-n", min=1),
    output: Output = typer.Option(Output.table, "-o", "--output"),
) -> None:
    """The audit log (admin only): tokens, applies, node changes, admin cancels, and
    refused authorizations, with who and when."""
    rows = _call("GET", "/v1/audit", params={"limit": limit})
    for r in rows:
        r["when"] = _clock(r["time"])
    cols = [("TIME", "when"), ("ACTOR", "actor"), ("ACTION", "action"),
            ("OUTCOME", "outcome"), ("TARGET", "target")]  # fmt: skip
    _table(rows, cols, output)


@app.command("apply")
def apply_cmd(
    files: list[Path] = typer.Option(..., "-f", "--filename"),
    yes: bool = typer.Option(False, "-y", "--yes", help="Apply without asking."),
    force: bool = FORCE,
) -> None:
    """Apply queue manifests and jobs: show the plan (with a field diff), confirm, apply."""
    docs = _documents(files)
    body = {"documents": docs, "dry_run": True, "force": force}
    plan = _call("POST", "/v1/apply", json=body)["plan"]
    for line in plan.get("warnings", []):
        err.print(f"[yellow]warning:[/yellow] {line}")
    for verb in ("created", "changed", "unchanged"):
        for name in plan[verb]:
            print(f"{name} {verb}")
            for line in plan.get("diff", {}).get(name, []):
                print(f"  {line}")
    for line in plan.get("stranded", []):
        print(line)
    for name in plan["jobs"]:
        now = " and start now" if name in plan["admitted"] else ""
        print(f"job {name} will be submitted{now}")
    for line in plan.get("services", []):
        print(f"service {line}")
    if not yes and not typer.confirm("Apply?"):
        raise typer.Exit(1)
    out = _call("POST", "/v1/apply", json={**body, "dry_run": False})
    print(f"applied; submitted jobs {out['submitted']}" if out["submitted"] else "applied")


@app.command("delete")
def delete_cmd(
    kind: str | None = typer.Argument(None, help="service (with NAME), or use -f."),
    name: str | None = typer.Argument(None),
    files: list[Path] = typer.Option([], "-f", "--filename"),
    yes: bool = typer.Option(False, "-y", "--yes", help="Delete without asking."),
    force: bool = FORCE,
) -> None:
    """Delete a service (delete service NAME), or the queue objects and services the
    files name (as kubectl delete -f): plan, confirm."""
    if kind is not None:
        if kind != "service" or name is None or files:
            err.print("[red]error:[/red] give `delete service NAME` or `delete -f FILE`")
            raise typer.Exit(2)
        if not yes and not typer.confirm(f"Delete service {name}?"):
            raise typer.Exit(1)
        _call("DELETE", f"/v1/services/{name}")
        print(f"Service/{name} deleted")
        return
    if not files:
        err.print("[red]error:[/red] give `delete service NAME` or `delete -f FILE`")
        raise typer.Exit(2)
    body = {"documents": _documents(files), "dry_run": True, "force": force}
    plan = _call("POST", "/v1/delete", json=body)["plan"]
    for name in plan["deleted"]:
        print(f"{name} deleted")
    for name in plan["not_found"]:
        print(f"{name} not found")
    for line in plan.get("stranded", []):
        print(line)
    if not yes and not typer.confirm("Delete?"):
        raise typer.Exit(1)
    _call("POST", "/v1/delete", json={**body, "dry_run": False})
    print("deleted")


def _documents(files: list[Path]) -> list[tuple[str, int, Any]]:
    from detente.api.loader import ManifestError, read_documents

    try:
        docs = read_documents(files)
    except ManifestError as e:
        err.print("[red]error:[/red] " + "\n".join(e.problems))
        raise typer.Exit(2) from None
    for _, _, d in docs:  # a service starts where apply runs, as sbatch's jobs do
        if isinstance(d, dict) and d.get("kind") == "Service" and isinstance(d.get("spec"), dict):
            d["spec"].setdefault("workingDir", os.getcwd())
    return docs


def _node_state(node: str, state: str, reason: str) -> None:
    out = _call("POST", f"/v1/nodes/{node}/state", json={"state": state, "reason": reason})
    print(f"{out['node']}: {out['state']}")


@app.command("drain")
def drain_cmd(
    node: str = typer.Argument(...),
    reason: str = typer.Option("", "--reason"),
    down: bool = typer.Option(False, "--down", help="Also stop its jobs (NODE_FAIL)."),
) -> None:
    """Drain a node: it runs what it has and takes nothing new. Admin only."""
    _node_state(node, "down" if down else "drain", reason)


@app.command("resume")
def resume_cmd(node: str = typer.Argument(...)) -> None:
    """Return a drained or down node to service. Admin only."""
    _node_state(node, "resume", "")


node_app = typer.Typer(help="Fault injection: fail a node as a real loss would, restore it.")
app.add_typer(node_app, name="node")


@node_app.command("fail")
def node_fail_cmd(
    node: str = typer.Argument(...), reason: str = typer.Option("", "--reason")
) -> None:
    """The node goes down and its pods die at once (SIGKILL): jobs end NODE_FAIL (or
    requeue), service replicas are replaced elsewhere. Admin only."""
    _node_state(node, "fail", reason)


@node_app.command("restore")
def node_restore_cmd(node: str = typer.Argument(...)) -> None:
    """Bring a failed node back. Admin only."""
    _node_state(node, "resume", "")
