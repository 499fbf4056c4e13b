"""The Slurm conformance suite, both halves in one run: every case of
`detente.conformance.cases` on real Slurm 22.05 (scripts/slurm/setup.sh, 4 nodes × 8
GPUs) and on detente (`detente up --nodes 4x8`), compared field by field. Prints JSON;
``--doc`` writes docs/slurm-compat.md and ``--record`` the Slurm answers the tests
compare detente with where Slurm is absent.

    python bench/slurm_conformance.py --doc docs/slurm-compat.md \
        --record src/detente/conformance/slurm-22.05.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from detente.conformance.cases import CASES
from detente.conformance.report import markdown
from detente.conformance.run import compare, run
from detente.conformance.systems import local_detente, local_slurm

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ROOT / "src" / "detente" / "conformance" / "slurm-22.05.json"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--doc", type=Path)
    ap.add_argument("--record", type=Path)
    ap.add_argument("--skip-slurm", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="conformance-") as tmp:
        work = Path(tmp)
        with local_detente(work / "detente-home") as det_system:
            det = run(det_system, CASES, work / "detente")
        if a.skip_slurm:
            slurm = json.loads(RECORDED.read_text())
        else:
            with local_slurm(work / "slurm-cluster") as slurm_system:
                slurm = run(slurm_system, CASES, work / "slurm")
    rows = compare(slurm, det, CASES)
    if a.record:
        a.record.write_text(json.dumps(slurm, indent=1, sort_keys=True) + "\n")
    if a.doc:
        a.doc.write_text(markdown(rows, "python bench/slurm_conformance.py --doc " + str(a.doc)))
    same = sum(r["same"] for r in rows)
    print(json.dumps({"cases": len(rows), "same_or_explained": same, "rows": rows}, indent=1))
    return 0 if same == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
