"""The leader lease: one control plane schedules, the others serve reads and wait.

Every instance on one store runs a `Lease` on the row ``leases.scheduler``. Each
`tick` is one transaction holding the row locked (``FOR UPDATE``; SQLite: its write
lock):

1. no row → insert it, ours, epoch 1;
2. ours at our epoch → renew (``expires = now + ttl``);
3. expired, or left by an earlier process of this same instance (same holder name:
   same host and data directory, whose ``up`` refused to start while that one lived) →
   take it: holder = us, **epoch + 1**;
4. else → stand by (and note the leader's address).

**Fencing**: `install` makes every commit of the session factory that wrote anything
read the row first with a share lock (``FOR SHARE``) and abort with `Fenced` unless we
hold it at our epoch. The lock is held to the commit, so a takeover (which locks the
row for update) cannot slip between the check and the commit: a leader that lost the
lease — paused, partitioned, slow — can never write over its successor's decisions,
and a standby's API refuses writes (HTTP 503 naming the leader).

Contract: `leader` is true only between a successful tick and ``ttl`` after it, by
this process's clock (injected); a standby takes over at the earliest ``ttl`` after
the leader's last renewal, so with ``ttl`` 5 s and ticks every second, within ≈ 6 s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from detente.control.store.models import Lease as Row

NAME = "scheduler"
log = logging.getLogger("detente")


class Fenced(RuntimeError):
    """A write by an instance that does not hold the lease (at its epoch)."""


class Lease:
    def __init__(
        self, sessions: sessionmaker[Session], holder: str, address: str = "",
        ttl: float = 5.0, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        self.sessions, self.holder, self.address = sessions, holder, address
        self.ttl, self.clock = ttl, clock
        #: Our fencing token while we lead.
        self.epoch: int | None = None
        self._until = 0.0
        #: The leader's address as last seen (ours when we lead).
        self.leader_address = ""

    @property
    def leader(self) -> bool:
        return self.epoch is not None and self.clock() < self._until

    def tick(self) -> bool:
        """Acquires or renews the lease (see the module's steps); whether we lead now.
        A store error keeps what we had until our lease runs out."""
        now = self.clock()
        try:
            with self.sessions() as s:
                s.info["lease"] = True  # the lease's own write is not fenced
                row = s.scalars(select(Row).where(Row.name == NAME).with_for_update()).first()
                if row is None:
                    row = Row(name=NAME, holder=self.holder, epoch=1, expires=now + self.ttl,
                              address=self.address)  # fmt: skip
                    s.add(row)
                elif row.holder == self.holder and row.epoch == self.epoch:
                    row.expires = now + self.ttl
                elif row.holder == self.holder or row.expires <= now:
                    row.holder, row.epoch, row.address = self.holder, row.epoch + 1, self.address
                    row.expires = now + self.ttl
                else:
                    self.epoch, self.leader_address = None, row.address
                    return False
                s.commit()
                self.epoch, self._until, self.leader_address = (
                    row.epoch,
                    now + self.ttl,
                    row.address,
                )
                return True
        except (IntegrityError, StaleDataError):  # another instance inserted it first
            return self.leader
        except OperationalError:
            log.warning("lease: store unavailable; leading until %.1f", self._until)
            return self.leader

    def check(self, s: Session) -> None:
        """Raises `Fenced` unless we hold the lease at our epoch (within ``s``'s
        transaction, the row share-locked until it ends)."""
        row = s.execute(
            select(Row.holder, Row.epoch).where(Row.name == NAME).with_for_update(read=True)
        ).first()
        if (
            self.epoch is None
            or row is None
            or (row.holder, row.epoch) != (self.holder, self.epoch)
        ):
            where = f" (the leader is at {self.leader_address})" if self.leader_address else ""
            raise Fenced(f"this control plane is a standby{where}: writes go to the leader")

    def install(self) -> None:
        """Fences every writing commit of the session factory (see the module)."""
        ev: Any = event
        ev.listen(self.sessions, "after_flush", _wrote)
        ev.listen(self.sessions, "do_orm_execute", _dml)
        ev.listen(self.sessions, "before_commit", self._before_commit)
        ev.listen(self.sessions, "after_commit", _clear)
        ev.listen(self.sessions, "after_rollback", _clear)

    def _before_commit(self, s: Session) -> None:
        if s.info.get("lease"):
            return
        if s.info.get("wrote") or s.new or s.dirty or s.deleted:
            self.check(s)


def _wrote(s: Session, _ctx: Any) -> None:
    s.info["wrote"] = True


def _dml(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info["wrote"] = True


def _clear(s: Session) -> None:
    s.info.pop("wrote", None)


class Keeper:
    """The lease's thread: a tick every ``every`` seconds; ``on_change(leader)`` when
    the role changes."""

    def __init__(self, lease: Lease, on_change: Callable[[bool], None], every: float = 1.0) -> None:
        self.lease, self.on_change, self.every = lease, on_change, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="lease", daemon=True)
        self._was = False

    def _run(self) -> None:
        while not self.stop.is_set():
            now = self.lease.tick()
            if now != self._was:
                log.info("lease: %s (epoch %s)", "leader" if now else "standby", self.lease.epoch)
                self._was = now
                self.on_change(now)
            self.stop.wait(self.every)
