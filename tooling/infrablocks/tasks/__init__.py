"""doit tasks of infrablocks. ``dodo.py`` does ``from infrablocks.tasks import *``.

Every module in this package that does not start with ``_`` may define ``task_*`` functions;
they are collected here. Modules must stay cheap to import (``doit list`` imports them all):
import heavy libraries inside the command functions.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from pathlib import Path
from typing import Any

from infrablocks.tasks import _command
from infrablocks.tasks._console import restore_sigpipe
from infrablocks.tasks._reporter import QuietReporter

DOIT_CONFIG: dict[str, Any] = {
    "default_tasks": [],
    "verbosity": 2,
    "reporter": QuietReporter,
    "dep_file": ".infrablocks/doit.db",
    "backend": "json",
}

__all__ = ["DOIT_CONFIG"]


def _collect() -> None:
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        for attr in dir(module):
            if attr.startswith("task_"):
                globals()[attr] = getattr(module, attr)
                __all__.append(attr)


def _running_as_doit() -> bool:
    """Whether this process is the `doit` command (not a test importing the commands)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return program.name == "doit" or (program.name == "__main__.py"
                                      and program.parent.name == "doit")


_collect()
if _running_as_doit():
    # doit's own commands (`doit list | head -1`) end as any Unix tool does when the reader
    # goes away; ours ignore SIGPIPE while they run and end the same way when done
    # (see _console.py).
    restore_sigpipe()
    _command.EXIT_WHEN_DONE = True  # the reporter ends the process when doit is done
    _command.install_doit_parse_errors()  # bad options: our usage error (exit 2), not doit's
    # doit keeps its (unused by us) task database here; it needs the folder to exist.
    os.makedirs(".infrablocks", exist_ok=True)
