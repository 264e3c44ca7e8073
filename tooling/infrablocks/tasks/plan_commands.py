"""`doit plan` (one cross-block plan of a whole closure, optionally saved) and `doit apply FILE`.

Thin on purpose: parse arguments, call :mod:`infrablocks.planning`, print with rich.
"""

from __future__ import annotations

from typing import Any

from infrablocks.tasks._command import command_task, flag, option, output_file

DEFAULT_JOBS = 4
_JOBS = option("jobs", type=int, default=DEFAULT_JOBS, min=1,
               help=f"blocks planned (--out) or applied at once (default {DEFAULT_JOBS})")
_LOCK_TIMEOUT = option("lock_timeout", type=float, default=300.0, min=0,
                       help="seconds to wait for a block's lock another command holds "
                            "(default 300; 0: refuse at once)")


def task_plan() -> dict[str, Any]:
    return command_task(
        "plan", _plan, positional="targets",
        doc="one plan of every block targets need, deployed or not, without changing anything",
        params=[option("env", help="environment (default: defaults.environment in blocks.toml)"),
                flag("json", help="print the plan as JSON"),
                output_file("out", help="save the reviewed plan to this file for `doit apply` "
                                        "(it holds secrets, like Terraform's plan files)",
                            example="reviewed.plan"),
                _JOBS])


def task_apply() -> dict[str, Any]:
    return command_task(
        "apply", _apply, positional="plan_file",
        doc="apply a plan saved by `doit plan --out FILE`, exactly as reviewed",
        params=[_JOBS,
                flag("keep_going", help="after a failure, still apply everything not downstream"),
                output_file("report", help="write the run report (per-block status) as JSON",
                            example="report.json"),
                _LOCK_TIMEOUT])


def _plan(targets: list[str], env: str | None, json: bool, out: str | None, jobs: int) -> None:
    from pathlib import Path

    from infrablocks.errors import UsageError
    from infrablocks.planning.crossplan import plan_environment
    from infrablocks.tasks._plan_output import print_environment_plan
    from infrablocks.tasks._workspace import command_workspace

    if not targets:
        raise UsageError("name the blocks to plan", hint="e.g. doit plan microservice01 --env "
                                                         "staging")
    workspace = command_workspace()
    environment = workspace.environment_name(env)
    workspace.check_known_environment(environment)
    result = plan_environment(workspace, targets, environment, out=Path(out) if out else None,
                              jobs=int(jobs))
    print_environment_plan(result, as_json=json)


def _apply(plan_file: list[str], jobs: int, keep_going: bool, report: str | None,
           lock_timeout: float) -> int:
    from pathlib import Path

    from infrablocks.errors import UsageError
    from infrablocks.planning.apply import apply_plan_file
    from infrablocks.tasks._deploy_output import (
        print_left_behind,
        print_run_summary,
        progress_for,
        write_report,
    )
    from infrablocks.tasks._plan_output import (
        announce_apply,
        print_not_planned,
        warn_if_readable,
    )
    from infrablocks.tasks._workspace import command_workspace

    if len(plan_file) != 1:
        raise UsageError(f"doit apply takes exactly one plan file, got {len(plan_file)}",
                         hint="save one with doit plan TARGET --env ENV --out FILE")
    if not plan_file[0].strip():
        raise UsageError("doit apply: an empty argument where the plan file goes (an unset "
                         "shell variable?)",
                         hint="name the file doit plan TARGET --env ENV --out FILE wrote")
    path = Path(plan_file[0])
    workspace = command_workspace()

    def opened(reviewed: Any) -> None:   # read as a saved plan: now its mode matters
        warn_if_readable(path)
        announce_apply(reviewed)

    with progress_for(f"apply {path.name}") as progress:
        reviewed, run = apply_plan_file(workspace, path, jobs=int(jobs), keep_going=keep_going,
                                        on_event=progress, on_open=opened,
                                        lock_timeout=float(lock_timeout))
    environment = reviewed.environment
    print_run_summary(run, f"apply {path.name} in {environment}")
    print_left_behind(workspace, environment, run)
    if run.ok:
        print_not_planned(reviewed)
    write_report(report, {"command": "apply", "environment": environment,
                          "plan_file": str(path), "run": run.to_json()})
    return 0 if run.ok else 1
