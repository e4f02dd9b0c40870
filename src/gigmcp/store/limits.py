"""Per-server resource limits as the operator writes them, checked before they are stored.

Owns parsing ``--memory 512M``-style values and the bounds each limit must stay in. It
never applies a limit (the sandbox does) and never accepts a value that would make a
jail unusable or unbounded: zero, negative, or beyond these bounds is an error.
"""

from __future__ import annotations

import re

from gigmcp.errors import Invalid

# name -> (minimum, maximum, is a size in bytes)
BOUNDS: dict[str, tuple[int, int, bool]] = {
    "memory_bytes": (16 * 2**20, 64 * 2**30, True),
    "pids": (8, 65536, False),
    "cpu_weight": (1, 10000, False),
    "nofile": (16, 1 << 20, False),
    "fsize_bytes": (2**20, 1 << 40, True),
    "tmp_bytes": (2**20, 16 * 2**30, True),
    "home_bytes": (2**20, 16 * 2**30, True),
}
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


class LimitError(Invalid):
    pass


def parse_size(option: str, text: str) -> int:
    m = re.fullmatch(r"(\d{1,12})\s*([kmgt]?)(?:i?b)?", text.strip().lower())
    if not m:
        raise LimitError(f"{option}: expected a size like 512M or 2G, got {text!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def check(limits: dict[str, int]) -> dict[str, int]:
    for name, value in limits.items():
        if name not in BOUNDS:
            raise LimitError(f"unknown limit {name!r}")
        low, high, size = BOUNDS[name]
        if not low <= value <= high:
            shown = (lambda v: f"{v // 2**20} MiB") if size else str
            raise LimitError(f"{name}: {value} is outside {shown(low)}..{shown(high)}")
    return limits
