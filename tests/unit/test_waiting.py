"""infrablocks.waiting: the one poll loop (timeout, interval, backoff, result on timeout,
retry, cancellation), on a fake clock so every sleep is seen exactly."""

from __future__ import annotations

import threading
import time

import pytest

from infrablocks import waiting
from infrablocks.runner import Cancelled as RunnerCancelled
from infrablocks.waiting import Cancelled, Deadline, poll, retry


class FakeClock:
    """``time.monotonic`` / ``time.sleep`` for ``infrablocks.waiting``: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(waiting, "time", fake)
    return fake


def counter(results: list[object]):
    calls = iter(results)
    seen: list[object] = []

    def probe() -> object:
        value = next(calls)
        seen.append(value)
        return value

    return probe, seen


def test_a_probe_that_holds_at_once_is_called_once_and_never_sleeps(clock: FakeClock) -> None:
    probe, seen = counter([True])
    polled = poll(probe, timeout=10, interval=1)
    assert (polled.ok, polled.value, polled.attempts, polled.elapsed) == (True, True, 1, 0.0)
    assert clock.sleeps == []


def test_polls_every_interval_until_the_condition_holds(clock: FakeClock) -> None:
    probe, _ = counter(["pending", "pending", "running"])
    polled = poll(probe, lambda state: state == "running", timeout=10, interval=0.5)
    assert polled.ok and polled.value == "running" and polled.attempts == 3
    assert clock.sleeps == [0.5, 0.5]
    assert polled.elapsed == pytest.approx(1.0)


def test_on_timeout_the_last_value_comes_back_and_nothing_is_raised(clock: FakeClock) -> None:
    probe, seen = counter([1, 2, 3, 4, 5])
    polled = poll(probe, lambda n: n > 99, timeout=1.0, interval=0.4)
    # probes at 0, 0.4, 0.8 and — the last sleep cut to the deadline — at 1.0
    assert clock.sleeps == [0.4, 0.4, 0.2]
    assert not polled.ok and polled.value == 4 and seen == [1, 2, 3, 4]
    assert polled.elapsed == pytest.approx(1.0)


def test_a_zero_timeout_still_probes_once(clock: FakeClock) -> None:
    probe, seen = counter([False])
    polled = poll(probe, timeout=0, interval=5)
    assert not polled.ok and seen == [False] and clock.sleeps == []


def test_backoff_grows_the_interval_up_to_its_cap(clock: FakeClock) -> None:
    probe, _ = counter([False] * 6 + [True])
    poll(probe, timeout=60, interval=0.01, backoff=2, max_interval=0.1)
    assert clock.sleeps == [0.01, 0.02, 0.04, 0.08, 0.1, 0.1]


def test_a_shared_deadline_gives_the_probe_the_time_left(clock: FakeClock) -> None:
    deadline = Deadline(3.0)
    left: list[float] = []
    polled = poll(lambda: left.append(deadline.remaining()), lambda _: False,
                  timeout=deadline, interval=1.0)
    assert left == [3.0, 2.0, 1.0, 0.0] and not polled.ok and deadline.expired()


def test_exceptions_of_the_probe_propagate(clock: FakeClock) -> None:
    def probe() -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        poll(probe, timeout=10, interval=1)
    assert clock.sleeps == []


def test_retry_returns_the_value_once_the_operation_stops_raising(clock: FakeClock) -> None:
    attempts = iter([OSError("refused"), OSError("refused"), "ok"])

    def operation() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert retry(operation, retry_on=OSError, timeout=10, interval=0.2) == "ok"
    assert clock.sleeps == [0.2, 0.2]


def test_retry_raises_the_last_exception_on_timeout(clock: FakeClock) -> None:
    count = iter(range(100))

    def operation() -> None:
        raise OSError(f"refused #{next(count)}")

    with pytest.raises(OSError, match="refused #3"):
        retry(operation, retry_on=OSError, timeout=1.5, interval=0.5)


def test_retry_does_not_retry_other_exceptions(clock: FakeClock) -> None:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        retry(operation, retry_on=OSError, timeout=10, interval=1)
    assert calls == [1]


def test_cancel_wakes_the_sleep_and_raises_before_another_probe() -> None:
    cancel = threading.Event()
    calls: list[float] = []

    def probe() -> bool:
        calls.append(time.monotonic())
        return False

    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        poll(probe, timeout=30, interval=10, cancel=cancel)
    assert time.monotonic() - started < 5       # woken, not slept out
    assert len(calls) == 1


def test_an_already_cancelled_wait_probes_once_then_stops() -> None:
    cancel = threading.Event()
    cancel.set()
    calls: list[int] = []
    with pytest.raises(Cancelled):
        poll(lambda: calls.append(1), timeout=30, interval=1, cancel=cancel)
    assert calls == [1]


def test_the_runner_reports_the_same_cancelled() -> None:
    assert RunnerCancelled is Cancelled


def test_real_sleeps_end_near_the_timeout() -> None:
    started = time.monotonic()
    polled = poll(lambda: False, timeout=0.3, interval=5.0)
    assert not polled.ok and polled.attempts == 2
    assert 0.3 <= time.monotonic() - started < 2.0
