"""What a run costs: CPU time and RSS of process trees (from /proc), Redis work (from INFO).

Readings are cumulative counters taken before and after a measured run; the difference divided
by the requests served is the cost per request. Granian serves from child processes of the one
we start, so CPU and RSS are summed over a process and all its descendants.

Redis: ``INFO commandstats`` gives calls and microseconds per command. A script's EVALSHA time
includes the commands it runs with ``redis.call``, and those commands are counted again under
their own names, so the time of the commands Keyway's Lua scripts call (their names are read
from ``gateway/lua``) is kept apart instead of being added twice.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

__all__ = [
    "SCRIPT_COMMANDS",
    "RedisCounters",
    "RedisSpent",
    "ServerMeter",
    "Spent",
    "cpu_busy_seconds",
    "cpu_seconds",
    "descendants",
    "key_counts",
    "key_fairness",
    "read_redis_counters",
    "redis_spent",
    "rss_bytes",
    "script_command_names",
    "tree",
    "wait_for_quiet",
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


def cpu_busy_seconds(cpu: int | None) -> float:
    """Seconds one CPU (None: all of them) has spent on anything but idling (``/proc/stat``)."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    for line in (_PROC / "stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
            return (user + nice + system + irq + softirq + steal) / _TICKS_PER_S
    raise ValueError(f"no {name} in /proc/stat")


def wait_for_quiet(
    max_wait_s: float, *, busy_pct: float = 15.0, sample_s: float = 0.5
) -> tuple[float, float]:
    """Wait (at most `max_wait_s`) until the whole machine is idle but for `busy_pct` of a core.

    On a shared machine, other people's work lands on the cores a run measures; starting a run
    in a quiet moment makes its figures more about Keyway. Returns (seconds waited, last busy %).
    """
    started = time.monotonic()
    while True:
        before = cpu_busy_seconds(None)
        time.sleep(sample_s)
        busy = 100 * (cpu_busy_seconds(None) - before) / sample_s
        waited = time.monotonic() - started
        if busy <= busy_pct or waited >= max_wait_s:
            return waited, busy


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
class Spent:
    """What a set of processes used over an interval."""

    cpu_s: float
    """Their CPU seconds (user + system)."""
    others_s: float | None
    """CPU seconds other processes used on their pinned core (None when not pinned)."""
    wall_s: float


class ServerMeter:
    """Started on some processes (and the core they are pinned to); `stop()` says what they used."""

    def __init__(self, pids: list[int], core: int | None) -> None:
        self.pids = pids
        self.core = core
        self._cpu = cpu_seconds(pids)
        self._core_busy = cpu_busy_seconds(core) if core is not None else 0.0
        self._wall = time.monotonic()

    def stop(self) -> Spent:
        cpu = cpu_seconds(self.pids) - self._cpu
        others = None
        if self.core is not None:
            others = max(0.0, cpu_busy_seconds(self.core) - self._core_busy - cpu)
        return Spent(cpu_s=cpu, others_s=others, wall_s=time.monotonic() - self._wall)


SCRIPT_COMMANDS = frozenset({"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
"""Commands that run a script: their time includes the commands the script calls."""

_LUA_CALL = re.compile(r"""redis\.p?call\(\s*['"]([A-Za-z]+)['"]""")


def script_command_names(lua_dir: Path | None = None) -> frozenset[str]:
    """Commands Keyway's Lua scripts call (lower case), read from the scripts themselves.

    Keyway itself sends only EVALSHA (plus SCRIPT LOAD and PING) on the hot path, so these
    names in ``INFO commandstats`` are calls made inside scripts, whose time EVALSHA already
    counts.
    """
    root = lua_dir or Path(__file__).resolve().parent.parent / "gateway" / "lua"
    names: set[str] = set()
    for path in root.rglob("*.lua"):
        try:
            names.update(m.lower() for m in _LUA_CALL.findall(path.read_text("utf-8")))
        except OSError:
            continue
    return frozenset(names)


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

    usec_by_name: dict[str, int] = field(default_factory=dict)
    """Microseconds spent in each command (``cmdstat_<name>`` usec); a script's includes the
    commands it called, which are also counted under their own names."""

    used_memory: int = 0
    """``used_memory`` (bytes): after a subtraction, the growth over the interval."""

    keys: int = 0
    """Keys in every database (``INFO keyspace``)."""

    at_s: float = 0.0
    """When the reading was taken (time.monotonic()); after a subtraction, the interval."""

    def __sub__(self, before: RedisCounters) -> RedisCounters:
        names = self.calls_by_name.keys() | before.calls_by_name.keys()
        timed = self.usec_by_name.keys() | before.usec_by_name.keys()
        return RedisCounters(
            evalsha_calls=self.evalsha_calls - before.evalsha_calls,
            commands=self.commands - before.commands,
            reads=self.reads - before.reads,
            cpu_s=self.cpu_s - before.cpu_s,
            calls_by_name={
                n: self.calls_by_name.get(n, 0) - before.calls_by_name.get(n, 0) for n in names
            },
            usec_by_name={
                n: self.usec_by_name.get(n, 0) - before.usec_by_name.get(n, 0) for n in timed
            },
            used_memory=self.used_memory - before.used_memory,
            keys=self.keys - before.keys,
            at_s=self.at_s - before.at_s,
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
            usec_by_name={n: u for n, u in self.usec_by_name.items() if n != "info"},
            used_memory=self.used_memory,
            keys=self.keys,
            at_s=self.at_s,
        )


@dataclass(frozen=True, slots=True)
class RedisSpent:
    """Redis work over one measured run, split as ``INFO commandstats`` cannot double count it."""

    top_level_usec: int
    """Microseconds of the commands clients sent (scripts with everything they called, and
    any other command); INFO excluded."""
    top_level_calls: int
    """Commands clients sent (an EVALSHA is one, whatever it calls)."""
    in_scripts_usec: int
    """Microseconds of the commands the scripts called (already inside the scripts' time)."""
    by_command: dict[str, tuple[int, int, bool]]
    """calls, usec and whether it is a command scripts call, by command name."""


def redis_spent(diff: RedisCounters, script_calls: frozenset[str]) -> RedisSpent:
    """Split a counter difference (INFO probe removed) into top-level and in-script work."""
    top_usec = top_calls = inner_usec = 0
    by_command: dict[str, tuple[int, int, bool]] = {}
    for name, calls in diff.calls_by_name.items():
        usec = diff.usec_by_name.get(name, 0)
        if name == "info" or calls <= 0:
            continue
        inner = name in script_calls and name not in SCRIPT_COMMANDS
        by_command[name] = (calls, usec, inner)
        if inner:
            inner_usec += usec
        else:
            top_usec += usec
            top_calls += calls
    return RedisSpent(
        top_level_usec=top_usec,
        top_level_calls=top_calls,
        in_scripts_usec=inner_usec,
        by_command=by_command,
    )


def read_redis_counters(client: redis.Redis) -> RedisCounters:
    """One INFO call: command stats, totals, CPU, memory and the number of keys."""
    info: dict[str, Any] = client.info("commandstats", "stats", "cpu", "memory", "keyspace")
    at = time.monotonic()
    evalsha = info.get("cmdstat_evalsha", {})
    stats = {
        key.removeprefix("cmdstat_"): value
        for key, value in info.items()
        if key.startswith("cmdstat_") and isinstance(value, dict)
    }
    keys = sum(
        int(value.get("keys", 0))
        for key, value in info.items()
        if re.fullmatch(r"db\d+", key) and isinstance(value, dict)
    )
    return RedisCounters(
        evalsha_calls=int(evalsha.get("calls", 0)) if isinstance(evalsha, dict) else 0,
        commands=int(info["total_commands_processed"]),
        reads=int(info.get("total_reads_processed", 0)),
        cpu_s=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        calls_by_name={name: int(v.get("calls", 0)) for name, v in stats.items()},
        usec_by_name={name: int(v.get("usec", 0)) for name, v in stats.items()},
        used_memory=int(info.get("used_memory", 0)),
        keys=keys,
        at_s=at,
    )


def key_counts(stats: dict[str, object]) -> dict[str, int]:
    """``requests_by_key`` of a fake provider's ``/_fake/stats`` (masked key -> requests)."""
    by_key = stats.get("requests_by_key")
    if not isinstance(by_key, dict):
        return {}
    return {str(k): int(v) for k, v in by_key.items() if isinstance(v, int)}


def key_fairness(counts: list[int]) -> tuple[float, float]:
    """(max share / mean share, min share / mean share) of a pool's per-key request counts.

    1.0 / 1.0 is a perfectly even spread; a pool where one key of 200 takes every request has
    200 / 0. Keys that got nothing count (as 0), so an unused key shows in the min.
    """
    total = sum(counts)
    if not counts or total <= 0:
        return 0.0, 0.0
    mean = total / len(counts)
    return max(counts) / mean, min(counts) / mean
