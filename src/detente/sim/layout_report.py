"""The layouts' report: results.json (``layouts``), report.md and a plot of the GPUs in
use by training and by inference over time in each layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from detente.sim.report import fmt

ROWS = [
    ("gpus", "GPUs"),
    ("train_gpus", "training GPUs"),
    ("infer_gpus", "inference GPUs"),
    ("meets_slo", "meets the SLO"),
    ("svc_availability", "inference availability"),
    ("svc_wait_p99", "scale-up wait p99 (s)"),
    ("jct_avg", "training JCT avg (s)"),
    ("jct_p50", "training JCT p50 (s)"),
    ("jct_p99", "training JCT p99 (s)"),
    ("gpu_util", "GPU utilization"),
    ("preemptions", "preemptions"),
    ("gpu_hours_lost", "GPU-hours lost"),
]


def table(out: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one column per layout, one row per figure."""
    names = [n for n in ("shared", "split") if n in out]
    rows = [[label] + [fmt(out[n].get(key), 4) for n in names] for key, label in ROWS]
    return ["", *names], rows


def write(out_dir: Path, out: dict[str, Any], meta: dict[str, Any]) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    layouts = {n: {k: v for k, v in out[n].items() if k != "series"}
               for n in ("shared", "split") if n in out}  # fmt: skip
    doc = {"meta": meta, "slo": out["slo"], "train_jct_bound": out["train_jct_bound"],
           "layouts": layouts, "search": out.get("trail", [])}  # fmt: skip
    files = [out_dir / "results.json", out_dir / "report.md"]
    files[0].write_text(json.dumps(doc, indent=2))
    plot = _plot(out_dir, out)
    head, rows = table(out)
    lines = [
        "# detente simulate — one pool against the split",
        "",
        f"Trace `{meta['trace']}`, services `{meta['services']}`, node shape "
        f"`{meta['cluster']}` (the reference training cluster), profile `{meta['profile']}`, "
        f"preemptible share {meta['preemptible_share']}, checkpoints every "
        f"{meta['checkpoint_every']} s, search {'on' if meta['search'] else 'off'}.",
        "",
        f"SLO: availability ≥ {out['slo']['availability']}, scale-up wait p99 ≤ "
        f"{out['slo']['wait_p99']} s, training JCT avg ≤ {out['train_jct_bound']:,.0f} s "
        f"({out['slo']['train_slack']} × training alone on the reference cluster).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
        *("| " + " | ".join(r) + " |" for r in rows),
        "",
        f"![GPUs in use]({plot.name})",
        "",
    ]
    files[1].write_text("\n".join(lines))
    return [*files, plot]


def _plot(out_dir: Path, out: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("shared", "split") if n in out]
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.8 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        s = out[name]["series"]
        hours = [x["time"] / 3600 for x in s]
        infer = [x["service_gpus"] for x in s]
        train = [x["running_gpus"] - x["service_gpus"] for x in s]
        ax.stackplot(hours, train, infer, labels=["training", "inference"], alpha=0.8)
        ax.axhline(out[name]["gpus"], color="k", lw=0.8, ls="--", label="GPUs")
        ax.set(title=f"{name}: {out[name]['gpus']} GPUs", xlabel="hours", ylabel="GPUs in use")
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path = out_dir / "layouts.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
