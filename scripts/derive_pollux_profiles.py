"""Derive ``src/detente/data/pollux_profiles.json`` from Pollux's throughput profiles.

Input: ``pollux_throughput_profiles/<app>/{placements,scalability,validation-*}.csv`` from
the Pollux repository (Apache-2.0), stored in ../shared/traces/philly_pollux. Output per
application:

* ``epochs``: rows of its validation traces (one row per epoch; Pollux's max epochs);
* ``samples_per_epoch``: first-row ``progress`` (in steps of the smallest batch size)
  times that batch size;
* ``iter_time``: ``{replicas: [[local_bsz, seconds], ...]}``, step + sync time of the
  fastest measured placement of that many replicas.

Run:
    python scripts/derive_pollux_profiles.py \
        ../shared/traces/philly_pollux/pollux_throughput_profiles
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path


def derive(app_dir: Path) -> dict[str, object]:
    vals = sorted(app_dir.glob("validation-*.csv"), key=lambda p: int(p.stem.split("-")[1]))
    smallest = int(vals[0].stem.split("-")[1])
    with vals[0].open() as f:
        rows = list(csv.DictReader(f))
    best: dict[int, dict[int, float]] = {}

    def note(replicas: int, bsz: int, t: float) -> None:
        cur = best.setdefault(replicas, {})
        cur[bsz] = min(t, cur.get(bsz, t))

    with (app_dir / "placements.csv").open() as f:
        for r in csv.DictReader(f):
            reps = sum(int(c) for c in r["placement"])
            note(reps, int(r["local_bsz"]), float(r["step_time"]) + float(r["sync_time"]))
    with (app_dir / "scalability.csv").open() as f:
        for r in csv.DictReader(f):
            t = float(r["step_time"]) + float(r["sync_time"])
            note(int(r["num_replicas"]), int(r["local_bsz"]), t)
    return {
        "epochs": len(rows),
        "samples_per_epoch": round(float(rows[0]["progress"]) * smallest),
        "iter_time": {
            str(k): [[b, round(t, 6)] for b, t in sorted(v.items())]
            for k, v in sorted(best.items())
        },
    }


def main(root: Path) -> None:
    out = {d.name: derive(d) for d in sorted(root.iterdir()) if d.is_dir()}
    dest = Path(__file__).resolve().parents[1] / "src" / "detente" / "data" / "pollux_profiles.json"
    dest.write_text(json.dumps(out, separators=(",", ":")) + "\n")
    print(dest, {k: (v["epochs"], v["samples_per_epoch"]) for k, v in out.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]))
