"""Process accounting from /proc (Linux): CPU time, resident memory and open file descriptors.

CPU time is what a proxy spends per request whatever else the machine runs, so it is the robust
throughput measure on a shared machine; wall-clock figures are reported next to it.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # the fields after "(comm)", starting at field 3


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a proxy may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat_fields(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, threads included: the scheduler's nanosecond count of each
    live thread (`/proc/PID/task/TID/schedstat`), where the kernel keeps it; else user + system time, in
    clock ticks (10 ms: too coarse for a few hundred requests), which also counts threads that have exited."""
    total = 0.0
    for member in descendants(pid):
        try:
            total += _schedstat_seconds(member) if SCHEDSTAT else _ticks_seconds(member)
        except (OSError, ValueError, IndexError):
            continue
    return total


def _schedstat_seconds(pid: int) -> float:
    return sum(int((task / "schedstat").read_text().split()[0]) for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


def _ticks_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


SCHEDSTAT = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat").exists()
RESOLUTION = "1 ns (schedstat)" if SCHEDSTAT else f"{1000 / _TICKS:g} ms (clock ticks)"


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
