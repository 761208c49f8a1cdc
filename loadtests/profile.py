"""Reads py-spy's collapsed stacks (``--format raw``) into the functions that cost the most.

Each line is ``frame;frame;...;frame count``, outermost first, a frame being
``function (path:line)``; with ``--subprocesses`` the stack starts with ``process N:"cmd"``
frames, dropped here. A function's self share counts the samples where it was the innermost
frame; its total share, the samples where it was anywhere on the stack.
"""

from __future__ import annotations

import re

from loadtests.results import HotSpot

__all__ = ["function_of", "hot_spots"]

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<name>.*) \((?P<path>.*?)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    """``name (file.py)`` from ``name (/long/path/to/pkg/file.py:123)``: line numbers merged."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    parts = match["path"].split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else match["path"]
    return f"{match['name']} ({short})"


def hot_spots(collapsed: str, top: int = 15) -> list[HotSpot]:
    """The `top` functions by self share of samples (ties broken by total share)."""
    self_samples: dict[str, int] = {}
    total_samples: dict[str, int] = {}
    samples = 0
    for line in collapsed.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        frames = [
            function_of(f) for f in match["stack"].split(";") if f and not f.startswith("process ")
        ]
        if not frames:
            continue
        samples += count
        self_samples[frames[-1]] = self_samples.get(frames[-1], 0) + count
        for name in set(frames):
            total_samples[name] = total_samples.get(name, 0) + count
    if samples == 0:
        return []
    ranked = sorted(self_samples, key=lambda n: (self_samples[n], total_samples[n]), reverse=True)
    return [
        HotSpot(
            function=name,
            self_pct=100 * self_samples[name] / samples,
            total_pct=100 * total_samples[name] / samples,
        )
        for name in ranked[:top]
    ]
