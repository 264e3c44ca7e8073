"""Polling a gate until it passes or its timeout runs out."""

from __future__ import annotations

import time
from collections.abc import Callable

from infrablocks.health.base import GateResult


def poll_gate(gate: Callable[[], GateResult], timeout: float, interval: float = 0.5
              ) -> tuple[GateResult, float]:
    """Call ``gate`` until it passes; the last result and the seconds waited.

    An exception inside the gate counts as a failed poll (a service restarting refuses
    connections); its text becomes the result's summary.
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            result = gate()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is a failed poll
            result = GateResult(False, f"{type(exc).__name__}: {exc}", {})
        if result.ok or time.monotonic() >= deadline:
            if not result.ok:
                result.summary += f" (after {timeout:g}s)"
            return result, time.monotonic() - started
        time.sleep(interval)
