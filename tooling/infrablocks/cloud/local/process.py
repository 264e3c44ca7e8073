"""Instance processes: detached start, liveness from /proc, graceful group stop.

Liveness never trusts ``os.kill(pid, 0)``: in sandboxes whose PID 1 does not reap orphans, a dead
instance stays a zombie and still accepts signals. We read ``/proc/PID/stat`` instead — state Z
or X is dead — and compare the process start time (field 22) with the one recorded at launch, so
a recycled pid is never taken for the instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_DEAD_STATES = {"Z", "X", "x"}


def read_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of ``pid``, or None if there is no such pid."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) is in parentheses and may contain spaces or ')': split after the last ')'.
    rest = raw[raw.rfind(")") + 2:].split()
    # rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    return rest[0], int(rest[19])


def reap(pid: int, start_time: int | None = None) -> None:
    """Collect ``pid``'s exit status if it is our own exited child that is still the process
    launched at ``start_time`` — never a recycled pid that may be another child of ours (e.g.
    a Terraform run whose exit status its Popen is waiting for)."""
    stat = read_stat(pid)
    if stat is None or stat[0] not in _DEAD_STATES:
        return
    if start_time is not None and stat[1] != start_time:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int | None, start_time: int | None) -> bool:
    """Whether the process launched as (pid, start_time) still runs (zombies are dead; our own
    exited children are reaped on the way)."""
    if not pid:
        return False
    stat = read_stat(pid)
    if stat is None:
        return False
    state, started = stat
    if start_time is not None and started != start_time:
        return False  # the pid was recycled
    if state in _DEAD_STATES:
        reap(pid, started)
        return False
    return True


def launch(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str],
           log_path: Path) -> tuple[int, int]:
    """Start ``argv`` detached (own session, stdin /dev/null, stdout+stderr appended to
    ``log_path``) and return (pid, start time)."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
        )
    stat = read_stat(proc.pid)
    # The child exists (at worst as our unreaped zombie) until we wait for it.
    start_time = stat[1] if stat else 0
    # Popen's own bookkeeping would reap it later; ours (reap()) does it as well. Drop the
    # handle so the object does not warn about a still-running process at interpreter exit.
    proc.returncode = 0
    return proc.pid, start_time


def stop_group(pid: int, start_time: int | None, grace: float) -> None:
    """SIGTERM the process group led by ``pid``, wait up to ``grace`` seconds for the leader to
    exit, then SIGKILL whatever of the group remains."""
    if is_alive(pid, start_time):
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0.0)
        delay = 0.01
        while is_alive(pid, start_time) and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
    if start_time is None or _group_is_ours(pid, start_time):
        _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while is_alive(pid, start_time) and time.monotonic() < deadline:
        time.sleep(0.01)


def _group_is_ours(pid: int, start_time: int) -> bool:
    """The group id ``pid`` still belongs to our instance: its leader is ours (alive or zombie)
    or gone (then stragglers may remain in the group, which no other session can reuse while
    they live)."""
    stat = read_stat(pid)
    return stat is None or stat[1] == start_time


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
