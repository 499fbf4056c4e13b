"""Bearer tokens: users belong to teams; roles ``user``, ``team-admin``, ``admin``.

Tokens are 32 random bytes (URL-safe); only their SHA-256 is stored, so a leaked
database does not leak credentials. Comparison of hashes is constant-time.

Each user maps to a Unix account. In **multi-user** mode (the control plane runs as
root) pods run as that account, which must exist and must not be root or the
daemon's own user. In **single-user** mode (not root, or ``up --single-user``) every
token maps to the daemon's own user, and no second Unix identity can be created.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pwd
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.control.store.models import ACTIVE, Job, Pod, User

ROLES = ("user", "team-admin", "admin")
MULTI, SINGLE = "multi-user", "single-user"


class AuthError(Exception):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def daemon_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def check_unix_user(mode: str, name: str) -> None:
    """AuthError unless jobs may run as Unix user ``name`` in ``mode``."""
    if mode == SINGLE:
        if name != daemon_user():
            raise AuthError(
                f"unix_user: single-user mode runs every job as {daemon_user()!r}; "
                f"cannot map to another Unix identity (got {name!r})"
            )
        return
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        raise AuthError(f"unix_user: no such Unix account (got {name!r})") from None
    if pw.pw_uid in (0, os.geteuid()):
        raise AuthError(f"unix_user: jobs never run as root or the daemon's user (got {name!r})")


def create_user(
    s: Session, name: str, team: str, role: str = "user", unix_user: str | None = None,
    mode: str = SINGLE,
) -> str:  # fmt: skip
    """Creates (or re-keys) ``name`` and returns its new token — the only time it is
    seen. The caller commits. ``unix_user`` defaults to the name (multi-user mode) or
    the daemon's user (single-user mode)."""
    if role not in ROLES:
        raise AuthError(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    if unix_user is None:
        unix_user = name if mode == MULTI else daemon_user()
    check_unix_user(mode, unix_user)
    token = secrets.token_urlsafe(32)
    user = s.get(User, name)
    if user is None:
        s.add(User(name=name, team=team, role=role, token_hash=digest(token), unix_user=unix_user))
    else:
        user.team, user.role, user.token_hash = team, role, digest(token)
        user.unix_user = unix_user
    return token


def create_admin(s: Session, name: str = "admin") -> str:
    """The bootstrap admin: it submits no work of its own in multi-user mode (it has no
    Unix account unless one is mapped with ``token``); the caller commits."""
    token = secrets.token_urlsafe(32)
    user = s.get(User, name)
    if user is None:
        s.add(User(name=name, team="default", role="admin", token_hash=digest(token)))
    else:
        user.token_hash = digest(token)
    return token


#: A running job's own credential: ``Bearer pod:<token of one of its pods>``.
POD_PREFIX = "pod:"


def authenticate(s: Session, token: str | None) -> User:
    """The user a bearer token stands for: a user's token, or a running job's pod
    token (what ``scontrol`` inside a job uses, as Slurm's job credential): it acts
    as the job's user with the plain ``user`` role, and only while the pod runs."""
    if not token:
        raise AuthError("missing bearer token")
    if token.startswith(POD_PREFIX):
        return _job_user(s, token[len(POD_PREFIX) :])
    h = digest(token)
    user = s.scalars(select(User).where(User.token_hash == h)).first()
    if user is None or not hmac.compare_digest(user.token_hash, h):
        raise AuthError("invalid token")
    return user


def _job_user(s: Session, token: str) -> User:
    pod = s.scalars(select(Pod).where(Pod.token == token)).first()
    job = s.get(Job, pod.job_id) if pod is not None else None
    if pod is None or job is None or pod.done or job.state not in ACTIVE:
        raise AuthError("invalid token")
    if not hmac.compare_digest(pod.token, token):
        raise AuthError("invalid token")
    user = s.get(User, job.user)
    if user is None:
        raise AuthError("invalid token")
    # A detached copy: the role is lowered for this request only, never stored.
    return User(name=user.name, team=user.team, role="user", token_hash="", unix_user=None)
