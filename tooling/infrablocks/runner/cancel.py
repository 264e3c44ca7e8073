"""Cooperative cancellation shared by the runner and the work it runs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from infrablocks.waiting import Cancelled

__all__ = ["CancelToken", "Cancelled"]


class CancelToken:
    """Set once (Ctrl-C, SIGTERM, or the caller); the work functions look at it.

    Work that runs a subprocess registers how to interrupt it, for the time it runs::

        with token.on_cancel(lambda: proc.send_signal(signal.SIGINT)):
            proc.wait()

    The callback runs once, in the thread that cancels (for a signal: the main thread, inside
    the handler), so it must be quick and must not block. If the token is already cancelled
    when the callback is registered, it runs at once.

    The token handed to a work function is bound to its node: :meth:`phase` reports what the
    node is doing (``"init"``, ``"apply"`` …) to the progress display and the report.
    """

    def __init__(self) -> None:
        self._shared = _Shared()
        self._node: Hashable | None = None
        self._phase_sink: Callable[[Hashable, str], None] | None = None

    # -- cancelling ---------------------------------------------------------------------------

    @property
    def cancelled(self) -> bool:
        return self._shared.event.is_set()

    @property
    def reason(self) -> str | None:
        return self._shared.reason

    @property
    def event(self) -> threading.Event:
        """The underlying event, set on cancel — e.g. ``Terraform(..., cancel=token.event)``,
        whose driver then sends SIGINT to its running command by itself."""
        return self._shared.event

    def cancel(self, reason: str = "cancelled") -> bool:
        """Cancel; True the first time, False when it already was (callbacks run only once)."""
        shared = self._shared
        with shared.lock:
            if shared.event.is_set():
                return False
            shared.reason = reason
            shared.event.set()
            callbacks = list(shared.callbacks.values())
            shared.callbacks.clear()
        for callback in callbacks:
            # One failing interrupt must not keep the others from running.
            with contextlib.suppress(Exception):
                callback()
        return True

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep up to ``timeout`` seconds, waking early on cancel; True when cancelled."""
        return self._shared.event.wait(timeout)

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise Cancelled(self.reason or "cancelled")

    @contextmanager
    def on_cancel(self, callback: Callable[[], None]) -> Iterator[None]:
        """Run ``callback`` if the token gets cancelled while the ``with`` body runs."""
        shared = self._shared
        key: int | None = None
        with shared.lock:
            already = shared.event.is_set()
            if not already:
                shared.next_id += 1
                key = shared.next_id
                shared.callbacks[key] = callback
        if already:
            callback()
        try:
            yield
        finally:
            if key is not None:
                with shared.lock:
                    shared.callbacks.pop(key, None)

    # -- per-node view --------------------------------------------------------------------------

    @property
    def node(self) -> Hashable | None:
        return self._node

    def phase(self, text: str) -> None:
        """Report the bound node's current phase (no-op on an unbound token)."""
        if self._phase_sink is not None and self._node is not None:
            self._phase_sink(self._node, text)

    def bound(self, node: Hashable, phase_sink: Callable[[Hashable, str], None]) -> CancelToken:
        """A view of this token for one node (same cancel state, its own phase reporting)."""
        view = CancelToken.__new__(CancelToken)
        view._shared = self._shared
        view._node = node
        view._phase_sink = phase_sink
        return view


class _Shared:
    def __init__(self) -> None:
        self.event = threading.Event()
        # Reentrant: cancel() may run in a signal handler on a thread that holds the lock.
        self.lock = threading.RLock()
        self.reason: str | None = None
        self.callbacks: dict[int, Callable[[], None]] = {}
        self.next_id = 0
