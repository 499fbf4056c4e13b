"""sbatch's ``--begin`` times → epoch seconds (the submitter's local time zone).

Forms, as Slurm reads them: ``now[+COUNT[seconds|minutes|hours|days|weeks]]`` (the
unit defaults to seconds; ``s``, ``min``, ``h``… abbreviate), ``HH:MM[:SS]`` (today,
or tomorrow once past), ``YYYY-MM-DD[THH:MM[:SS]]``, ``midnight``, ``noon``,
``teatime`` (16:00), ``today`` and ``tomorrow``. ValueError otherwise.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

UNITS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60,
         "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400,
         "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}  # fmt: skip
NAMED = {"midnight": (0, 0), "noon": (12, 0), "teatime": (16, 0)}


def parse_begin(v: str, now: float) -> float:
    """The epoch time ``v`` names, seen from ``now``."""
    text = v.strip().lower()
    local = datetime.fromtimestamp(now)
    if m := re.fullmatch(r"now(?:\+(\d+)([a-z]*))?", text):
        count, unit = int(m.group(1) or 0), m.group(2) or "s"
        if unit not in UNITS:
            raise ValueError(v)
        return now + count * UNITS[unit]
    if text in ("today", "tomorrow"):
        day = local.replace(hour=0, minute=0, second=0, microsecond=0)
        return (day + timedelta(days=text == "tomorrow")).timestamp()
    hms: tuple[int, int, int] | None = (*NAMED[text], 0) if text in NAMED else None
    if m := re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", text):
        hms = (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    if hms is not None:
        at = local.replace(hour=hms[0], minute=hms[1], second=hms[2], microsecond=0)
        return (at + timedelta(days=1) if at.timestamp() < now else at).timestamp()
    return datetime.fromisoformat(v.strip()).timestamp()
