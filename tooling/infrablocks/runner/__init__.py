"""The parallel DAG runner (dependency order, bounded parallelism, fail-fast / keep-going,
cancellation), its run report, and a live progress display.

    from infrablocks.runner import run_dag, Result, LiveProgress
    report = run_dag(graph, work, jobs=4, keep_going=False, on_event=progress)

``LiveProgress`` is imported lazily (``infrablocks.runner.progress``) by whoever renders; this
package itself imports only the standard library (networkx is imported when ``run_dag`` runs).
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
    RunEvent,
    Work,
    run_dag,
)
from infrablocks.runner.report import NodeReport, Result, RunReport, Status

__all__ = [
    "CANCEL_REQUESTED", "NODE_FINISHED", "NODE_STARTED", "PHASE", "RUN_FINISHED", "RUN_STARTED",
    "CancelToken", "Cancelled", "NodeReport", "Result", "RunEvent", "RunReport", "Status",
    "Work", "run_dag",
]
