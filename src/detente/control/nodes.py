"""Node administration: drain, down, resume (Slurm's ``scontrol update nodename=…
state=…``), and fail (fault injection). A drained node runs what it has and takes
nothing new; a node set down also stops what runs on it (NODE_FAIL: SIGTERM, grace,
SIGKILL); a failed node is down and its pods die at once (SIGKILL, no grace), as on a
real node loss. Only the admin may change node states."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.control import audit, workloads
from detente.control.jobs import JobError, event, with_cas
from detente.control.store.models import ACTIVE, NODE_FAIL, STOPPING, Job, User

STATES = ("drain", "down", "fail", "resume")


def set_state(
    s: Session, actor: User, node: str, state: str, reason: str, now: float
) -> dict[str, str]:
    if actor.role != "admin":
        raise JobError("only the admin changes node states", 403)
    return with_cas(s, lambda: _set_state(s, actor, node, state, reason, now))


def _set_state(
    s: Session, actor: User, node: str, state: str, reason: str, now: float
) -> dict[str, str]:
    if state not in STATES:
        raise JobError(f"state: one of {', '.join(STATES)} (got {state!r})")
    names = {n["name"] for n in workloads.setting(s, "nodes", [])}
    if node not in names:
        raise JobError(f"no node {node!r}", 404)
    states = dict(workloads.setting(s, "node_states", {}) or {})
    if state == "resume":
        states.pop(node, None)
    else:
        why = reason or (f"failed (injected by {actor.name})" if state == "fail" else
                         f"set {state} by {actor.name}")  # fmt: skip
        states[node] = {"state": "down" if state == "fail" else state, "reason": why}
    workloads.put_setting(s, "node_states", states)
    workloads.put_setting(s, "generation", workloads.setting(s, "generation", 0) + 1)
    if state in ("down", "fail"):
        _stop_jobs_on(s, node, states[node]["reason"], now, at_once=state == "fail")
    audit.record(s, actor.name, f"node-{state}", f"{node}: {reason}", "ok", now)
    s.commit()
    return {"node": node, "state": "up" if state == "resume" else state}


def _stop_jobs_on(s: Session, node: str, why: str, now: float, at_once: bool) -> None:
    """Every job on ``node`` stops as NODE_FAIL (``at_once``: killed now, no grace)."""
    for job in s.scalars(select(Job).where(Job.state.in_(ACTIVE))):
        if node in (job.nodes or []) and (job.state != STOPPING or at_once):
            job.state, job.stop_reason = STOPPING, NODE_FAIL
            if at_once:
                job.kill_at = now  # its processes die now, as with the node
            event(s, job.id, now, "NodeDown", f"{node}: {why}")


#: Marks a node state that an engine (Slurm) reported, not an admin of detente.
ENGINE = "engine"


def sync_engine(s: Session, engine: dict[str, dict[str, str]], now: float) -> bool:
    """Makes the states the engine reports for its nodes detente's (the caller
    commits): a node it drains or takes down takes no new work here, and comes back
    when the engine returns it; jobs on a node it takes down stop (NODE_FAIL). States
    an admin set in detente are left alone. Whether anything changed."""
    names = {n["name"] for n in workloads.setting(s, "nodes", [])}
    states = dict(workloads.setting(s, "node_states", {}) or {})
    new = {n: st for n, st in states.items() if st.get("source") != ENGINE or n in engine}
    for node, st in engine.items():
        if node in names and states.get(node, {"source": ENGINE}).get("source") == ENGINE:
            new[node] = {"state": st["state"], "reason": st["reason"], "source": ENGINE}
    if new == states:
        return False
    workloads.put_setting(s, "node_states", new)
    workloads.put_setting(s, "generation", workloads.setting(s, "generation", 0) + 1)
    for node, st in new.items():
        if st["state"] == "down" and states.get(node, {}).get("state") != "down":
            _stop_jobs_on(s, node, f"Slurm: {st['reason']}", now, at_once=False)
    return True
