"""The report folder: results.json, report.md, report.html and PNG plots (matplotlib)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

COLUMNS = [
    ("jct_avg", "avg JCT (s)"),
    ("jct_p50", "p50 JCT (s)"),
    ("jct_p99", "p99 JCT (s)"),
    ("wait_avg", "avg wait (s)"),
    ("wait_p50", "p50 wait (s)"),
    ("jct_norm_avg", "norm. JCT"),
    ("gpu_util", "GPU util"),
    ("alloc_ratio", "alloc ratio"),
    ("frag_gpus_avg", "frag. GPUs"),
    ("jain_fairness", "Jain"),
    ("preemptions", "preemptions"),
    ("gangs_in_one_rack", "gangs in 1 rack"),
    ("unfinished", "unfinished"),
    ("jobs_per_s", "sim jobs/s"),
]


def fmt(v: Any, digits: int = 3) -> str:
    """A figure for a table: small floats to ``digits`` places, large ones grouped."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 10 else f"{v:,.0f}"
    return "—" if v is None else str(v)


def write(out: Path, results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> list[Path]:
    """Writes the report into ``out`` (created); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.json", out / "report.md", out / "report.html"]
    doc = {"meta": meta, "profiles": {p: r["metrics"] for p, r in results.items()}}
    files[0].write_text(json.dumps(doc, indent=2))
    plots = _plots(out, results)
    files[1].write_text(_markdown(results, meta, plots))
    files[2].write_text(_html(results, meta, plots))
    return files + plots


def _rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [[p] + [fmt(r["metrics"].get(k, "")) for k, _ in COLUMNS] for p, r in results.items()]


def _markdown(results: dict[str, dict[str, Any]], meta: dict[str, Any], plots: list[Path]) -> str:
    head = ["profile"] + [label for _, label in COLUMNS]
    lines = [
        "# detente simulate",
        "",
        f"Trace `{meta['trace']}` ({meta['jobs']} jobs), cluster `{meta['cluster']}`, "
        f"seed {meta['seed']}, load scale {meta['load_scale']}, time limit = run time × "
        f"{meta['over_estimate']}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(results)]
    lines += ["", *(f"![{p.stem}]({p.name})" for p in plots), ""]
    return "\n".join(lines)


def _html(results: dict[str, dict[str, Any]], meta: dict[str, Any], plots: list[Path]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["profile"] + [c for _, c in COLUMNS])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
        for row in _rows(results)
    )
    imgs = "".join(f'<figure><img src="{p.name}" alt="{p.stem}"></figure>' for p in plots)
    trace, where = html.escape(str(meta["trace"])), html.escape(str(meta["cluster"]))
    title = f"detente simulate — {trace} on {where}"
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style></head><body><h1>{title}</h1>"
        f"<table><tr>{head}</tr>{body}</table>{imgs}</body></html>"
    )


_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "img{max-width:48%;float:left}"
)


def _plots(out: Path, results: dict[str, dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    files = []

    def save(fig: Any, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        files.append(path)

    fig, ax = plt.subplots(figsize=(6, 4))
    for p, r in results.items():
        jct = np.array(r["series"]["jct"])
        if jct.size:
            ax.plot(np.sort(jct) / 3600, np.linspace(0, 1, jct.size), label=p)
    ax.set(xscale="log", xlabel="JCT (hours)", ylabel="fraction of jobs", title="JCT CDF")
    ax.legend()
    save(fig, "jct_cdf.png")
    for attr, title, name in [
        ("pending", "queue length", "queue.png"),
        ("running_gpus", "GPUs running work", "utilization.png"),
    ]:
        fig, ax = plt.subplots(figsize=(6, 4))
        for p, r in results.items():
            s = r["series"]["samples"]
            ax.plot([x["time"] / 3600 for x in s], [x[attr] for x in s], label=p, lw=0.8)
        ax.set(xlabel="hours", ylabel=title, title=f"{title} over time")
        ax.legend()
        save(fig, name)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.5))
    for ax, (key, label) in zip(
        axes,
        [("jct_avg", "avg JCT (s)"), ("wait_avg", "avg wait (s)"), ("gpu_util", "GPU util")],
        strict=True,
    ):
        ax.bar(list(results), [r["metrics"][key] for r in results.values()])
        ax.set_title(label)
        ax.tick_params(axis="x", rotation=45)
    save(fig, "bars.png")
    return files
