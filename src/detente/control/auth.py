"""Bearer tokens: users belong to teams; roles ``user``, ``team-admin``, ``admin``.

Tokens are 32 random bytes (URL-safe); only their SHA-256 is stored, so a leaked
database does not leak credentials. Comparison of hashes is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from detente.control.store.models import User

ROLES = ("user", "team-admin", "admin")


class AuthError(Exception):
    pass


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(s: Session, name: str, team: str, role: str = "user") -> str:
    """Creates (or re-keys) ``name`` and returns its new token — the only time it is seen."""
    if role not in ROLES:
        raise AuthError(f"role: must be one of {', '.join(ROLES)} (got {role!r})")
    token = secrets.token_urlsafe(32)
    user = s.get(User, name)
    if user is None:
        s.add(User(name=name, team=team, role=role, token_hash=digest(token)))
    else:
        user.team, user.role, user.token_hash = team, role, digest(token)
    s.commit()
    return token


def authenticate(s: Session, token: str | None) -> User:
    if not token:
        raise AuthError("missing bearer token")
    h = digest(token)
    user = s.scalars(select(User).where(User.token_hash == h)).first()
    if user is None or not hmac.compare_digest(user.token_hash, h):
        raise AuthError("invalid token")
    return user
