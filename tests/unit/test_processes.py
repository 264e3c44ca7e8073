"""infrablocks.processes: /proc/PID/stat read once, for everyone (a zombie is dead, a recycled
pid is not the process, a command name with ") " in it does not confuse the parser)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from infrablocks.processes import is_alive, read_stat, start_time
from infrablocks.waiting import poll


def test_this_process_is_alive_with_its_own_start_time() -> None:
    me = os.getpid()
    started = start_time(me)
    stat = read_stat(me)
    assert started is not None and stat is not None and stat[1] == started
    assert is_alive(me) and is_alive(me, started)
    assert not is_alive(me, started + 1)          # the same pid, started at another time


def test_no_such_pid_and_no_pid_are_not_alive() -> None:
    assert read_stat(2**22 + 12345) is None and start_time(2**22 + 12345) is None
    assert not is_alive(2**22 + 12345) and not is_alive(None) and not is_alive(0)


def test_a_zombie_is_dead(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        started = start_time(child.pid)
        assert is_alive(child.pid, started)
        os.kill(child.pid, signal.SIGKILL)
        assert poll(lambda: read_stat(child.pid)[0] == "Z", timeout=5, interval=0.01).ok
        assert not is_alive(child.pid, started)   # still in the process table, yet dead
    finally:
        child.kill()
        child.wait()


def test_a_command_name_with_parentheses_and_spaces_is_parsed(tmp_path: Path) -> None:
    odd = tmp_path / "a) b (c"
    odd.symlink_to("/bin/sleep")
    child = subprocess.Popen([str(odd), "60"])
    try:
        stat = read_stat(child.pid)
        assert stat is not None and stat[0] in "RSD"
        assert stat[1] == start_time(child.pid) and is_alive(child.pid, stat[1])
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "a) b (c"
    finally:
        child.kill()
        child.wait()
