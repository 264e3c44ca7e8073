"""Where the time of one piece of work went: seconds per phase (the project's one phase timer).

Two ways to book time, freely mixed on one timer:

- sequential phases — ``timer.enter("init")`` closes the phase before and opens ``init`` (what a
  block's create reports: ``{"images": 0.01, "init": 0.15, "apply": 2.3, …}``);
- timed sections — ``with timer.timed("terraform") as section:`` adds the section's seconds to
  ``terraform`` (a rolling upgrade adds up terraform, gates, stop, images over many units) and
  leaves ``section.seconds`` for the caller.

``done()`` gives the per-phase seconds (3 decimals); ``report()`` the same to 2 decimals plus
``tool`` (the time booked nowhere) and ``total`` since the timer started. Monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["PhaseTimer", "Section"]


@dataclass
class Section:
    """One timed section; ``seconds`` is set when it ends."""

    name: str
    started: float
    seconds: float = 0.0


class PhaseTimer:
    """Seconds per phase of one piece of work.

    ``on_phase(label)`` is called when a sequential phase starts (the runner's progress display
    shows it); timed sections do not call it.
    """

    def __init__(self, on_phase: Callable[[str], None] | None = None) -> None:
        self.started = time.monotonic()
        self.seconds: dict[str, float] = {}
        self._on_phase = on_phase
        self._current: str | None = None
        self._since = 0.0

    # -- sequential phases --------------------------------------------------------------------

    def enter(self, name: str, label: str | None = None) -> None:
        """Enter phase ``name`` (announced as ``label``), closing the previous one."""
        self._close()
        self._current, self._since = name, time.monotonic()
        if self._on_phase is not None:
            self._on_phase(label or name)

    __call__ = enter

    def _close(self) -> None:
        if self._current is not None:
            self.add(self._current, time.monotonic() - self._since)
            self._current = None

    # -- timed sections -------------------------------------------------------------------------

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    @contextmanager
    def timed(self, name: str) -> Iterator[Section]:
        """Book the body's seconds to ``name`` (also when it raises)."""
        section = Section(name, time.monotonic())
        try:
            yield section
        finally:
            section.seconds = time.monotonic() - section.started
            self.add(name, section.seconds)

    # -- results --------------------------------------------------------------------------------

    def done(self) -> dict[str, float]:
        """Close the current phase; seconds per phase, to the millisecond."""
        self._close()
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}

    def report(self) -> dict[str, float]:
        """Seconds per phase to 2 decimals, plus ``tool`` (unbooked) and ``total``."""
        self._close()
        total = time.monotonic() - self.started
        spent = {name: round(seconds, 2) for name, seconds in self.seconds.items()}
        spent["tool"] = round(total - sum(self.seconds.values()), 2)
        spent["total"] = round(total, 2)
        return spent
