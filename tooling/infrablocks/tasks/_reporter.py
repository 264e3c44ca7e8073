"""A doit reporter that stays out of the way: commands print their own output through rich."""

from __future__ import annotations

from doit.reporter import ConsoleReporter


class QuietReporter(ConsoleReporter):
    """Prints nothing per task; failures are reported by the commands themselves."""

    def execute_task(self, task):  # noqa: D102 - doit hook
        pass

    def skip_uptodate(self, task):  # noqa: D102
        pass

    def skip_ignore(self, task):  # noqa: D102
        pass

    def add_failure(self, task, fail_info):  # noqa: D102
        # Commands exit with their own code on user errors; anything reaching here is a bug or
        # a failing action, which doit reports in complete_run.
        super().add_failure(task, fail_info)
