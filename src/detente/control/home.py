"""Where the control plane keeps its files (cheap to import: the CLI needs it first)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def user_data_dir() -> str:
    """platformdirs' user data directory for detente; on Linux computed here (the XDG
    rule), since importing platformdirs costs the CLI's fast path ≈ 8 ms."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser("~/.local/share")
        return os.path.join(base, "detente")
    import platformdirs

    return platformdirs.user_data_dir("detente")


def data_dir(explicit: str | None = None) -> Path:
    """``explicit``, else ``$DETENTE_HOME``, else the user's data directory; created."""
    d = Path(explicit or os.environ.get("DETENTE_HOME") or user_data_dir())
    d.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds the admin token
    return d
