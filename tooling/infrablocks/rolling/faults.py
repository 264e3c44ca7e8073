"""A test hook: make the upgrade process die at a chosen step boundary.

``INFRABLOCKS_FAULT=after:STEP:INDEX`` makes the process ``os._exit(137)`` (as if killed with
``kill -9``: no cleanup, no journal write, the lock left behind) right after the step ``STEP`` of
the unit with instance index ``INDEX`` was journaled. ``INDEX`` may be ``*`` (any unit); steps
without a unit (``final-apply``, ``record``) are written ``after:final-apply``. Several faults
may be given, comma separated. Only the reliability tests use it.

The variable is read once, by the command (``FaultHook.from_environ()``), and the hook is handed
to the engine; the engine calls ``fault(step, index)`` after each journaled step. Unit tests
give a hook whose ``die`` raises instead of exiting.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn

__all__ = ["ENV", "EXIT_CODE", "NO_FAULTS", "FaultHook"]

ENV = "INFRABLOCKS_FAULT"
EXIT_CODE = 137


def _exit(code: int) -> NoReturn:
    os._exit(code)


@dataclass(frozen=True)
class FaultHook:
    """``after:STEP[:INDEX]`` entries, comma separated (empty: never fires)."""

    spec: str = ""
    die: Callable[[int], object] = field(default=_exit, compare=False, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> FaultHook:
        return cls((os.environ if environ is None else environ).get(ENV, "").strip())

    def fires(self, step: str, index: int | None = None) -> bool:
        for entry in self.spec.split(","):
            parts = entry.strip().split(":")
            if len(parts) < 2 or parts[0] != "after" or parts[1] != step:
                continue
            wanted = parts[2] if len(parts) > 2 else "*"
            if wanted == "*" or (index is not None and wanted == str(index)):
                return True
        return False

    def __call__(self, step: str, index: int | None = None) -> None:
        """Die (exit 137) when ``after:STEP[:INDEX]`` is in the spec."""
        if not self.spec or not self.fires(str(step), index):
            return
        sys.stderr.write(f"{ENV}: dying after {step}"
                         + (f" of unit {index}" if index is not None else "") + "\n")
        sys.stderr.flush()
        self.die(EXIT_CODE)


NO_FAULTS = FaultHook()
