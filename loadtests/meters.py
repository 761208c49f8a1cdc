"""What a run costs: CPU time and RSS of process trees (from /proc), Redis work (from INFO).

Readings are cumulative counters taken before and after a measured run; the difference divided
by the requests served is the cost per request. Granian serves from child processes of the one
we start, so CPU and RSS are summed over a process and all its descendants.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

__all__ = [
    "RedisCounters",
    "cpu_busy_seconds",
    "cpu_seconds",
    "descendants",
    "read_redis_counters",
    "rss_bytes",
    "tree",
]

_PROC = Path("/proc")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces: split after it
    return raw[raw.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    return [pid, *descendants(pid)]


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by these processes (all their threads)."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # after the command name: state is field 0, utime field 11, stime field 12
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICKS_PER_S


def cpu_busy_seconds(cpu: int) -> float:
    """Seconds one CPU has spent on anything but idling, for every process (``/proc/stat``)."""
    for line in (_PROC / "stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
            return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, 0 if it is gone."""
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class RedisCounters:
    """Cumulative counters of one redis-server."""

    evalsha_calls: int
    """EVALSHA commands executed (each runs one Lua script)."""

    commands: int
    """Every command executed, those a script runs with redis.call() included."""

    reads: int
    """Read events on client sockets: a pipeline of several commands usually arrives in one."""

    cpu_s: float
    """CPU seconds (user + system) of the server."""

    calls_by_name: dict[str, int] = field(default_factory=dict)
    """Calls of each command (``cmdstat_<name>``), those run by scripts included."""

    def __sub__(self, before: RedisCounters) -> RedisCounters:
        names = self.calls_by_name.keys() | before.calls_by_name.keys()
        return RedisCounters(
            evalsha_calls=self.evalsha_calls - before.evalsha_calls,
            commands=self.commands - before.commands,
            reads=self.reads - before.reads,
            cpu_s=self.cpu_s - before.cpu_s,
            calls_by_name={
                n: self.calls_by_name.get(n, 0) - before.calls_by_name.get(n, 0) for n in names
            },
        )

    def top_commands(self, per: int, count: int = 8) -> dict[str, float]:
        """The `count` most called commands, calls divided by `per` (the requests served)."""
        ranked = sorted(self.calls_by_name.items(), key=lambda item: item[1], reverse=True)
        return {name: calls / max(1, per) for name, calls in ranked[:count] if calls > 0}

    def without_probe(self) -> RedisCounters:
        """This difference minus the INFO call of the first reading (one command, one read)."""
        return RedisCounters(
            evalsha_calls=self.evalsha_calls,
            commands=max(0, self.commands - 1),
            reads=max(0, self.reads - 1),
            cpu_s=self.cpu_s,
            calls_by_name={**self.calls_by_name, "info": self.calls_by_name.get("info", 1) - 1},
        )


def read_redis_counters(client: redis.Redis) -> RedisCounters:
    """One INFO call: command stats, totals and CPU."""
    info: dict[str, Any] = client.info("commandstats", "stats", "cpu")
    evalsha = info.get("cmdstat_evalsha", {})
    calls = {
        key.removeprefix("cmdstat_"): int(value.get("calls", 0))
        for key, value in info.items()
        if key.startswith("cmdstat_") and isinstance(value, dict)
    }
    return RedisCounters(
        evalsha_calls=int(evalsha.get("calls", 0)) if isinstance(evalsha, dict) else 0,
        commands=int(info["total_commands_processed"]),
        reads=int(info.get("total_reads_processed", 0)),
        cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        calls_by_name=calls,
    )
