"""Shared helpers: run cycles to a fixed point, the way `detente plan` does."""

from __future__ import annotations

import random

from detente.core.driver import Decisions, schedule
from detente.core.priority import reprioritize
from detente.core.profiles import Profile, build
from detente.core.queue_manager import QueueManager
from detente.core.snapshot import Snapshot
from detente.core.workload import Workload


def settle(
    snap: Snapshot, jobs: list[Workload], profile: Profile | str = "detente", now: float = 0.0
) -> Decisions:
    """The one driver at ``now``, as `plan`, live and the simulator run it."""
    prof = build(profile) if isinstance(profile, str) else profile
    queues = QueueManager(prof.queue_sort, jobs)
    reprioritize(snap, queues, prof.half_life, now)
    return schedule(snap, queues, prof, now, random.Random(prof.seed))


def nodes_of(snap: Snapshot, name: str) -> list[str]:
    adm = snap.running.get(name)
    return [snap.cluster.nodes[p.node].name for p in adm.placements] if adm else []


def admitted(snap: Snapshot) -> set[str]:
    return {n for n, a in snap.running.items() if a.complete}


# -- stores: SQLite and a real PostgreSQL server ---------------------------------------

import pytest  # noqa: E402

from detente.testing import postgres  # noqa: E402


@pytest.fixture(scope="session")
def pg_url():  # type: ignore[no-untyped-def]
    if postgres.pg_bin() is None:
        pytest.skip("PostgreSQL cannot be installed here: no initdb/pg_ctl (make test installs it)")
    with postgres.server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'detente.db'}"
    url = request.getfixturevalue("pg_url")
    # A fresh schema per test: drop everything the last test made.
    import sqlalchemy as sa

    eng = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with eng.begin() as c:
        c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    return url


# -- running in parallel (pytest-xdist, `--dist loadgroup`) ------------------------------

#: Modules that share something machine-wide run on one worker, one after another:
#: a local Slurm cluster listens on fixed ports, and a job's rendezvous port is derived
#: from its job id, which every daemon starts again at 1.
SERIAL_GROUPS = {
    "slurm-ports": ("test_conformance", "test_slurm_executor", "test_slurm_fidelity",
                    "test_slurm_nodes", "test_slurm_submit"),
    "rendezvous-ports": ("test_control_e2e", "test_slurm_steps"),
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.path.stem
        for group, modules in SERIAL_GROUPS.items():
            if module in modules:
                item.add_marker(pytest.mark.xdist_group(group))
