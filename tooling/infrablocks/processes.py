"""Whether a process still runs: the one reader of ``/proc/PID/stat`` in the library.

A process is named by ``(pid, start time)``: the start time (field 22 of ``/proc/PID/stat``,
clock ticks since boot) is recorded when the process is started or takes a lock, and a pid whose
start time differs was recycled — it is not the process. ``os.kill(pid, 0)`` is not enough
either: where PID 1 does not reap orphans, a dead process lingers as a zombie and still accepts
signals; state ``Z`` (or ``X``) is dead.

Why not psutil: ``Process.create_time()`` is float seconds since the epoch (boot time + ticks /
CLK_TCK, rounded), while the records of the local cloud, the locks and the subnet table hold the
kernel's exact ticks; comparing them through psutil would need the inverse conversion. psutil
stays for what it does well here (bound addresses, ``infrablocks.subnets``).
"""

from __future__ import annotations

from pathlib import Path

DEAD_STATES = frozenset({"Z", "X", "x"})


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid``, or None if there is no such pid
    (or it cannot be read)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:   # FileNotFoundError, ProcessLookupError (gone while read), PermissionError
        return None
    # comm (field 2) is in parentheses and may contain spaces or ')': split after the last ')'.
    rest = raw[raw.rfind(")") + 2:].split()
    if len(rest) < 20:
        return None
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return rest[0], int(rest[19])


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None if there is no such pid."""
    stat = read_stat(pid)
    return None if stat is None else stat[1]


def is_alive(pid: int | None, start_time: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie is dead) and, when ``start_time`` is given, is still the
    process that started then (not a recycled pid). A falsy pid is never alive."""
    if not pid:
        return False
    stat = read_stat(pid)
    if stat is None or stat[0] in DEAD_STATES:
        return False
    return start_time is None or stat[1] == start_time
