"""Polling a gate until it passes or its timeout runs out."""

from __future__ import annotations

from collections.abc import Callable

from infrablocks.health.base import GateResult
from infrablocks.waiting import poll


def poll_gate(gate: Callable[[], GateResult], timeout: float, interval: float = 0.5
              ) -> tuple[GateResult, float]:
    """Call ``gate`` until it passes; the last result and the seconds waited.

    An exception inside the gate counts as a failed poll (a service restarting refuses
    connections); its text becomes the result's summary.
    """
    def probe() -> GateResult:
        try:
            return gate()
        except Exception as exc:  # noqa: BLE001 - any failure of a probe is a failed poll
            return GateResult(False, f"{type(exc).__name__}: {exc}", {})

    polled = poll(probe, lambda result: result.ok, timeout=timeout, interval=interval)
    result = polled.value
    if not result.ok:
        result.summary += f" (after {timeout:g}s)"
    return result, polled.elapsed
