"""Instance processes: detached start, liveness, graceful group stop.

Liveness is :mod:`infrablocks.processes` (``/proc/PID/stat``: a zombie is dead, a recycled pid
is told apart by the start time recorded at launch); here it also reaps our own exited
instances on the way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from infrablocks import processes
from infrablocks.processes import DEAD_STATES, read_stat
from infrablocks.waiting import poll

__all__ = ["is_alive", "launch", "read_stat", "reap", "stop_group"]


def reap(pid: int, start_time: int | None = None) -> None:
    """Collect ``pid``'s exit status if it is our own exited child that is still the process
    launched at ``start_time`` — never a recycled pid that may be another child of ours (e.g.
    a Terraform run whose exit status its Popen is waiting for)."""
    stat = read_stat(pid)
    if stat is None or stat[0] not in DEAD_STATES:
        return
    if start_time is not None and stat[1] != start_time:
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int | None, start_time: int | None) -> bool:
    """Whether the process launched as (pid, start_time) still runs (zombies are dead; our own
    exited children are reaped on the way)."""
    if processes.is_alive(pid, start_time):
        return True
    if pid:
        reap(pid, start_time)
    return False


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
        poll(lambda: not is_alive(pid, start_time), timeout=max(grace, 0.0), interval=0.01,
             backoff=2, max_interval=0.1)
    if start_time is None or _group_is_ours(pid, start_time):
        _signal_group(pid, signal.SIGKILL)
    poll(lambda: not is_alive(pid, start_time), timeout=5.0, interval=0.01)


def _group_is_ours(pid: int, start_time: int) -> bool:
    """The group id ``pid`` still belongs to our instance: its leader is ours (alive or zombie)
    or gone (then stragglers may remain in the group, which no other session can reuse while
    they live)."""
    stat = read_stat(pid)
    return stat is None or stat[1] == start_time


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
