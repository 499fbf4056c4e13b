"""Results as values: a `Status` says what a check decided, why, and who said it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Code(IntEnum):
    """Outcome of a check, ordered from best to worst so ``max()`` finds the worst."""

    SUCCESS = 0
    #: Cannot be admitted now, but may be once capacity frees up.
    UNSCHEDULABLE = 1
    #: Will never fit as the cluster and queues are configured (e.g. bigger than any rack).
    UNSCHEDULABLE_AND_UNRESOLVABLE = 2
    #: A bug or bad configuration found while deciding.
    ERROR = 3


@dataclass(frozen=True, slots=True)
class Status:
    """The decision of one plugin or check. ``plugin`` names who rejected, if anyone."""

    code: Code = Code.SUCCESS
    reason: str = ""
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code == Code.SUCCESS

    def __str__(self) -> str:
        if self.ok:
            return "ok"
        return f"{self.plugin}: {self.reason}" if self.plugin else self.reason


OK = Status()


def unschedulable(plugin: str, reason: str) -> Status:
    return Status(Code.UNSCHEDULABLE, reason, plugin)


def unresolvable(plugin: str, reason: str) -> Status:
    return Status(Code.UNSCHEDULABLE_AND_UNRESOLVABLE, reason, plugin)
