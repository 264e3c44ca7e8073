"""The parallel DAG runner: each node starts as soon as everything it depends on succeeded.

Not level by level: with ``base → nomad → microservice01`` and ``base → stolon`` (slow), nomad
and microservice01 run while stolon is still going. At most ``jobs`` nodes run at once; when
more are ready than there are free slots, the one heading the longest chain of work still to
do goes first (critical path first), ties broken by name — so runs are deterministic.

Edges go dependency → dependent. ``reverse=True`` (destroy) flips the meaning: a node starts
once all its dependents are done.

The graph is anything with ``nodes``, ``predecessors(node)`` (its dependencies) and
``successors(node)`` (its dependents): a ``networkx.DiGraph``, or the runner's own :class:`Dag`
when building one with networkx is not worth it — importing networkx costs ~0.08 s of CPU,
a fifth of a one-block ``doit create`` before Terraform starts (benchmarks/README.md). The few
graph algorithms the runner needs (order, cycle, downstream) are written here on the standard
library, so the runner never imports networkx.
"""

from __future__ import annotations

import heapq
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from infrablocks.errors import InfrablocksError
from infrablocks.runner.cancel import Cancelled, CancelToken
from infrablocks.runner.report import NodeReport, Result, RunReport, Status

Work = Callable[[Hashable, CancelToken], "Result | None"]


class Graph(Protocol):
    """What the runner reads from a graph (``networkx.DiGraph`` has it)."""

    @property
    def nodes(self) -> Iterable[Hashable]: ...

    # ``node`` is of the graph's own node type (``networkx.DiGraph[str]``: a str): the runner
    # only hands back nodes it read from ``nodes``.
    def predecessors(self, node: Any, /) -> Iterator[Hashable]: ...

    def successors(self, node: Any, /) -> Iterator[Hashable]: ...


class Dag:
    """A dependency graph given as ``{node: its dependencies}`` (every dependency must be a
    node too); edges go dependency → dependent, as in ``networkx.DiGraph``."""

    def __init__(self, dependencies: Mapping[Hashable, Iterable[Hashable]]) -> None:
        self._predecessors = {node: list(deps) for node, deps in dependencies.items()}
        self._successors: dict[Hashable, list[Hashable]] = {n: [] for n in self._predecessors}
        for node, deps in self._predecessors.items():
            for dependency in deps:
                if dependency not in self._successors:
                    raise ValueError(f"{node} depends on {dependency}, which is not a node")
                self._successors[dependency].append(node)

    @property
    def nodes(self) -> list[Hashable]:
        return list(self._predecessors)

    def predecessors(self, node: Hashable) -> Iterator[Hashable]:
        return iter(self._predecessors[node])

    def successors(self, node: Hashable) -> Iterator[Hashable]:
        return iter(self._successors[node])

    def __len__(self) -> int:
        return len(self._predecessors)


def find_cycle(graph: Graph) -> list[Hashable] | None:
    """The nodes of one dependency cycle in edge order (``[a, b]`` for a → b → a), or None."""
    import graphlib

    sorter = graphlib.TopologicalSorter({n: list(graph.predecessors(n)) for n in graph.nodes})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])[:-1]  # [x, …, x]: each a dependency of the next
    return None


def lexicographic_order(graph: Graph, *, reverse: bool = False) -> list[Hashable]:
    """Dependencies first (dependents first with ``reverse``); among the nodes that are ready
    at the same time, the smallest ``str(node)`` first — networkx's
    ``lexicographical_topological_sort(graph, key=str)``. ``graph`` must be acyclic."""
    before = graph.successors if reverse else graph.predecessors
    after = graph.predecessors if reverse else graph.successors
    waiting = {n: sum(1 for _ in before(n)) for n in graph.nodes}
    ready = [(str(n), i, n) for i, n in enumerate(graph.nodes) if waiting[n] == 0]
    heapq.heapify(ready)
    order: list[Hashable] = []
    index = {n: i for i, n in enumerate(graph.nodes)}
    while ready:
        node = heapq.heappop(ready)[-1]
        order.append(node)
        for nxt in after(node):
            waiting[nxt] -= 1
            if waiting[nxt] == 0:
                heapq.heappush(ready, (str(nxt), index[nxt], nxt))
    return order


def downstream(graph: Graph, node: Hashable, *, reverse: bool = False) -> set[Hashable]:
    """Every node reachable from ``node`` along the edges (against them with ``reverse``)."""
    step = graph.predecessors if reverse else graph.successors
    seen: set[Hashable] = set()
    todo = [node]
    while todo:
        for nxt in step(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen

# Event kinds, in the order a run emits them.
RUN_STARTED = "run_started"
NODE_STARTED = "node_started"
PHASE = "phase"
NODE_FINISHED = "node_finished"      # also for skipped / not started nodes
CANCEL_REQUESTED = "cancel_requested"
RUN_FINISHED = "run_finished"


@dataclass(frozen=True)
class RunEvent:
    """What ``on_event`` receives. Calls are serialised (never two at once)."""

    kind: str
    node: Hashable | None = None
    status: Status | None = None
    message: str | None = None       # phase text, error, skip reason, cancel reason
    time: float = 0.0                # time.monotonic()
    report: NodeReport | None = None  # the node's report (live object) for node events


def run_dag(graph: Graph, work: Work, *, jobs: int = 4, keep_going: bool = False,
            reverse: bool = False, on_event: Callable[[RunEvent], None] | None = None,
            token: CancelToken | None = None, handle_signals: bool = True) -> RunReport:
    """Run ``work(node, token)`` for every node of ``graph`` in dependency order.

    - ``jobs``: at most this many nodes run at once (≥ 1).
    - Fail-fast (default): after a failure, running nodes finish, nothing new starts; nodes
      downstream of the failure are ``skipped`` (with the reason), the rest ``not started``.
    - ``keep_going``: everything not downstream of a failure still runs.
    - ``reverse``: for destroy — a node waits for its dependents instead of its dependencies.
    - ``token``: cancel from outside; a fresh one is made when None. With ``handle_signals``
      (and when called from the main thread) SIGINT and SIGTERM cancel it; running work is
      expected to notice (``token.on_cancel`` / ``token.cancelled``) and stop cleanly. Further
      signals while stopping are only reported, never forwarded, so a second Ctrl-C cannot
      make Terraform abandon a state write.
    - Work returns ``None`` / ``Result`` or raises: an :class:`InfrablocksError` or
      :class:`Cancelled` keeps its message; any other exception also records its traceback.

    Returns the :class:`RunReport`; never raises for a failing node.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    cycle = find_cycle(graph)
    if cycle is not None:
        raise InfrablocksError(f"cannot run a dependency cycle: {' → '.join(map(str, cycle))}")
    return _Run(graph, work, jobs, keep_going, reverse, on_event, token or CancelToken(),
                handle_signals).execute()


class _Run:
    def __init__(self, graph: Graph, work: Work, jobs: int, keep_going: bool,
                 reverse: bool, on_event: Callable[[RunEvent], None] | None,
                 token: CancelToken, handle_signals: bool) -> None:
        self.graph = graph
        self.work = work
        self.jobs = jobs
        self.keep_going = keep_going
        self.reverse = reverse
        self.on_event = on_event
        self.token = token
        self.handle_signals = handle_signals
        self.deps: Callable[[Hashable], Any] = graph.successors if reverse else graph.predecessors
        self.dependents: Callable[[Hashable], Any] = (graph.predecessors if reverse
                                                      else graph.successors)
        order = lexicographic_order(graph, reverse=reverse)
        self.order = order
        self.index = {node: i for i, node in enumerate(order)}
        self.priority = self._chain_lengths(order)
        self.report = RunReport(nodes={n: NodeReport(n) for n in order}, jobs=jobs,
                                keep_going=keep_going, reverse=reverse, started_at=time.time())
        self.waiting_on = {n: sum(1 for _ in self.deps(n)) for n in order}
        self.ready: list[tuple[int, str, int, Hashable]] = []
        self.running: dict[Hashable, float] = {}
        self.done: queue.Queue[tuple[Hashable, Result | None, BaseException | None, str | None]]
        self.done = queue.Queue()
        self.first_failure: Hashable | None = None
        self.event_lock = threading.Lock()
        self.signals_seen = 0      # counted by the handler, announced by the main loop
        self.signals_announced = 0
        self.cancel_announced = False

    # -- the loop -------------------------------------------------------------------------------

    def execute(self) -> RunReport:
        start = time.monotonic()
        previous_handlers = self._install_signal_handlers()
        self._emit(RunEvent(RUN_STARTED, time=start))
        for node in self.order:
            if self.waiting_on[node] == 0:
                self._push_ready(node)
        try:
            with ThreadPoolExecutor(max_workers=self.jobs,
                                    thread_name_prefix="infrablocks-run") as pool:
                try:
                    self._loop(pool)
                except BaseException as exc:
                    # E.g. KeyboardInterrupt without our handlers: leaving the pool waits for
                    # the running work, so tell it to stop first.
                    self.token.cancel(f"interrupted by {type(exc).__name__}")
                    raise
            self._announce_cancel()
        finally:
            self._restore_signal_handlers(previous_handlers)
        self._mark_unreached()
        report = self.report
        report.ended_at = time.time()
        report.wall = time.monotonic() - start
        report.cancelled = self.token.cancelled
        report.cancel_reason = self.token.reason
        self._emit(RunEvent(RUN_FINISHED, message=report.summary(), time=time.monotonic()))
        return report

    def _loop(self, pool: ThreadPoolExecutor) -> None:
        while True:
            self._announce_cancel()
            while self.ready and len(self.running) < self.jobs and not self._stopping:
                self._start(pool, heapq.heappop(self.ready)[-1])
            if not self.running:
                return
            try:
                # A timeout keeps the main thread responsive to signals.
                finished = self.done.get(timeout=0.2)
            except queue.Empty:
                continue
            self._finish(*finished)

    @property
    def _stopping(self) -> bool:
        return self.token.cancelled or (self.first_failure is not None and not self.keep_going)

    def _push_ready(self, node: Hashable) -> None:
        heapq.heappush(self.ready, (-self.priority[node], str(node), self.index[node], node))

    def _start(self, pool: ThreadPoolExecutor, node: Hashable) -> None:
        report = self.report.nodes[node]
        report.status = Status.RUNNING
        report.started_at = time.time()
        self.running[node] = time.monotonic()
        self._emit(RunEvent(NODE_STARTED, node, Status.RUNNING, time=self.running[node],
                            report=report))
        bound = self.token.bound(node, self._phase)
        pool.submit(self._call, node, bound)

    def _call(self, node: Hashable, token: CancelToken) -> None:
        """Runs in a worker thread; hands the outcome to the main loop."""
        try:
            result = self.work(node, token)
            self.done.put((node, result, None, None))
        except BaseException as exc:  # noqa: BLE001 - reported, never lost
            expected = isinstance(exc, InfrablocksError | Cancelled)
            self.done.put((node, None, exc, None if expected else traceback.format_exc()))

    def _finish(self, node: Hashable, result: Result | None, exc: BaseException | None,
                trace: str | None) -> None:
        report = self.report.nodes[node]
        now = time.monotonic()
        report.duration = now - self.running.pop(node)
        report.ended_at = time.time()
        error: str | None
        if exc is not None:
            ok, error = False, _describe(exc)
            report.traceback = trace
        else:
            if result is None:
                result = Result()
            elif not isinstance(result, Result):
                result = Result.failure(f"work returned {type(result).__name__}, "
                                        "expected a runner Result or None")
            ok, error = result.ok, (None if result.ok else (result.error or "failed"))
            report.detail.update(result.detail)
        if ok:
            report.status = Status.SUCCEEDED
        else:
            interrupted = self.token.cancelled or isinstance(exc, Cancelled)
            report.status = Status.CANCELLED if interrupted else Status.FAILED
            report.error = error
        self._emit(RunEvent(NODE_FINISHED, node, report.status, message=error, time=now,
                            report=report))
        if ok:
            for dependent in sorted(self.dependents(node), key=str):
                self.waiting_on[dependent] -= 1
                if (self.waiting_on[dependent] == 0
                        and self.report.nodes[dependent].status is Status.PENDING):
                    self._push_ready(dependent)
        else:
            if report.status is Status.FAILED and self.first_failure is None:
                self.first_failure = node
            self._skip_downstream(node)

    def _skip_downstream(self, failed: Hashable) -> None:
        """Mark every pending node downstream of ``failed`` skipped, naming the failure."""
        below = downstream(self.graph, failed, reverse=self.reverse)
        what = "was cancelled" if self.report.nodes[failed].status is Status.CANCELLED \
            else "failed"
        for node in self.order:
            if node not in below:
                continue
            report = self.report.nodes[node]
            if report.status is Status.SKIPPED:
                if failed not in report.blocked_by:
                    report.blocked_by.append(failed)
                continue
            if report.status is not Status.PENDING:
                continue
            report.status = Status.SKIPPED
            report.blocked_by.append(failed)
            direct = failed in set(self.deps(node))
            via = sorted((str(d) for d in self.deps(node)
                          if self.report.nodes[d].status is Status.SKIPPED), key=str)
            report.reason = (f"{failed} {what}" if direct or not via
                             else f"{failed} {what} (upstream, via {', '.join(via)})")
            self._emit(RunEvent(NODE_FINISHED, node, Status.SKIPPED, message=report.reason,
                                time=time.monotonic(), report=report))

    def _mark_unreached(self) -> None:
        if self.token.cancelled:
            reason = f"run cancelled ({self.token.reason})"
        elif self.first_failure is not None:
            reason = f"run stopped after {self.first_failure} failed (fail-fast)"
        else:
            reason = "not reached"
        for node in self.order:
            report = self.report.nodes[node]
            if report.status is Status.PENDING:
                report.status = Status.NOT_STARTED
                report.reason = reason
                self._emit(RunEvent(NODE_FINISHED, node, Status.NOT_STARTED, message=reason,
                                    time=time.monotonic(), report=report))

    def _chain_lengths(self, order: list[Hashable]) -> dict[Hashable, int]:
        """Nodes on the longest chain from each node to the end (itself included)."""
        length: dict[Hashable, int] = {}
        for node in reversed(order):
            length[node] = 1 + max((length[d] for d in self.dependents(node)), default=0)
        return length

    # -- events and signals -----------------------------------------------------------------

    def _emit(self, event: RunEvent) -> None:
        if self.on_event is None:
            return
        with self.event_lock:
            try:
                self.on_event(event)
            except Exception as exc:  # noqa: BLE001
                # A broken progress display must not abandon blocks half-applied: stop
                # calling it, finish the run, and say so in the report.
                self.on_event = None
                self.report.warnings.append(
                    f"on_event callback failed and was disabled: {type(exc).__name__}: {exc}")

    def _phase(self, node: Hashable, text: str) -> None:
        self.report.nodes[node].phase = text
        self._emit(RunEvent(PHASE, node, Status.RUNNING, message=text, time=time.monotonic(),
                            report=self.report.nodes[node]))

    def _install_signal_handlers(self) -> dict[int, Any]:
        if not self.handle_signals or threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, self._on_signal)
        return previous

    def _restore_signal_handlers(self, previous: dict[int, Any]) -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        # Only flags here: the main loop emits the event (a handler may interrupt _emit).
        self.signals_seen += 1
        self.token.cancel(f"received {signal.Signals(signum).name}")

    def _announce_cancel(self) -> None:
        if self.token.cancelled and not self.cancel_announced:
            self.cancel_announced = True
            self.signals_announced = self.signals_seen
            self._emit(RunEvent(CANCEL_REQUESTED, message=(
                f"{self.token.reason}: stopping — waiting for {len(self.running)} running "
                + ("block" if len(self.running) == 1 else "blocks") + " to finish"),
                time=time.monotonic()))
        elif self.signals_seen > self.signals_announced:
            self.signals_announced = self.signals_seen
            self._emit(RunEvent(CANCEL_REQUESTED, message=(
                "signal again: still waiting for the running blocks to stop cleanly"),
                time=time.monotonic()))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InfrablocksError | Cancelled):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
