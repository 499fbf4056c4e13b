"""The Slurm conformance suite as tests: detente's half always, against Slurm's
answers recorded from a real Slurm 22.05 run; and, where Slurm installs (root and
Debian's packages), both halves live in one run. A difference must be fixed or
carry its reason in the case (`detente.conformance.cases`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from detente.conformance.cases import CASES
from detente.conformance.run import compare, run
from detente.conformance.systems import SlurmUnavailable, local_detente, local_slurm

RECORDED = Path(__file__).resolve().parents[1] / "src/detente/conformance/slurm-22.05.json"


def _unexplained(rows: list[dict[str, object]]) -> list[str]:
    return [f"{r['case']}: {r['differs']} slurm={r['slurm']} detente={r['detente']}"
            for r in rows if not r["same"]]  # fmt: skip


@pytest.fixture(scope="module")
def detente_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    work = tmp_path_factory.mktemp("conformance")
    with local_detente(work / "home") as system:
        return run(system, CASES, work / "cases")


def test_at_least_forty_behaviours_are_compared() -> None:
    recorded = json.loads(RECORDED.read_text())
    assert len(CASES) >= 40 and {c.name for c in CASES} == set(recorded)


def test_detente_answers_as_slurm_did(detente_answers: dict[str, dict[str, str]]) -> None:
    rows = compare(json.loads(RECORDED.read_text()), detente_answers, CASES)
    assert _unexplained(rows) == []
    identical = sum(not r["differs"] for r in rows)
    assert identical >= 45, [r["case"] for r in rows if r["differs"]]


def test_side_by_side_with_a_live_slurm(
    detente_answers: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    try:
        with local_slurm(tmp_path / "slurm") as slurm:
            slurm_answers = run(slurm, CASES, tmp_path / "cases")
    except SlurmUnavailable as e:
        pytest.skip(f"Slurm cannot run here (root and Debian's slurm packages needed): {e}")
    assert _unexplained(compare(slurm_answers, detente_answers, CASES)) == []
