"""Slurm-style host lists: ``gpu-00,gpu-01,gpu-02,node7`` ↔ ``gpu-[00-02],node7``."""

from __future__ import annotations

import re

_TAIL = re.compile(r"^(.*?)(\d+)$")


def compress(names: list[str]) -> str:
    """Groups names that differ only in a trailing number of the same width, in order."""
    out: list[str] = []
    groups: dict[tuple[str, int], list[int]] = {}
    order: list[tuple[str, int] | str] = []
    for n in dict.fromkeys(names):
        m = _TAIL.match(n)
        if not m:
            order.append(n)
            continue
        key = (m.group(1), len(m.group(2)))
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(int(m.group(2)))
    for item in order:
        if isinstance(item, str):
            out.append(item)
            continue
        prefix, width = item
        nums = sorted(groups[item])
        if len(nums) == 1:
            out.append(f"{prefix}{nums[0]:0{width}d}")
            continue
        out.append(f"{prefix}[{','.join(_ranges(nums, width))}]")
    return ",".join(out)


def _ranges(nums: list[int], width: int) -> list[str]:
    spans: list[str] = []
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        spans.append(
            f"{start:0{width}d}" if start == prev else f"{start:0{width}d}-{prev:0{width}d}"
        )
        if n is not None:
            start = prev = n
    return spans
