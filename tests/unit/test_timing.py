"""The phase timer: sequential phases and timed sections on one clock."""

from __future__ import annotations

import pytest

from infrablocks import timing
from infrablocks.timing import PhaseTimer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "monotonic", fake)
    return fake


def test_sequential_phases_close_each_other_and_are_announced(clock: FakeClock) -> None:
    announced: list[str] = []
    timer = PhaseTimer(announced.append)
    timer("images")
    clock.now += 0.5
    timer("init", "terraform init")
    clock.now += 1.25
    timer.enter("images")                    # a phase entered again adds up
    clock.now += 0.25
    assert timer.done() == {"images": 0.75, "init": 1.25}
    assert announced == ["images", "terraform init", "images"]
    clock.now += 5                           # done() closed the last phase
    assert timer.done() == {"images": 0.75, "init": 1.25}


def test_timed_sections_add_up_and_report_tool_and_total(clock: FakeClock) -> None:
    timer = PhaseTimer()
    with timer.timed("terraform") as section:
        clock.now += 2.0
    assert section.seconds == 2.0
    clock.now += 0.5                         # booked nowhere: tool time
    with pytest.raises(RuntimeError), timer.timed("gates"):
        clock.now += 1.0
        raise RuntimeError("a failed gate still took its time")
    clock.now += 1.0
    timer.add("terraform", 1.0)              # measured by the caller
    assert timer.report() == {"terraform": 3.0, "gates": 1.0, "tool": 0.5, "total": 4.5}
