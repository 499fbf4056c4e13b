"""Run folders kept until the bench ends, then removed together.

Removing thousands of files slows every file made in the next minutes on this
machine's ext4, which has no journal: its inode allocator skips, one by one, the
inodes freed in the last 60–300 s (``recently_deleted`` in ``fs/ext4/ialloc.c``,
checked only without a journal). A run made right after another run's cleanup paid
for that cleanup (detente's ``true`` arrays: 4.3 s right after one, 3.6 s after
100 s idle) — both systems make files per job (slurmd a spool folder, detente a log
per pod). What a system deletes during its own run it still pays for.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from types import TracebackType


class Scratch:
    """``with Scratch() as s: d = s.new()`` — a fresh folder per run; all removed on
    leaving the block."""

    def __init__(self) -> None:
        self.made: list[Path] = []

    def new(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="detente-bench-"))
        self.made.append(d)
        return d

    def __enter__(self) -> Scratch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        for d in self.made:
            shutil.rmtree(d, ignore_errors=True)
