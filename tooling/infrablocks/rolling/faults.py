"""A test hook: make the upgrade process die at a chosen step boundary.

``INFRABLOCKS_FAULT=after:STEP:INDEX`` makes the process ``os._exit(137)`` (as if killed with
``kill -9``: no cleanup, no journal write, the lock left behind) right after the step ``STEP`` of
the unit with instance index ``INDEX`` was journaled. ``INDEX`` may be ``*`` (any unit); steps
without a unit (``plan``, ``final-apply``) are written ``after:final-apply``. Several faults may
be given, comma separated. Only the reliability tests use it.
"""

from __future__ import annotations

import os
import sys

ENV = "INFRABLOCKS_FAULT"
EXIT_CODE = 137


def maybe_die(step: str, index: int | None = None) -> None:
    spec = os.environ.get(ENV, "").strip()
    if not spec:
        return
    for entry in spec.split(","):
        parts = entry.strip().split(":")
        if len(parts) < 2 or parts[0] != "after" or parts[1] != step:
            continue
        wanted = parts[2] if len(parts) > 2 else "*"
        if wanted == "*" or (index is not None and wanted == str(index)):
            sys.stderr.write(f"{ENV}: dying after {step}"
                             + (f" of unit {index}" if index is not None else "") + "\n")
            sys.stderr.flush()
            os._exit(EXIT_CODE)
