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


_GROUP = re.compile(r"([^,\[]*)\[([^\]]*)\]([^,]*)|([^,\[\]]+)")


#: The most names a host list may expand to (a list is bounded before it is built).
MAX_HOSTS = 100_000


def expand(text: str, limit: int = MAX_HOSTS) -> list[str]:
    """``gpu-[00-02,05],node7`` → ``['gpu-00', 'gpu-01', 'gpu-02', 'gpu-05', 'node7']``
    (ranges keep their zero padding, as Slurm's). ValueError naming the bad part, or
    if it would expand to more than ``limit`` names."""
    out: list[str] = []
    pos, text = 0, text.strip()
    while pos < len(text):
        m = _GROUP.match(text, pos)
        if m is None:
            raise ValueError(f"bad host list near {text[pos : pos + 40]!r}")
        if m.group(4) is not None:
            out.append(m.group(4))
            if len(out) > limit:
                raise ValueError(f"host list names more than {limit} hosts")
        else:
            for num in _numbers(m.group(2), limit - len(out)):
                out.append(f"{m.group(1)}{num}{m.group(3)}")
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ValueError(f"bad host list near {text[pos : pos + 40]!r}")
            pos += 1
    return out


def _numbers(ranges: str, room: int) -> list[str]:
    nums: list[str] = []
    for part in ranges.split(","):
        lo, dash, hi = part.partition("-")
        if not (lo.isascii() and lo.isdigit()) or (dash and not (hi.isascii() and hi.isdigit())):
            raise ValueError(f"bad range {part!r} in host list")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise ValueError(f"bad range {part!r} in host list")
        if len(nums) + b - a + 1 > room:
            raise ValueError(f"host list names more than {MAX_HOSTS} hosts")
        nums.extend(f"{n:0{len(lo)}d}" for n in range(a, b + 1))
    return nums
