"""The overview's charts as geometry: where each square of the activity heatmap and each
bar goes, its colour level, and the words a screen reader (and a tooltip) gives it.

Owns turning counts into shapes; the templates draw them as SVG (no charting library, no
script: the page is complete as served, and the Content-Security-Policy stays strict).
It must never read anything but the counts it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from gigmcp.control import overview

CELL, GAP = 12, 3  # heatmap square and the space between squares (SVG units)
LEVELS = 4


@dataclass(frozen=True, slots=True)
class Cell:
    x: int
    y: int
    level: int  # 0 (none) to LEVELS
    day: str
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Heatmap:
    cells: tuple[Cell, ...]
    width: int
    height: int
    months: tuple[tuple[int, str], ...]  # (x, "2026-07") at the first column of a month
    busiest: int


def level(n: int, top: int) -> int:
    return 0 if n <= 0 or top <= 0 else max(1, math.ceil(LEVELS * n / top))


def heatmap(days: Sequence[overview.Day], first: date, today: date) -> Heatmap:
    """One square per day from the Monday of ``first``'s week to ``today``: a column per
    week, Monday at the top."""
    counts = {d.day: d for d in days}
    start = first - timedelta(days=first.weekday())
    top = max((d.calls for d in days), default=0)
    cells, months = [], []
    day, column = start, 0
    while day <= today:
        if day.weekday() == 0 and (day.day <= 7 or column == 0):
            months.append((column * (CELL + GAP), day.strftime("%Y-%m")))
        if day >= first:
            found = counts.get(day.isoformat())
            calls = found.calls if found else 0
            errors = found.errors if found else 0
            cells.append(
                Cell(
                    column * (CELL + GAP),
                    day.weekday() * (CELL + GAP) + 14,
                    level(calls, top),
                    day.isoformat(),
                    calls,
                    errors,
                )
            )
        if day.weekday() == 6:
            column += 1
        day += timedelta(days=1)
    width = (column + 1) * (CELL + GAP)
    return Heatmap(tuple(cells), width, 7 * (CELL + GAP) + 14, tuple(months), top)


@dataclass(frozen=True, slots=True)
class Bar:
    x: int
    height: float  # calls
    error_height: float  # the errors among them, drawn over the calls
    week: str
    calls: int
    errors: int


@dataclass(frozen=True, slots=True)
class Series:
    server: str
    calls: int
    errors: int
    bars: tuple[Bar, ...]


BAR, BAR_GAP, BAR_HEIGHT = 8, 2, 40


def server_series(o: overview.Overview, first: date, today: date) -> tuple[tuple[Series, ...], int]:
    """A row of weekly bars per busiest server, all on one scale (so rows compare), and
    the width of a row."""
    weeks = []
    week = first - timedelta(days=first.weekday())
    while week <= today:
        weeks.append(week.isoformat())
        week += timedelta(days=7)
    by = {(w.server, w.week): w for w in o.server_weeks}
    top = max((w.calls for w in o.server_weeks), default=0) or 1
    rows = []
    for s in o.servers:
        bars = []
        for i, wk in enumerate(weeks):
            found = by.get((s.name, wk))
            calls = found.calls if found else 0
            errors = found.errors if found else 0
            bars.append(
                Bar(
                    i * (BAR + BAR_GAP),
                    round(BAR_HEIGHT * calls / top, 1),
                    round(BAR_HEIGHT * errors / top, 1),
                    wk,
                    calls,
                    errors,
                )
            )
        rows.append(Series(s.name, s.calls, s.errors, tuple(bars)))
    return tuple(rows), len(weeks) * (BAR + BAR_GAP)


def share(n: int, top: int, width: int = 200) -> float:
    """A horizontal bar's length for ``n`` when ``top`` fills ``width``."""
    return 0.0 if top <= 0 else round(width * n / top, 1)
