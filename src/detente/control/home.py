"""Where the control plane keeps its files (cheap to import: the CLI needs it first)."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not typing's: importing typing costs the fast path ≈ 3 ms

if TYPE_CHECKING:
    from pathlib import Path


def user_data_dir() -> str:
    """platformdirs' user data directory for detente; on Linux computed here (the XDG
    rule), since importing platformdirs costs the CLI's fast path ≈ 8 ms."""
    if sys.platform.startswith("linux"):
        base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser("~/.local/share")
        return os.path.join(base, "detente")
    import platformdirs

    return platformdirs.user_data_dir("detente")


def data_path(explicit: str | None = None) -> str:
    """`data_dir` as a string, without importing pathlib (the CLI's fast path)."""
    d = explicit or os.environ.get("DETENTE_HOME") or user_data_dir()
    os.makedirs(d, mode=0o700, exist_ok=True)  # it holds the admin token
    return d


def data_dir(explicit: str | None = None) -> Path:
    """``explicit``, else ``$DETENTE_HOME``, else the user's data directory; created."""
    from pathlib import Path

    return Path(data_path(explicit))
