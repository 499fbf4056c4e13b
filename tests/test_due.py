"""Which active jobs a settle reads (`detente.control.due`): the jobs of pods the
executor saw end, stopping jobs, jobs at their time limit, and every job at each
sweep or when the executor cannot tell what ended. Real SQLite store; the executor is
the fake of test_cache (named so), which reports ended pids when told."""

from __future__ import annotations

from pathlib import Path

from detente.api.jobspec import JobSpec
from detente.control import jobs, workloads
from detente.control.due import SWEEP, Due
from detente.control.store.models import RUNNING, Job, Pod
from test_cache import FakeExecutor, World


class EndingExecutor(FakeExecutor):
    """test_cache's fake, which also says which pids ended (as the exit watcher)."""

    def __init__(self) -> None:
        super().__init__()
        self.just_ended: set[int] | None = set()

    def ended(self) -> set[int] | None:
        out, self.just_ended = self.just_ended, set() if self.just_ended is not None else None
        return out


def started_world(tmp: Path) -> tuple[World, dict[str, int]]:
    """Three running one-GPU jobs: ``short`` (a 60 s limit), ``long`` and ``other``."""
    world = World(tmp)
    names = {}
    with world.sessions() as s:
        config = workloads.cluster_and_config(s)[1]
        for name, limit in (("short", 60), ("long", 3600), ("other", 3600)):
            spec = JobSpec(script="true", name=name, gpus_per_node=1, time_limit=limit)
            (names[name],) = jobs.submit(s, world.admin, spec, config, world.clock)
    world.rec.step()
    with world.sessions() as s:
        assert all(j.state == RUNNING for j in s.query(Job))
    return world, names


def pid_of(world: World, jid: int) -> int:
    with world.sessions() as s:
        pid = s.query(Pod).filter(Pod.job_id == jid).one().pid
        assert pid is not None
        return pid


def test_without_word_from_the_executor_every_job_is_read(tmp_path: Path) -> None:
    world, _ = started_world(tmp_path)
    ex = EndingExecutor()
    ex.just_ended = None
    due = Due(ex)
    with world.sessions() as s:
        assert due.jobs(s, world.clock, {}) is None
        assert due.jobs(s, world.clock + 1, {}) is None


def test_only_the_jobs_that_may_have_changed_are_read(tmp_path: Path) -> None:
    world, ids = started_world(tmp_path)
    ex = EndingExecutor()
    due = Due(ex)
    with world.sessions() as s:
        assert due.jobs(s, world.clock, {}) is None  # the first is a sweep
        due.committed()
        assert due.jobs(s, world.clock + 1, {}) == set()
        ex.just_ended = {pid_of(world, ids["other"])}
        assert due.jobs(s, world.clock + 2, {}) == {ids["other"]}
        # Not committed (a step lost its compare-and-set): asked again.
        assert due.jobs(s, world.clock + 3, {}) == {ids["other"]}
        due.committed()
        assert due.jobs(s, world.clock + 4, {}) == set()
        # A pod gone without an exit file keeps its job due until it is settled.
        assert due.jobs(s, world.clock + 4.5, {99: ids["long"]}) == {ids["long"]}


def test_time_limits_and_stopping_jobs_are_due(tmp_path: Path) -> None:
    world, ids = started_world(tmp_path)
    due = Due(EndingExecutor())
    with world.sessions() as s:
        assert due.jobs(s, world.clock + 57, {}) is None  # a sweep
        assert due.jobs(s, world.clock + 59, {}) == set()
        assert due.jobs(s, world.clock + 60, {}) == {ids["short"]}
        jobs.cancel(s, world.admin, [ids["long"]], world.clock)
    with world.sessions() as s:
        assert due.jobs(s, world.clock + 61, {}) == {ids["short"], ids["long"]}
        assert due.jobs(s, world.clock + 57 + SWEEP, {}) is None  # the periodic sweep
