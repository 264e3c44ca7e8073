"""The parallel DAG runner (dependency order, bounded parallelism, fail-fast / keep-going,
cancellation), its run report, and a live progress display.

    from infrablocks.runner import run_dag, Result, LiveProgress
    report = run_dag(graph, work, jobs=4, keep_going=False, on_event=progress)

``graph`` is a ``networkx.DiGraph`` or a :class:`Dag` (``Dag({node: dependencies})``, for
callers that need nothing else from networkx: its import costs ~0.08 s). ``LiveProgress`` is
imported lazily (``infrablocks.runner.progress``) by whoever renders; this package itself
imports only the standard library (networkx only in ``RunReport.critical_path``).
See docs/state-and-runner.md.
"""

from infrablocks.runner.cancel import Cancelled, CancelToken
from infrablocks.runner.dag import (
    CANCEL_REQUESTED,
    NODE_FINISHED,
    NODE_STARTED,
    PHASE,
    RUN_FINISHED,
    RUN_STARTED,
    Dag,
    RunEvent,
    Work,
    run_dag,
)
from infrablocks.runner.report import NodeReport, Result, RunReport, Status

__all__ = [
    "CANCEL_REQUESTED", "NODE_FINISHED", "NODE_STARTED", "PHASE", "RUN_FINISHED", "RUN_STARTED",
    "CancelToken", "Cancelled", "Dag", "NodeReport", "Result", "RunEvent", "RunReport", "Status",
    "Work", "run_dag",
]
