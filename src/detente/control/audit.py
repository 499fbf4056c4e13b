"""The audit log: who did what, when. Token creation, apply, node state changes,
cancels of other users' jobs by an admin, and refused authorizations are recorded;
admins read it (`detente audit`). The caller commits (with the change it records)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.control.store.models import Audit


def record(s: Session, actor: str, action: str, target: str, outcome: str, now: float) -> None:
    s.add(Audit(time=now, actor=actor[:100], action=action[:40], target=target[:2000],
                outcome=outcome[:20]))  # fmt: skip


def entries(s: Session, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest ``limit`` entries, oldest first."""
    rows = list(s.scalars(select(Audit).order_by(Audit.id.desc()).limit(limit)))
    return [
        {"id": a.id, "time": a.time, "actor": a.actor, "action": a.action,
         "target": a.target, "outcome": a.outcome}
        for a in reversed(rows)
    ]  # fmt: skip
