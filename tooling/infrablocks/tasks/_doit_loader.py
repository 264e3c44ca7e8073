"""doit's task loader for this repository, named by ``[tool.doit]`` in pyproject.toml.

It loads ``dodo.py`` exactly as doit's own ``DodoTaskLoader`` does. doit builds its loader
before it reads the command line, the one point where infrablocks code runs early enough to
mend what doit does with words no command sees:

- **An empty argument** (``--env ""``, ``doit create ""`` — an unset shell variable): doit's
  ``DoitMain.process_args`` (to find ``NAME=VALUE`` variables) and its loader (to find task
  names) look at ``arg[0]`` of every argument and ended in an ``IndexError`` traceback before
  any command ran. Both see a one-character stand-in instead; the empty argument itself
  reaches the command, which names it (exit 2).
- **An unknown command** (``doit nosuch``): doit said ``ERROR: … Invalid parameter`` and
  exited 3; it is a usage error like any other here (exit 2, the commands listed, the closest
  named).

Where doit reads no pyproject.toml (run from a subdirectory without ``-k``) doit's own loader
runs and says ``Could not find dodo file`` (exit 3). README: "deviations".
"""

from __future__ import annotations

import sys
from typing import Any

from doit import doit_cmd
from doit.cmd_base import DodoTaskLoader

_TASK_NAMING_COMMANDS = {"info", "list", "forget", "ignore", "clean", "strace", "reset-dep",
                         "help"}
_EMPTY = "\0"   # stands in for "" while doit's process_args looks at it (compared by identity)


def _wrap_process_args() -> None:
    original = doit_cmd.DoitMain.process_args
    if getattr(original, "infrablocks_wrapped", False):
        return

    def process_args(self: Any, cmd_args: list[str]) -> list[str]:
        marker = _EMPTY
        marked = [marker if arg == "" else arg for arg in cmd_args]
        return ["" if arg is marker else arg for arg in original(self, marked)]

    process_args.infrablocks_wrapped = True  # type: ignore[attr-defined]
    doit_cmd.DoitMain.process_args = process_args


_wrap_process_args()


class Loader(DodoTaskLoader):
    """``dodo.py``'s tasks; an unknown command is a usage error (see the module docstring)."""

    def load_tasks(self, cmd: Any, pos_args: list[str]) -> list[Any]:
        # doit's loader reads term[0] of each word too (the same fault): it sees the marker
        marked = [_EMPTY if arg == "" else arg for arg in pos_args]
        tasks: list[Any] = super().load_tasks(cmd, marked)
        command = getattr(cmd, "name", None)
        # `doit WORD …` runs task WORD with the rest as its positionals; doit's own commands
        # that name tasks take only task names (`doit info WORD` raised a KeyError traceback)
        words = pos_args[:1] if command == "run" else \
            pos_args if command in _TASK_NAMING_COMMANDS else []
        names = sorted(task.name for task in tasks if not task.subtask_of)
        # `doit help` also takes doit's own commands and the word `task`
        known = set(names) | (set(self.cmd_names) | {"task"} if command == "help" else set())
        for word in words:
            if word.split(":", 1)[0] not in known:
                from infrablocks.errors import UsageError
                from infrablocks.registry import suggest
                from infrablocks.tasks._command import print_error

                said = (f"unknown command `{word}`{suggest(word, names)}" if word.strip()
                        else "an empty argument where a command goes (an unset shell "
                             "variable?)")
                print_error(UsageError(
                    f"doit{'' if command == 'run' else ' ' + str(command)}: {said}",
                    hint="the commands: " + ", ".join(names) + " (`doit list` says what each "
                         "does; doit's own: help, list, info, …)"))
                sys.exit(2)
        return tasks
