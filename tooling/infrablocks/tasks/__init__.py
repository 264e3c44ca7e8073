"""doit tasks of infrablocks. ``dodo.py`` does ``from infrablocks.tasks import *``.

Every module in this package that does not start with ``_`` may define ``task_*`` functions;
they are collected here. Modules must stay cheap to import (``doit list`` imports them all):
import heavy libraries inside the command functions.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from typing import Any

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


_collect()
# doit keeps its (unused by us) task database here; it needs the folder to exist.
os.makedirs(".infrablocks", exist_ok=True)
