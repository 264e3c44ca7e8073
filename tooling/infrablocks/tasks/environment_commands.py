"""`doit create`, `destroy`, `env`, `status`, `outputs`: environments of blocks (`plan` and
`apply` are in plan_commands).

Thin on purpose: parse arguments, call :mod:`infrablocks.deploy`, print with rich.
"""

from __future__ import annotations

from typing import Any

from infrablocks.tasks._command import command_task, flag, option, output_file

DEFAULT_JOBS = 4
_ENV = option("env", help="environment (default: defaults.environment in blocks.toml)")
_JOBS = option("jobs", type=int, default=DEFAULT_JOBS, min=1,
               help=f"blocks run at once (default {DEFAULT_JOBS})")
_KEEP_GOING = flag("keep_going", help="after a failure, still run everything not downstream")
_REPORT = output_file("report", help="write the run report (per-block status, durations) as JSON",
                      example="report.json")
_PLATFORM = option("platform", help="platform of the throwaway environment: a name from "
                                    "blocks.toml [platforms], or local (default: "
                                    "defaults.platform, else local)")
_LOCK_TIMEOUT = option("lock_timeout", type=float, default=300.0, min=0,
                       help="seconds to wait for a block's lock another command holds "
                            "(default 300; 0: refuse at once)")
_YES = flag("yes", help="do not ask for confirmation")


def task_create() -> dict[str, Any]:
    return command_task(
        "create", _create, positional="targets",
        doc="create or update the blocks targets need in an environment, dependencies first",
        params=[_ENV, _JOBS, _KEEP_GOING, _REPORT, _LOCK_TIMEOUT, _YES])


def task_destroy() -> dict[str, Any]:
    return command_task(
        "destroy", _destroy, positional="targets",
        doc="destroy blocks in an environment, dependents first",
        params=[_ENV, _JOBS, _KEEP_GOING, _REPORT, _LOCK_TIMEOUT,
                flag("with_dependents", help="also destroy deployed blocks that depend on them"),
                _YES])


def task_env() -> dict[str, Any]:
    return command_task(
        "env", _env, positional="targets",
        doc="throwaway environment: create what targets need, run their block tests, destroy",
        params=[_JOBS, _KEEP_GOING, _REPORT, _PLATFORM,
                flag("keep", help="keep the environment afterwards (prints how to destroy it)")])


def task_status() -> dict[str, Any]:
    return command_task(
        "status", _status,
        doc="deployed blocks per environment: versions, when, by whom, drift, newer versions",
        params=[option("env", help="only this environment (default: all with state)"),
                flag("json", help="print the status as JSON"),
                flag("no_drift", help="skip the drift check (no terraform plan)")])


def task_outputs() -> dict[str, Any]:
    return command_task(
        "outputs", _outputs, positional="targets",
        doc="a deployed block's outputs (sensitive values masked)",
        params=[_ENV, flag("json", help="print the outputs as JSON (still masked)")])


# -- implementations ------------------------------------------------------------------------------


def _one_target(targets: list[str], command: str) -> str:
    from infrablocks.errors import UsageError

    if len(targets) != 1:
        raise UsageError(f"doit {command} takes exactly one block, got {len(targets)}",
                         hint=f"e.g. doit {command} base --env prod")
    return targets[0]


def _create(targets: list[str], env: str | None, jobs: int, keep_going: bool,
            report: str | None, lock_timeout: float, yes: bool) -> int:
    from infrablocks.deploy.orchestrate import create
    from infrablocks.environments import is_ephemeral
    from infrablocks.tasks._deploy_output import (
        err_console,
        print_create_preview,
        print_left_behind,
        print_run_summary,
        progress_for,
        write_report,
    )
    from infrablocks.tasks._workspace import command_workspace

    workspace = command_workspace()
    environment = workspace.environment_name(env)
    workspace.check_known_environment(environment)
    shown: dict[str, Any] = {}

    def confirm(preview: Any) -> bool:
        shown["preview"] = preview.to_json()
        print_create_preview(preview)
        if yes or not preview.changes:
            return True
        return _ask(f"apply these changes to {environment}?", "create")

    with progress_for(f"create in {environment}") as progress:
        _resolution, run = create(workspace, targets, environment, jobs=int(jobs),
                                  keep_going=keep_going, on_event=progress,
                                  confirm=None if is_ephemeral(environment) else confirm,
                                  lock_timeout=float(lock_timeout))
    if run is None:
        err_console.print("nothing applied")
        return 1
    print_run_summary(run, f"create in {environment}")
    print_left_behind(workspace, environment, run)
    if run.cancelled:
        err_console.print("Terraform stopped cleanly: run the same `doit create` again to "
                          "finish, or `doit destroy` what was created")
    write_report(report, {"command": "create", "environment": environment, **shown,
                          "run": run.to_json()})
    return 0 if run.ok else 1


def _ask(question: str, command: str) -> bool:
    """Ask on the terminal; refuse (UsageError) when stdin is not one."""
    import sys

    from rich.prompt import Confirm

    from infrablocks.errors import UsageError

    if not sys.stdin.isatty():
        raise UsageError(f"refusing to {command} without confirmation on a non-interactive "
                         "terminal", hint="pass --yes")
    return Confirm.ask(question, default=False)


def _destroy(targets: list[str], env: str | None, jobs: int, keep_going: bool,
             report: str | None, lock_timeout: float, with_dependents: bool,
             yes: bool) -> int:
    from infrablocks.deploy.orchestrate import destroy
    from infrablocks.errors import UsageError
    from infrablocks.tasks._console import make_console
    from infrablocks.tasks._deploy_output import (
        print_left_behind,
        print_run_summary,
        progress_for,
        write_report,
    )
    from infrablocks.tasks._workspace import command_workspace

    if not targets:
        raise UsageError("name the blocks to destroy", hint="e.g. doit destroy nomad --env prod")
    workspace = command_workspace()
    environment = workspace.environment_name(env)
    workspace.check_known_environment(environment)
    console = make_console(soft_wrap=False)

    def confirm(order: list[str]) -> bool:
        console.print(f"will destroy in [bold]{environment}[/], in this order: "
                      + " → ".join(order))
        if yes:
            return True
        return _ask("destroy?", "destroy")

    with progress_for(f"destroy in {environment}") as progress:
        run = destroy(workspace, targets, environment, with_dependents=with_dependents,
                      jobs=int(jobs), keep_going=keep_going, on_event=progress, confirm=confirm,
                      lock_timeout=float(lock_timeout))
    if run is None:
        console.print("nothing destroyed")
        return 1
    print_run_summary(run, f"destroy in {environment}")
    print_left_behind(workspace, environment, run)
    write_report(report, {"command": "destroy", "environment": environment,
                          "run": run.to_json()})
    return 0 if run.ok else 1


def _env(targets: list[str], jobs: int, keep_going: bool, report: str | None,
         platform: str | None, keep: bool) -> int:
    from infrablocks.deploy.orchestrate import run_test_environment
    from infrablocks.errors import UsageError
    from infrablocks.tasks._deploy_output import TestEnvironmentPrinter, write_report
    from infrablocks.tasks._workspace import command_workspace

    if not targets:
        raise UsageError("name the blocks to test", hint="e.g. doit env microservice01")
    workspace = command_workspace()
    workspace.choose_platform(platform)
    # Resolve before creating anything: bad targets fail here, with nothing to clean up.
    from infrablocks.resolve import resolve

    resolve(workspace.registry, targets)
    printer = TestEnvironmentPrinter(targets)
    outcome = run_test_environment(workspace, targets, keep=keep, jobs=int(jobs),
                                   keep_going=keep_going, on_event=printer.sink,
                                   announce=printer.announce)
    printer.finish(outcome)
    write_report(report, printer.report_document(outcome))
    return 0 if outcome.ok else 1


def _status(env: str | None, json: bool, no_drift: bool) -> int | None:
    from infrablocks.deploy.status import environment_status
    from infrablocks.tasks._deploy_output import print_status
    from infrablocks.tasks._workspace import command_workspace

    workspace = command_workspace()
    environments = [env] if env else sorted(set(workspace.backend.list_environments())
                                            | set(workspace.registry.environments))
    if env:
        workspace.check_known_environment(env)
    statuses = [environment_status(workspace, name, drift=not no_drift) for name in environments]
    print_status(statuses, as_json=json)
    return None


def _outputs(targets: list[str], env: str | None, json: bool) -> int | None:
    from infrablocks.deploy.block_ops import read_block_outputs
    from infrablocks.tasks._deploy_output import print_outputs
    from infrablocks.tasks._workspace import command_workspace

    block = _one_target(targets, "outputs")
    workspace = command_workspace()
    workspace.registry.block(block)
    environment = workspace.environment_name(env)
    workspace.check_known_environment(environment)
    print_outputs(block, environment, read_block_outputs(workspace, environment, block),
                  as_json=json)
    return None
