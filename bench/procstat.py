"""CPU time and memory of a process tree, read from /proc.

Owns measuring a system under test from the outside: the whole tree below a root pid
(the gateway *and* the MCP servers it runs count). It must never signal or otherwise
touch the processes it reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: split after the last ')'.
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree(root: int) -> list[int]:
    """``root`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append(pid)
        frontier.extend(children.get(pid, ()))
    return found


def _cpu_ns(pid: int) -> int:
    """CPU time of a process in ns: its own (all threads, also exited ones) plus its reaped
    children's, which is where a churned child's time ends up.

    The kernel keeps this in ns but reports clock ticks (10 ms); the benchmark sums many
    before/after deltas per figure, so the rounding does not accumulate one way.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11:15]) * _TICK_NS


def _rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


@dataclass(frozen=True)
class Sample:
    cpu_ns: int
    rss_bytes: int
    processes: int


def sample(root: int) -> Sample:
    """CPU (cumulative) and RSS (current) of the tree below ``root``."""
    pids = tree(root)
    return Sample(
        cpu_ns=sum(_cpu_ns(p) for p in pids),
        rss_bytes=sum(_rss_bytes(p) for p in pids),
        processes=len(pids),
    )
