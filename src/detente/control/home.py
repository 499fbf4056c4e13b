"""Where the control plane keeps its files (cheap to import: the CLI needs it first)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def data_dir(explicit: str | None = None) -> Path:
    """``explicit``, else ``$DETENTE_HOME``, else the user's data directory; created."""
    d = Path(explicit or os.environ.get("DETENTE_HOME") or platformdirs.user_data_dir("detente"))
    d.mkdir(parents=True, exist_ok=True, mode=0o700)  # it holds the admin token
    return d
