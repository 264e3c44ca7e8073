"""Waiting until something holds: the one deadline-and-sleep loop of the library.

Every wait of infrablocks — an instance reaching a state, a health gate passing, a lock coming
free, a scheduler answering, a process exiting — is :func:`poll` (a probe and a condition) or
:func:`retry` (an operation that raises until it works). The contract:

- ``timeout``: seconds from the call, or a :class:`Deadline` shared with the caller (to give a
  probe the time that is left, or to measure from an earlier start). The probe always runs at
  least once, also with a timeout of 0 or less.
- ``interval``: seconds slept between the end of one probe and the start of the next (times
  ``backoff`` after each probe, up to ``max_interval``). A sleep never runs past the deadline:
  the last probe runs at the deadline, so a wait ends within one probe of ``timeout``.
- On timeout :func:`poll` raises nothing: it returns a :class:`Polled` with ``ok=False`` and the
  last value, and the caller raises its own error with its own message (what it waited for, for
  how long, what it saw last). :func:`retry` re-raises the operation's last exception.
- Exceptions from the probe propagate at once; a probe that expects some (a service restarting
  refuses connections) catches them and returns a "not yet" value.
- Cancellation: ``cancel`` (a :class:`threading.Event`, e.g. the runner's ``CancelToken.event``)
  wakes the sleep at once; the wait then raises :class:`Cancelled`, before any further probe.
  Without it a wait sleeps with :func:`time.sleep` (a Ctrl-C in the main thread still ends it).

Why not tenacity: its stop/wait/retry objects fit "retry an operation", but most waits here
poll for a value and report the last one seen; the shapes below are the whole of what the
library needs, in one page (README, "Deliberate deviations").
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class Cancelled(Exception):  # noqa: N818 - reads better at the raise site than CancelledError
    """The wait (or the work around it) stopped because it was cancelled.

    The runner reports it as ``cancelled`` (``infrablocks.runner.Cancelled`` is this class).
    """


class Deadline:
    """A point in :func:`time.monotonic` time, ``timeout`` seconds after the object was made."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.started = time.monotonic()
        self.at = self.started + timeout

    def remaining(self) -> float:
        """Seconds left (0.0 once expired)."""
        return max(self.at - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return time.monotonic() >= self.at

    def elapsed(self) -> float:
        """Seconds since the deadline was made."""
        return time.monotonic() - self.started


@dataclass(frozen=True)
class Polled(Generic[T]):
    """How a :func:`poll` ended: ``ok`` (the condition held), the last value the probe
    returned, the seconds since the wait started, and how many probes ran."""

    ok: bool
    value: T
    elapsed: float
    attempts: int


def _truthy(value: object) -> bool:
    return bool(value)


def poll(probe: Callable[[], T], until: Callable[[T], bool] = _truthy, *,
         timeout: float | Deadline, interval: float, backoff: float = 1.0,
         max_interval: float | None = None,
         cancel: threading.Event | None = None) -> Polled[T]:
    """Call ``probe`` until ``until(value)`` holds or the deadline passes (module docstring).

    ``until`` defaults to the value's truth. Returns a :class:`Polled` either way; raises
    :class:`Cancelled` when ``cancel`` is set during a sleep, and whatever ``probe`` raises.
    """
    deadline = timeout if isinstance(timeout, Deadline) else Deadline(timeout)
    delay = interval
    attempts = 0
    while True:
        value = probe()
        attempts += 1
        done = until(value)
        if done or deadline.expired():
            return Polled(done, value, deadline.elapsed(), attempts)
        sleep(min(delay, deadline.remaining()), cancel=cancel)
        delay = delay * backoff if max_interval is None else min(delay * backoff, max_interval)


def retry(operation: Callable[[], T], *,
          retry_on: type[BaseException] | tuple[type[BaseException], ...],
          timeout: float | Deadline, interval: float,
          cancel: threading.Event | None = None) -> T:
    """Call ``operation`` until it returns without raising ``retry_on``; its value.

    On timeout the last ``retry_on`` exception is raised again (the caller may turn it into its
    own error). Any other exception propagates at once; :class:`Cancelled` as in :func:`poll`.
    """
    failures: list[BaseException] = []

    def attempt() -> tuple[T] | None:
        try:
            return (operation(),)
        except retry_on as exc:
            failures[:] = [exc]
            return None

    polled = poll(attempt, lambda outcome: outcome is not None, timeout=timeout,
                  interval=interval, cancel=cancel)
    if polled.value is None:
        raise failures[0]
    return polled.value[0]


def sleep(seconds: float, *, cancel: threading.Event | None = None) -> None:
    """Sleep ``seconds``; with ``cancel``, wake when it is set and raise :class:`Cancelled`."""
    if cancel is None:
        if seconds > 0:
            time.sleep(seconds)
        return
    if cancel.wait(max(seconds, 0.0)):
        raise Cancelled("cancelled")
