"""A doit reporter that stays out of the way: commands print their own output through rich.

It is also where a command's process ends. ``complete_run`` is the last thing doit does (after
running the tasks and saving its database); what would follow is only the interpreter's
teardown, freeing every object and module one by one: 25–50 ms on this machine, ~10 % of a
one-block ``doit create`` before Terraform (benchmarks/README.md). So, when the process is the
``doit`` command and nothing is left running, the reporter flushes the output, runs the
``atexit`` handlers and ends the process with the command's exit status at once.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

from doit.reporter import ConsoleReporter

from infrablocks.tasks import _command


class QuietReporter(ConsoleReporter):
    """Prints nothing per task; failures are reported by the commands themselves."""

    def execute_task(self, task: Any) -> None:  # noqa: D102 - doit hook
        pass

    def skip_uptodate(self, task: Any) -> None:  # noqa: D102
        pass

    def skip_ignore(self, task: Any) -> None:  # noqa: D102
        pass

    def add_failure(self, task: Any, fail_info: Any) -> None:  # noqa: D102
        # Commands exit with their own code on user errors; anything reaching here is a bug or
        # a failing action, which doit reports in complete_run.
        super().add_failure(task, fail_info)

    def complete_run(self) -> None:  # noqa: D102
        super().complete_run()
        if _command.EXIT_WHEN_DONE and not self.failures and not self.runtime_errors:
            end_process(_command.exit_status or 0)


def end_process(status: int) -> None:
    """Exit with ``status`` now, skipping the interpreter's teardown — unless a thread other
    than the main one is still running (then the ordinary exit waits for it)."""
    if any(t.is_alive() and not t.daemon for t in threading.enumerate()
           if t is not threading.main_thread()):
        return
    import atexit

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    atexit._run_exitfuncs()  # what an ordinary exit would still run (finalizers, log flushes)
    os._exit(status)
