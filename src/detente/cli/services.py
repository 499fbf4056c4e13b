"""Commands for services: `detente services` and `detente describe service NAME`."""

from __future__ import annotations

import json

import typer
from rich.console import Console

from detente.cli.live import _call, _clock, _table
from detente.cli.main import Output, app


@app.command("services")
def services_cmd(output: Output = typer.Option(Output.table, "-o", "--output")) -> None:
    """Services: replicas ready of desired, load, and the gateway URL."""
    data = _call("GET", "/v1/services")
    if output == Output.json:
        print(json.dumps({"services": data["services"]}, indent=2))
        return
    rows = [{**s, "ready_of": f"{s['ready']}/{len(s['replicas'])}",
             "rps_": f"{s['rps']:g}", "conc": f"{s['concurrency']:g}"}
            for s in data["services"]]  # fmt: skip
    cols = [("NAME", "name"), ("READY", "ready_of"), ("DESIRED", "desired"), ("RPS", "rps_"),
            ("CONCURRENCY", "conc"), ("URL", "url")]  # fmt: skip
    _table(rows, cols, output)


def describe_service(name: str, output: Output) -> None:
    d = _call("GET", f"/v1/services/{name}")
    if output == Output.json:
        print(json.dumps(d, indent=2))
        return
    c = Console()
    c.print(f"[bold]Service {d['name']}[/bold]  owner={d['owner']} queue={d['queue']} "
            f"model={d['model'] or '-'}  revision={d['revision']}")  # fmt: skip
    c.print(f"Desired {d['desired']}, ready {d['ready']}; {d['rps']:g} req/s, "
            f"{d['concurrency']:g} in flight; {d['url']}")  # fmt: skip
    c.print("Replicas:")
    for r in d["replicas"]:
        probe = r.get("last_probe") or []
        last = f"  last probe {probe[2]} ({'ok' if probe[1] else 'failed'})" if probe else ""
        c.print(f"  {r['name']:<16} {r['state']:<17} node={r['node'] or '-'} "
                f"port={r['port'] or '-'} restarts={r['restarts']}{last}")  # fmt: skip
    if d["scaling"]:
        c.print("Scaling decisions:")
        for x in d["scaling"]:
            c.print(f"  {_clock(x['time'])}  {x['from']} → {x['to']}  ({x['mode']}: stable "
                    f"{x['stable']}, panic {x['panic']}, ready {x['ready']}) "
                    f"{'; '.join(x['why'])}")  # fmt: skip
    c.print("Events:")
    for t, kind, msg in d["events"]:
        c.print(f"  {_clock(t)}  {kind:<14} {msg}")
