"""Slow Terraform provisioners for tests, and the pids they run under.

A provisioner started by Terraform is a grandchild of the test. To check that a stop leaves
nothing behind, and to clean up after a failed test, the provisioner records its own pid
(``echo $$ >> FILE; exec sleep N``: ``exec`` keeps the shell's pid for ``sleep``), so the test
looks at and kills exactly the processes its own Terraform runs started — never another
process that merely looks alike.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path

from infrablocks.processes import is_alive
from infrablocks.waiting import poll


class Sleepers:
    def __init__(self, name: str) -> None:
        self.pid_file = Path(tempfile.gettempdir()) / f"infrablocks-{name}-{os.getpid()}.pids"

    def command(self, seconds: str) -> str:
        """The local-exec command: record the pid, then sleep ``seconds`` (an HCL expression)."""
        return f"echo $$ >> {self.pid_file}; exec sleep {seconds}"

    def alive(self) -> list[int]:
        """Recorded pids still running ``sleep`` (a zombie counts as gone)."""
        try:
            recorded = [int(p) for p in self.pid_file.read_text().split()]
        except OSError:
            return []
        found = []
        for pid in recorded:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"sleep" and is_alive(pid):
                found.append(pid)
        return found

    def wait_gone(self, timeout: float = 10.0) -> list[int]:
        poll(lambda: not self.alive(), timeout=timeout, interval=0.1)
        return self.alive()

    def kill_all(self) -> None:
        for pid in self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
