"""Lay out an exchange's stream timeline as SVG bars for the detail page.

The timeline column contains [[ms, nbytes, kind], ...]: one entry per parsed event
or line, ms counted from the moment the request head arrived. Each entry becomes
a bar at its time, as tall as its size, so a stall shows as a gap and a burst as
a cluster.
"""

import math
from dataclasses import dataclass
from typing import Any

WIDTH = 1000
HEIGHT = 120
KINDS = (
    "content",
    "reasoning",
    "tool_call",
    "role",
    "usage",
    "comment",
    "done",
    "error",
)


@dataclass(slots=True)
class Bar:
    x: float
    y: float
    height: float
    kind: str
    title: str


@dataclass(slots=True)
class Timeline:
    bars: list[Bar]
    events: int
    total_bytes: int
    duration_ms: float
    longest_gap_ms: float
    longest_gap_at_ms: float
    kinds: dict[str, int]
    width: int = WIDTH
    height: int = HEIGHT


def layout(entries: Any) -> Timeline | None:
    """Return the bars and figures of a timeline, or None when there is none."""
    points = _points(entries)
    if not points:
        return None

    duration = max(points[-1][0], 1.0)
    largest = max(size for _, size, _ in points) or 1
    bars = []
    kinds: dict[str, int] = {}
    for ms, size, kind in points:
        # Square-root heights keep a 10 kB usage chunk from flattening 20-byte tokens.
        height = max(2.0, (HEIGHT - 10) * math.sqrt(size / largest))
        x = round(ms / duration * (WIDTH - 4), 2)
        title = f"{ms:.0f} ms, {size} bytes, {kind}"
        bars.append(Bar(x, round(HEIGHT - height, 2), round(height, 2), kind, title))
        kinds[kind] = kinds.get(kind, 0) + 1

    gap, gap_at = _longest_gap(points)
    return Timeline(
        bars=bars,
        events=len(points),
        total_bytes=sum(size for _, size, _ in points),
        duration_ms=points[-1][0],
        longest_gap_ms=gap,
        longest_gap_at_ms=gap_at,
        kinds=kinds,
    )


def _points(entries: Any) -> list[tuple[float, int, str]]:
    if not isinstance(entries, list):
        return []
    points = []
    for entry in entries:
        if not isinstance(entry, list) or len(entry) < 3:
            continue
        ms, size, kind = entry[0], entry[1], entry[2]
        if not isinstance(ms, int | float) or not isinstance(size, int | float):
            continue
        points.append((float(ms), int(size), kind if kind in KINDS else "other"))
    return sorted(points, key=lambda point: point[0])


def _longest_gap(points: list[tuple[float, int, str]]) -> tuple[float, float]:
    """Return the longest silence between two entries and the time it started."""
    gap, gap_at = 0.0, 0.0
    for (earlier, _, _), (later, _, _) in zip(points, points[1:], strict=False):
        if later - earlier > gap:
            gap, gap_at = later - earlier, earlier
    return gap, gap_at
