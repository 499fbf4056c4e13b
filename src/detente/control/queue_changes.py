"""What an apply or delete changes in the queue objects: field-by-field diffs, and the
LocalQueues it would take away from jobs (refused without ``force``).

The first apply of a ClusterQueue replaces the implicit configuration (one ``default``
ClusterQueue with a LocalQueue per team), so it, too, can remove a LocalQueue that
holds jobs: those would wait, pending with "LocalQueue … does not exist", until a
LocalQueue of that name exists again (running ones finish where they are).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from detente.control.store.models import TERMINAL, Job
from detente.core.queues import QueueConfig


class StrandedError(ValueError):
    pass


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """``path: old → new`` for every field that differs (added and removed ones too)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in sorted(set(old) | set(new), key=str):
            p = f"{path}.{k}" if path else str(k)
            if k not in old:
                out.append(f"{p}: added {_show(new[k])}")
            elif k not in new:
                out.append(f"{p}: removed (was {_show(old[k])})")
            else:
                out += diff(old[k], new[k], p)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [line for i, (a, b) in enumerate(zip(old, new, strict=True))
                for line in diff(a, b, f"{path}[{i}]")]  # fmt: skip
    return [] if old == new else [f"{path}: {_show(old)} → {_show(new)}"]


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def jobs_by_queue(s: Session) -> Counter[str]:
    """Jobs not yet ended, per LocalQueue name."""
    rows = s.execute(
        select(Job.queue, func.count()).where(Job.state.not_in(TERMINAL)).group_by(Job.queue)
    )
    return Counter({q: n for q, n in rows})


def check_stranded(s: Session, before: QueueConfig, after: QueueConfig, force: bool) -> list[str]:
    """LocalQueues that ``after`` drops while they hold jobs, as plan lines; StrandedError
    naming them unless ``force``."""
    gone = {lq.name for lq in before.local_queues.values()} - {
        lq.name for lq in after.local_queues.values()
    }
    held = jobs_by_queue(s)
    lost = {q: held[q] for q in sorted(gone) if held[q]}
    if lost and not force:
        names = ", ".join(f"LocalQueue {q} ({n} job(s))" for q, n in lost.items())
        raise StrandedError(
            f"this removes {names}: its pending jobs would wait until a LocalQueue of that "
            "name exists again (running ones finish); repeat with --force to do so"
        )
    return [f"LocalQueue/{q}: removed; its {n} job(s) wait for it" for q, n in lost.items()]
