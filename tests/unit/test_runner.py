"""The DAG runner: order, eagerness, parallelism bound, failure policies, reverse, cancellation.

Properties are checked through the order of the runner's events and through synchronisation
between work functions (events, barriers with generous timeouts), never through timings.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
from collections.abc import Hashable

import networkx as nx
import pytest

from infrablocks.errors import InfrablocksError
from infrablocks.runner import (
    CANCEL_REQUESTED,
    NODE_FINISHED,
    NODE_STARTED,
    PHASE,
    RUN_FINISHED,
    RUN_STARTED,
    CancelToken,
    Result,
    RunEvent,
    Status,
    run_dag,
)

WAIT = 10.0  # generous bound for cross-thread hand-offs; only reached when the runner is wrong


class Recorder:
    """Collects events (the runner serialises on_event calls)."""

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.lock = threading.Lock()
        self.waiters: dict[tuple[str, Hashable], threading.Event] = {}

    def __call__(self, event: RunEvent) -> None:
        with self.lock:
            self.events.append(event)
            waiter = self.waiters.get((event.kind, event.node))
        if waiter is not None:
            waiter.set()

    def when(self, kind: str, node: Hashable) -> threading.Event:
        with self.lock:
            return self.waiters.setdefault((kind, node), threading.Event())

    def index(self, kind: str, node: Hashable) -> int:
        for i, event in enumerate(self.events):
            if event.kind == kind and event.node == node:
                return i
        raise AssertionError(f"no {kind} event for {node}")

    def started(self) -> list[Hashable]:
        return [e.node for e in self.events if e.kind == NODE_STARTED]


def quick(node: Hashable, token: CancelToken) -> Result:
    return Result.success(node=str(node))


def test_every_node_starts_only_after_all_its_dependencies_succeeded() -> None:
    graph = nx.gnp_random_graph(30, 0.15, seed=7, directed=True)
    dag = nx.DiGraph((u, v) for u, v in graph.edges if u < v)
    dag.add_nodes_from(range(30))
    recorder = Recorder()

    report = run_dag(dag, quick, jobs=4, on_event=recorder)

    assert report.ok and set(report.succeeded) == set(dag.nodes)
    for dependency, dependent in dag.edges:
        assert (recorder.index(NODE_FINISHED, dependency)
                < recorder.index(NODE_STARTED, dependent)), (dependency, dependent)
    assert recorder.events[0].kind == RUN_STARTED
    assert recorder.events[-1].kind == RUN_FINISHED


def test_a_node_starts_as_soon_as_its_dependencies_are_done_not_level_by_level() -> None:
    # base → {nomad, stolon}; nomad → microservice. stolon (same level as nomad) only
    # finishes once microservice (next level) has started: a level-by-level runner would make
    # stolon wait in vain and record microservice after stolon.
    graph = nx.DiGraph([("base", "nomad"), ("base", "stolon"), ("nomad", "microservice")])
    recorder = Recorder()
    microservice_started = recorder.when(NODE_STARTED, "microservice")
    stolon_saw_it = []

    def work(node: Hashable, token: CancelToken) -> None:
        if node == "stolon":
            stolon_saw_it.append(microservice_started.wait(WAIT))

    report = run_dag(graph, work, jobs=4, on_event=recorder)

    assert report.ok
    assert stolon_saw_it == [True]
    assert recorder.index(NODE_STARTED, "microservice") < recorder.index(NODE_FINISHED, "stolon")


def test_no_more_than_jobs_nodes_run_at_once_and_the_bound_is_used() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(f"n{i}" for i in range(9))
    barrier = threading.Barrier(3, timeout=WAIT)  # passes only when 3 run together
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def work(node: Hashable, token: CancelToken) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            barrier.wait()
        finally:
            with lock:
                running[0] -= 1

    report = run_dag(graph, work, jobs=3)

    assert report.ok, report.to_json()
    assert peak[0] == 3


def test_ties_are_broken_deterministically_longest_chain_first_then_by_name() -> None:
    graph = nx.DiGraph([("z", "z2"), ("z2", "z3")])
    graph.add_nodes_from(["m", "a", "x"])
    recorder = Recorder()

    run_dag(graph, quick, jobs=1, on_event=recorder)

    # z heads the longest chain, then z2 does; among equals, names decide.
    assert recorder.started() == ["z", "z2", "a", "m", "x", "z3"]


def _failing_graph() -> nx.DiGraph:
    # a fails; b runs alongside it; c and e are downstream of a; d is independent.
    graph = nx.DiGraph([("a", "c"), ("c", "e"), ("b", "f")])
    graph.add_node("d")
    return graph


def _failing_work(recorder: Recorder):
    a_failed = recorder.when(NODE_FINISHED, "a")

    def work(node: Hashable, token: CancelToken) -> Result | None:
        if node == "a":
            return Result.failure("apply failed: boom", phase="apply")
        if node == "b":
            assert a_failed.wait(WAIT), "a never finished"
        return None

    return work


def test_fail_fast_lets_running_nodes_finish_and_starts_nothing_new() -> None:
    recorder = Recorder()
    report = run_dag(_failing_graph(), _failing_work(recorder), jobs=2, on_event=recorder)

    status = {n: r.status for n, r in report.nodes.items()}
    assert status == {"a": Status.FAILED, "b": Status.SUCCEEDED, "c": Status.SKIPPED,
                      "e": Status.SKIPPED, "d": Status.NOT_STARTED, "f": Status.NOT_STARTED}
    assert report.nodes["a"].error == "apply failed: boom"
    assert report.nodes["a"].detail == {"phase": "apply"}
    assert report.nodes["c"].reason == "a failed"
    assert report.nodes["e"].reason == "a failed (upstream, via c)"
    assert report.nodes["e"].blocked_by == ["a"]
    assert "fail-fast" in (report.nodes["d"].reason or "")
    assert not report.ok
    assert set(recorder.started()) == {"a", "b"}


def test_keep_going_runs_everything_not_downstream_of_the_failure() -> None:
    recorder = Recorder()
    report = run_dag(_failing_graph(), _failing_work(recorder), jobs=2, keep_going=True,
                     on_event=recorder)

    status = {n: r.status for n, r in report.nodes.items()}
    assert status == {"a": Status.FAILED, "b": Status.SUCCEEDED, "c": Status.SKIPPED,
                      "e": Status.SKIPPED, "d": Status.SUCCEEDED, "f": Status.SUCCEEDED}
    assert "c" not in recorder.started() and "e" not in recorder.started()
    assert report.summary().startswith("3 succeeded, 1 failed, 2 skipped")


def test_a_node_downstream_of_two_failures_names_both() -> None:
    graph = nx.DiGraph([("a", "x"), ("b", "x")])
    report = run_dag(graph, lambda n, t: Result.failure("no") if n != "x" else None, jobs=2,
                     keep_going=True)
    assert report.nodes["x"].status is Status.SKIPPED
    assert sorted(report.nodes["x"].blocked_by) == ["a", "b"]


def test_exceptions_become_failures_with_their_message() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(["user", "bug"])

    def work(node: Hashable, token: CancelToken) -> None:
        if node == "user":
            raise InfrablocksError("block 'user': terraform apply failed")
        raise KeyError("oops")

    report = run_dag(graph, work, jobs=2, keep_going=True)

    assert report.nodes["user"].error == "block 'user': terraform apply failed"
    assert report.nodes["user"].traceback is None
    assert report.nodes["bug"].error == "KeyError: 'oops'"
    assert "Traceback" in (report.nodes["bug"].traceback or "")


def test_reverse_runs_dependents_first_and_skips_dependencies_of_a_failed_destroy() -> None:
    graph = nx.DiGraph([("base", "nomad"), ("nomad", "app"), ("base", "other")])
    recorder = Recorder()
    report = run_dag(graph, quick, jobs=1, reverse=True, on_event=recorder)
    assert report.ok
    for dependency, dependent in graph.edges:
        assert (recorder.index(NODE_FINISHED, dependent)
                < recorder.index(NODE_STARTED, dependency))
    assert recorder.started()[-1] == "base"

    failing = run_dag(graph, lambda n, t: Result.failure("x") if n == "app" else None,
                      jobs=1, reverse=True, keep_going=True)
    assert failing.nodes["nomad"].status is Status.SKIPPED
    assert failing.nodes["nomad"].reason == "app failed"
    assert failing.nodes["base"].status is Status.SKIPPED
    assert failing.nodes["other"].status is Status.SUCCEEDED


def test_cancel_interrupts_running_work_and_reports_the_rest_not_started() -> None:
    graph = nx.DiGraph([("slow", "after")])
    graph.add_node("waiting")
    token = CancelToken()
    interrupted = threading.Event()

    def work(node: Hashable, token_: CancelToken) -> Result:
        # Like the Terraform driver: forward the cancel to the subprocess, then wait for it.
        with token_.on_cancel(interrupted.set):
            token_.phase("apply")
            token.cancel("test asked to stop")
            assert interrupted.wait(WAIT)
        return Result.failure("terraform interrupted")

    recorder = Recorder()
    report = run_dag(graph, work, jobs=1, token=token, on_event=recorder)

    assert report.cancelled and report.cancel_reason == "test asked to stop"
    assert report.nodes["slow"].status is Status.CANCELLED
    assert report.nodes["slow"].phase == "apply"
    assert report.nodes["after"].status is Status.SKIPPED
    assert report.nodes["waiting"].status is Status.NOT_STARTED
    assert report.nodes["waiting"].reason == "run cancelled (test asked to stop)"
    assert [e.kind for e in recorder.events].count(CANCEL_REQUESTED) == 1
    assert any(e.kind == PHASE and e.message == "apply" for e in recorder.events)


def test_sigint_cancels_the_run_and_the_previous_handler_comes_back() -> None:
    graph = nx.DiGraph([("first", "second")])
    forwarded = threading.Event()
    before = signal.getsignal(signal.SIGINT)

    def work(node: Hashable, token: CancelToken) -> Result | None:
        with token.on_cancel(forwarded.set):
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does
            if not forwarded.wait(WAIT):
                return Result.failure("the signal never reached the work")
        return Result.success() if node == "never" else Result.failure("interrupted")

    report = run_dag(graph, work, jobs=1)

    assert signal.getsignal(signal.SIGINT) is before
    assert report.cancelled and report.cancel_reason == "received SIGINT"
    assert report.nodes["first"].status is Status.CANCELLED
    assert report.nodes["second"].status is Status.SKIPPED


def test_a_cycle_is_refused_with_its_path() -> None:
    graph = nx.DiGraph([("a", "b"), ("b", "a")])
    with pytest.raises(InfrablocksError, match="cycle"):
        run_dag(graph, quick)
    with pytest.raises(ValueError):
        run_dag(nx.DiGraph([("a", "b")]), quick, jobs=0)


def test_a_failing_event_callback_does_not_abort_the_run() -> None:
    graph = nx.DiGraph([("a", "b")])

    def broken(event: RunEvent) -> None:
        raise RuntimeError("display gone")

    report = run_dag(graph, quick, jobs=2, on_event=broken)
    assert report.ok
    assert report.warnings == ["on_event callback failed and was disabled: "
                               "RuntimeError: display gone"]


def test_an_interrupt_in_the_main_thread_cancels_running_work_before_propagating() -> None:
    graph = nx.DiGraph()
    graph.add_nodes_from(["a", "b"])
    saw_cancel: list[bool] = []

    def work(node: Hashable, token: CancelToken) -> None:
        saw_cancel.append(token.wait(WAIT))

    def interrupting(event: RunEvent) -> None:
        if event.kind == NODE_STARTED and event.node == "b":  # a is running by then
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_dag(graph, work, jobs=2, on_event=interrupting, handle_signals=False)
    assert saw_cancel == [True]


def test_a_work_function_returning_something_else_is_a_failure() -> None:
    graph = nx.DiGraph()
    graph.add_node("a")
    report = run_dag(graph, lambda n, t: True, jobs=1)
    assert report.nodes["a"].status is Status.FAILED
    assert "expected a runner Result or None" in (report.nodes["a"].error or "")


def test_report_json_has_per_node_status_and_timing(tmp_path) -> None:
    graph = nx.DiGraph([("a", "b")])
    report = run_dag(graph, lambda n, t: Result.success(version="1.0.0"), jobs=2)
    target = tmp_path / "report.json"
    report.write_json(target)
    data = json.loads(target.read_text())
    assert data["ok"] is True and data["counts"] == {"succeeded": 2}
    assert [n["node"] for n in data["nodes"]] == ["a", "b"]
    assert all(n["duration_seconds"] is not None and n["started_at"].endswith("Z")
               for n in data["nodes"])
    assert data["nodes"][0]["detail"] == {"version": "1.0.0"}


def test_critical_path_follows_the_longest_chain_of_measured_durations() -> None:
    graph = nx.DiGraph([("base", "nomad"), ("base", "stolon"), ("stolon", "app"),
                        ("nomad", "app")])
    report = run_dag(graph, quick, jobs=2)
    for node, seconds in {"base": 2.0, "nomad": 1.0, "stolon": 3.0, "app": 0.5}.items():
        report.nodes[node].duration = seconds  # as if measured
    assert report.critical_path(graph) == (5.5, ["base", "stolon", "app"])
    assert report.critical_path(nx.DiGraph()) == (0.0, [])


def test_progress_prints_plain_lines_when_not_on_a_terminal() -> None:
    from rich.console import Console

    from infrablocks.runner.progress import LiveProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)
    graph = nx.DiGraph([("base", "app")])

    def work(node: Hashable, token: CancelToken) -> Result | None:
        token.phase("apply")
        return Result.failure("boom") if node == "base" else None

    with LiveProgress(graph.nodes, console=console, title="create t-1") as progress:
        run_dag(graph, work, jobs=1, on_event=progress)
    text = buffer.getvalue()
    assert "create t-1" in text
    assert "base: apply" in text
    assert "base: failed" in text and "boom" in text
    assert "app: skipped: base failed" in text
    # The live table renders too (used on terminals).
    rendered = io.StringIO()
    Console(file=rendered, width=120).print(progress)
    assert "base" in rendered.getvalue() and "app" in rendered.getvalue()
