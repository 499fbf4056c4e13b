"""The reconciler's cache equals a fresh load of the store after any sequence of
events: submissions (gangs, arrays, dependencies, holds), cancels, holds and
releases, decisions and launches, pod ends, node drains, downs and resumes, and a
queue change. Hypothesis picks the sequence; a fake executor (named so) stands for
processes, so pods end when the test says."""

from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from detente.api.jobspec import JobSpec
from detente.api.profiles import load as load_profile
from detente.control import auth, jobs, layout, nodes, views, workloads
from detente.control.cache import CachedJob
from detente.control.reads import Reads
from detente.control.reconciler import Reconciler
from detente.control.store.db import open_store
from detente.control.store.models import ACTIVE, PENDING, Job, Pod
from detente.executors.base import PodLaunch


class FakeExecutor:
    """A fake: pods "run" until the test ends them with an exit code."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}  # exit file → code
        self.pid = 1000

    def launch(self, pod: PodLaunch) -> tuple[int, int]:
        self.pid += 1
        return self.pid, 1

    def exit_code(self, exit_file: Path) -> int | None:
        return self.codes.get(str(exit_file))

    def alive(self, pid: int | None, start: int | None) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # signal, reap, kill_pod, find, …
        return lambda *a, **k: {} if name == "find" else 0


OPS = ("submit", "submit", "submit", "cancel", "hold", "release", "step", "step", "step",
       "end", "end", "drain", "down", "resume", "queues")  # fmt: skip


class World:
    def __init__(self, tmp: Path) -> None:
        self.sessions = open_store(f"sqlite:///{tmp / 'c.db'}")
        with self.sessions() as s:
            workloads.put_setting(s, "nodes", layout.node_specs("3x8"))
            self.admin = auth.authenticate(s, auth.create_admin(s))
            s.commit()
        self.ex = FakeExecutor()
        self.rec = Reconciler(self.sessions, load_profile("detente"), tmp, self.ex)  # type: ignore[arg-type]
        self.clock = 1000.0
        self.reads = Reads()
        self.rec.clock = lambda: self.clock

    def do(self, op: str, r: random.Random) -> None:
        self.clock += r.choice([0.5, 5.0, 60.0])
        with self.sessions() as s:
            ids = list(s.scalars(Job.__table__.select().with_only_columns(Job.id)))
            pick = r.choice(ids) if ids else None
            getattr(self, f"_{op}")(s, r, pick)

    def _submit(self, s: Any, r: random.Random, pick: int | None) -> None:
        spec: dict[str, Any] = {"script": "true", "nodes": r.choice([1, 1, 2]), "time_limit": 600}
        spec["gpus_per_node"] = r.choice([1, 4, 8])
        if r.random() < 0.2:
            spec["array"], spec["array_limit"] = [0, 1, 2], r.choice([None, 1])
        if pick is not None and r.random() < 0.3:
            kind = r.choice(["afterok", "afterany", "afternotok"])
            spec["dependencies"] = [{"kind": kind, "job_id": pick}]
            spec["kill_on_invalid_dep"] = r.random() < 0.5
        config = workloads.cluster_and_config(s)[1]
        jobs.submit(s, self.admin, JobSpec.model_validate(spec), config, self.clock)

    def _cancel(self, s: Any, r: random.Random, pick: int | None) -> None:
        if pick is not None:
            jobs.cancel(s, self.admin, [pick], self.clock)

    def _hold(self, s: Any, r: random.Random, pick: int | None) -> None:
        if pick is not None:
            jobs.hold(s, self.admin, [pick], True, self.clock)

    def _release(self, s: Any, r: random.Random, pick: int | None) -> None:
        if pick is not None:
            jobs.hold(s, self.admin, [pick], False, self.clock)

    def _step(self, s: Any, r: random.Random, pick: int | None) -> None:
        self.rec.step()

    def _end(self, s: Any, r: random.Random, pick: int | None) -> None:
        from detente.control import launch

        running = list(s.scalars(Job.__table__.select().with_only_columns(Job.id)
                                 .where(Job.state.in_(ACTIVE))))  # fmt: skip
        if not running:
            return
        job = s.get(Job, r.choice(running))
        for pod in s.scalars(Pod.__table__.select().with_only_columns(Pod.id)
                             .where(Pod.job_id == job.id, Pod.attempt == job.attempt)):  # fmt: skip
            path = launch.exit_file(self.rec.state_dir, job, s.get(Pod, pod))
            self.ex.codes[str(path)] = r.choice([0, 0, 1])

    def _node(self, s: Any, r: random.Random, state: str) -> None:
        nodes.set_state(s, self.admin, f"node{r.randrange(3)}", state, "", self.clock)

    def _drain(self, s: Any, r: random.Random, pick: int | None) -> None:
        self._node(s, r, "drain")

    def _down(self, s: Any, r: random.Random, pick: int | None) -> None:
        self._node(s, r, "down")

    def _resume(self, s: Any, r: random.Random, pick: int | None) -> None:
        self._node(s, r, "resume")

    def _queues(self, s: Any, r: random.Random, pick: int | None) -> None:
        workloads.put_setting(s, "generation", workloads.setting(s, "generation", 0) + 1)
        s.commit()


def assert_cache_is_fresh(world: World) -> None:
    rec = world.rec
    with world.sessions() as s:
        rec.cache.refresh(s)
        fresh_reasons: dict[int, str] = {}
        cached_reasons: dict[int, str] = {}
        snap_a, q_a, rows_a = workloads.load(s, rec.profile, None, fresh_reasons, world.clock)
        snap_b, q_b, rows_b = workloads.load(s, rec.profile, rec._workloads, cached_reasons,
                                             world.clock, live=rec.cache,
                                             base=rec.running)  # fmt: skip
        assert set(rows_a) == set(rows_b)
        for jid, row in rows_a.items():
            for f in fields(CachedJob):
                assert getattr(rows_b[jid], f.name) == getattr(row, f.name), (jid, f.name)
        assert fresh_reasons == cached_reasons
        assert [w.name for w in q_a.ordered()] == [w.name for w in q_b.ordered()]
        placed = {n: [(p.node, p.devices) for p in a.placements] for n, a in snap_a.running.items()}
        assert placed == {n: [(p.node, p.devices) for p in a.placements]
                          for n, a in snap_b.running.items()}  # fmt: skip
        assert snap_a.cluster.nodes == snap_b.cluster.nodes
        # The patched running snapshot (`control.running`) charges what a fresh one does.
        for part in ("devices", "free_milli", "free_cpu", "free_mem", "pods", "whole"):
            assert getattr(snap_a.state, part) == getattr(snap_b.state, part), part
        assert used(snap_a) == used(snap_b)
        stopping = {n for n, a in snap_a.running.items() if a.evicting_until is not None}
        assert stopping == {n for n, a in snap_b.running.items() if a.evicting_until is not None}
        assert_reads_are_fresh(world, s)


def used(snap: Any) -> dict[str, dict[Any, int]]:
    """Quota usage without its zero entries (a released charge leaves one)."""
    return {q: {k: v for k, v in u.items() if v} for q, u in snap.quota.usage.items()}


def assert_reads_are_fresh(world: World, s: Any) -> None:
    """The API's cached `queue` rows (`detente.control.reads`) equal rows rendered from
    a fresh read of the store, whole and with only some fields."""
    now = world.clock + 5.0
    live = s.scalars(select(Job).where(Job.state.in_((*ACTIVE, PENDING))).order_by(Job.id))
    fresh = [views.job(j, now) for j in live]
    assert json.loads(world.reads.live(s, world.admin, (None, None, None), None, now)) == fresh
    fresh_nodes = views.nodes(workloads.load(s, world.rec.profile, queue=False)[0], {})
    cached_nodes = world.reads.decide(
        s, world.rec.profile, now, lambda snap, _q, _j: views.nodes(snap, {}), queue=False
    )
    assert cached_nodes == fresh_nodes
    _, fresh_q, _ = workloads.load(s, world.rec.profile, now=now)
    queued = world.reads.decide(s, world.rec.profile, now,
                                lambda _s, q, _j: [w.name for w in q.ordered()])  # fmt: skip
    assert sorted(queued) == sorted(w.name for w in fresh_q.ordered())
    keep = ("jobid", "st", "reason", "elapsed")
    assert json.loads(world.reads.live(s, world.admin, (None, None, {PENDING}), keep, now)) == [
        {k: r[k] for k in keep} for r in fresh if r["state"] == PENDING
    ]
    # Without time-dependent fields a running job's row is kept between reads too.
    untimed = ("id", "state", "reason", "nodelist", "attempt", "exit_code")
    assert json.loads(world.reads.live(s, world.admin, (None, None, None), untimed, now)) == [
        {k: r[k] for k in untimed} for r in fresh
    ]


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=st.lists(st.sampled_from(OPS), min_size=5, max_size=40), seed=st.integers(0, 2**32))
def test_the_cache_equals_a_fresh_load(tmp_path_factory: Any, ops: list[str], seed: int) -> None:
    world = World(tmp_path_factory.mktemp("cache"))
    r = random.Random(seed)
    for op in ops:
        world.do(op, r)
        assert_cache_is_fresh(world)
