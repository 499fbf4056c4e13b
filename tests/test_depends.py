"""Slurm's job dependencies, named cases: arrays as a whole or one task, every kind,
``?`` and ``,``, singleton, ``after+time``, and ``--kill-on-invalid-dep``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from detente.api.jobspec import Dependency, JobSpec
from detente.api.sbatch import parse
from detente.control import auth, depends, jobs, layout
from detente.control.store.db import open_store
from detente.control.store.models import (
    CANCELLED,
    COMPLETED,
    FAILED,
    PENDING,
    RUNNING,
    TIMEOUT,
    Job,
    User,
)

QUEUES = layout.queue_config(layout.cluster(layout.node_specs("2x8")), None, {"vision"})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Session, dict[str, User]]]:
    sessions: sessionmaker[Session] = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        toks = {n: auth.create_user(s, n, "vision") for n in ("ana", "bo")}
        yield s, {n: auth.authenticate(s, t) for n, t in toks.items()}


def _submit(s: Session, who: User, **spec: object) -> list[int]:
    return jobs.submit(s, who, JobSpec.model_validate({"script": "true", **spec}), QUEUES, 0.0)


def _set(s: Session, ids: list[int], *states: str, start: float | None = 1.0) -> None:
    for jid, state in zip(ids, states, strict=True):
        job = s.get(Job, jid)
        assert job is not None
        job.state, job.start_time = state, (None if state == PENDING else start)
    s.flush()


def _why(s: Session, jid: int, now: float = 1e9) -> str | None:
    job = s.get(Job, jid)
    assert job is not None
    live = [j for j in s.query(Job) if j.state not in depends.TERMINAL]
    return depends.blocked(job, depends.index(s, [job], live), now)


def _dep(text: str) -> dict[str, object]:
    spec = parse("#!/bin/bash\ntrue\n", cli=["--dependency", text]).spec
    return {"dependencies": [d.model_dump() for d in spec.dependencies],
            "dependency_any": spec.dependency_any}  # fmt: skip


ARRAY_CASES = [
    ("all tasks completed", (COMPLETED, COMPLETED, COMPLETED), None),
    ("one still running", (COMPLETED, RUNNING, COMPLETED), "Dependency"),
    ("a later task failed, one runs", (COMPLETED, RUNNING, FAILED), "DependencyNeverSatisfied"),
    ("a task timed out", (TIMEOUT, COMPLETED, COMPLETED), "DependencyNeverSatisfied"),
]


@pytest.mark.parametrize(("case", "states", "expected"), ARRAY_CASES)
def test_afterok_on_an_array_waits_for_every_task(
    store: tuple[Session, dict[str, User]], case: str, states: tuple[str, ...],
    expected: str | None,
) -> None:  # fmt: skip
    s, u = store
    tasks = _submit(s, u["ana"], array=[0, 1, 2])
    (after,) = _submit(s, u["ana"], **_dep(f"afterok:{tasks[0]}"))
    _set(s, tasks, *states)
    assert _why(s, after) == expected, case


def test_afterok_on_one_task_names_that_task_only(store: tuple[Session, dict[str, User]]) -> None:
    s, u = store
    tasks = _submit(s, u["ana"], array=[4, 5, 6])
    (five,) = _submit(s, u["ana"], **_dep(f"afterok:{tasks[0]}_5"))
    _set(s, tasks, FAILED, COMPLETED, RUNNING)
    assert _why(s, five) is None  # task 5 completed; 4 failed and 6 runs: not its concern
    # "11_5" is task 5 of array 11, never job 115.
    named = parse("true\n", cli=["-d", "afterok:11_5"]).spec.dependencies
    assert [(d.job_id, d.task) for d in named] == [(11, 5)]
    with pytest.raises(jobs.JobError, match=f"no job {tasks[0]}_9"):
        _submit(s, u["ana"], **_dep(f"afterok:{tasks[0]}_9"))


@pytest.mark.parametrize(
    ("kind", "state", "expected"),
    [
        ("afterany", RUNNING, "Dependency"),
        ("afterany", FAILED, None),
        ("afternotok", COMPLETED, "DependencyNeverSatisfied"),
        ("afternotok", FAILED, None),
        ("afternotok", RUNNING, "Dependency"),
        ("after", PENDING, "Dependency"),
        ("after", RUNNING, None),
        ("after", CANCELLED, None),  # ended without starting: after is met
    ],
)
def test_each_kind_on_one_job(
    store: tuple[Session, dict[str, User]], kind: str, state: str, expected: str | None
) -> None:
    s, u = store
    (first,) = _submit(s, u["ana"])
    (then,) = _submit(s, u["ana"], **_dep(f"{kind}:{first}"))
    _set(s, [first], state, start=None if state == CANCELLED else 1.0)
    assert _why(s, then) == expected


def test_after_plus_minutes_counts_from_the_start(store: tuple[Session, dict[str, User]]) -> None:
    s, u = store
    (first,) = _submit(s, u["ana"])
    (then,) = _submit(s, u["ana"], **_dep(f"after:{first}+10"))
    _set(s, [first], RUNNING, start=100.0)
    assert _why(s, then, now=699.0) == "Dependency" and _why(s, then, now=700.0) is None


def test_aftercorr_pairs_tasks_by_id(store: tuple[Session, dict[str, User]]) -> None:
    s, u = store
    prep = _submit(s, u["ana"], array=[0, 1])
    train = _submit(s, u["ana"], array=[0, 1], **_dep(f"aftercorr:{prep[0]}"))
    _set(s, prep, COMPLETED, FAILED)
    assert _why(s, train[0]) is None and _why(s, train[1]) == "DependencyNeverSatisfied"


def test_question_mark_means_any_and_comma_all(store: tuple[Session, dict[str, User]]) -> None:
    s, u = store
    a, b = _submit(s, u["ana"])[0], _submit(s, u["ana"])[0]
    (either,) = _submit(s, u["ana"], **_dep(f"afterok:{a}?afterok:{b}"))
    (both,) = _submit(s, u["ana"], **_dep(f"afterok:{a},afterok:{b}"))
    _set(s, [a, b], FAILED, COMPLETED)
    assert _why(s, either) is None and _why(s, both) == "DependencyNeverSatisfied"
    _set(s, [b], FAILED)
    assert _why(s, either) == "DependencyNeverSatisfied"
    with pytest.raises(Exception, match="invalid value"):
        parse("true\n", cli=["-d", f"afterok:{a},afterok:{b}?afterany:{a}"])


def test_singleton_runs_one_job_of_a_name_and_user_at_a_time(
    store: tuple[Session, dict[str, User]],
) -> None:
    s, u = store
    (one,) = _submit(s, u["ana"], name="nightly")
    (two,) = _submit(s, u["ana"], name="nightly", **_dep("singleton"))
    (other,) = _submit(s, u["bo"], name="nightly", **_dep("singleton"))
    _set(s, [one], RUNNING)
    assert _why(s, two) == "Dependency" and _why(s, other) is None  # bo's is not ana's
    _set(s, [one], COMPLETED)
    assert _why(s, two) is None


@pytest.mark.parametrize("text", ["afterok:\u0661", "\u0661\u0662", "afterok:3_\u0665"])
def test_ids_are_ascii_digits(text: str) -> None:
    with pytest.raises(Exception, match="--dependency: invalid value"):
        parse("true\n", cli=["-d", text])


def test_a_bare_id_is_afterany_and_singleton_takes_no_id() -> None:
    assert parse("true\n", cli=["-d", "42"]).spec.dependencies == [
        Dependency(kind="afterany", job_id=42)
    ]
    with pytest.raises(ValueError):
        Dependency(kind="singleton", job_id=3)


def test_kill_on_invalid_dep_cancels_the_job(tmp_path: Path) -> None:
    from detente.api.profiles import load
    from detente.control import workloads
    from detente.control.reconciler import Reconciler

    sessions = open_store(f"sqlite:///{tmp_path / 'd.db'}")
    with sessions() as s:
        workloads.put_setting(s, "nodes", layout.node_specs("2x8"))
        ana = auth.authenticate(s, auth.create_user(s, "ana", "default"))
        (first,) = _submit(s, ana)
        (kill,) = _submit(s, ana, kill_on_invalid_dep=True, **_dep(f"afterok:{first}"))
        (keep,) = _submit(s, ana, **_dep(f"afterok:{first}"))
        _set(s, [first], FAILED)
        s.commit()
    rec = Reconciler(sessions, load("detente"), tmp_path, clock=lambda: 50.0)
    rec.step()
    with sessions() as s:
        killed, kept = s.get(Job, kill), s.get(Job, keep)
        assert killed is not None and kept is not None
        assert (killed.state, killed.reason, killed.end_time) == (
            CANCELLED,
            "DependencyNeverSatisfied",
            50.0,
        )
        assert (kept.state, kept.reason) == (PENDING, "DependencyNeverSatisfied")
    assert parse("true\n", cli=["--kill-on-invalid-dep=yes"]).spec.kill_on_invalid_dep
