"""`doit upgrade`, `doit test-create`, `doit test-upgrade`: rolling upgrades and their CI tests.

Thin on purpose: parse arguments, call :mod:`infrablocks.rolling`, print.
"""

from __future__ import annotations

from typing import Any

from infrablocks.tasks._command import command_task, flag, option, output_file
from infrablocks.validators import register_validator

# `doit check` validates every block version's rolling declaration (imported only when it runs)
register_validator("rolling", "infrablocks.rolling.declaration:rolling_check")

_ENV = option("env", help="environment (default: defaults.environment in blocks.toml)")
_PLATFORM = option("platform", help="platform of the throwaway environment: a name from "
                                    "blocks.toml [platforms], or local (default: "
                                    "defaults.platform, else local)")


def task_upgrade() -> dict[str, Any]:
    return command_task(
        "upgrade", _upgrade, positional="targets",
        doc="upgrade a deployed block to a newer version, one instance at a time with health "
            "gates (zero downtime)",
        params=[_ENV,
                option("to", help="target version (default: the newest the environment "
                                  "accepts, or its pin)"),
                flag("dry_run", help="print the rolling plan (units, steps, gates); change "
                                     "nothing"),
                flag("resume", help="continue an interrupted or failed upgrade from its "
                                    "journal"),
                flag("rollback_failed", help="put the unit whose gate failed back on the old "
                                             "version"),
                flag("yes", help="do not ask for confirmation"),
                flag("json", help="print the outcome as JSON"),
                option("lock_timeout", type=float, default=300.0, min=0,
                       help="seconds to wait for the block's lock another command holds "
                            "(default 300; 0: refuse at once)")])


def task_test_create() -> dict[str, Any]:
    return {"basename": "test-create", **command_task(
        "test-create", _test_create, positional="targets",
        doc="CI: throwaway environment with the targets' resolution, block tests, destroy always",
        params=[option("jobs", type=int, default=4, min=1,
                       help="blocks run at once (default 4)"),
                output_file("report", help="write the run report as JSON", example="report.json"),
                option("env", help="name of the throwaway environment (must start with t-; "
                                   "default: random)"), _PLATFORM])}


def task_test_upgrade() -> dict[str, Any]:
    return {"basename": "test-upgrade", **command_task(
        "test-upgrade", _test_upgrade, positional="targets",
        doc="CI: throwaway environment at the block's previous version, data written, rolling "
            "upgrade to the current one, block tests and data checked, destroy always",
        params=[option("from", help="version to start from (default: the newest below the "
                                    "current one that the current one's resolution allows)"),
                option("to", help="version to upgrade to (default: the newest)"),
                option("env", help="name of the throwaway environment (must start with t-; "
                                   "default: random)"), _PLATFORM,
                flag("json", help="print the outcome as JSON")])}


# -- implementations ------------------------------------------------------------------------------


def _one_block(targets: list[str], command: str) -> str:
    from infrablocks.errors import UsageError

    if len(targets) != 1:
        raise UsageError(f"doit {command} takes exactly one block, got {len(targets)}",
                         hint=f"e.g. doit {command} base")
    return targets[0]


def _upgrade(targets: list[str], env: str | None, to: str | None, dry_run: bool,
             resume: bool, rollback_failed: bool, yes: bool, json: bool,
             lock_timeout: float) -> int:
    import sys

    from infrablocks.errors import UsageError
    from infrablocks.rolling.faults import FaultHook
    from infrablocks.tasks._upgrade_output import Printer
    from infrablocks.tasks._workspace import command_workspace
    from infrablocks.upgrade.engine import UpgradeHalted, upgrade

    block = _one_block(targets, "upgrade")
    workspace = command_workspace()
    environment = workspace.environment_name(env)
    workspace.check_known_environment(environment)
    printer = Printer(as_json=json)
    if not (dry_run or yes or resume or rollback_failed):
        preview = upgrade(workspace, block, environment, to=to, dry_run=True)
        if preview.mode == "up-to-date":
            printer.outcome(preview)
            return 0
        printer.outcome(preview)
        if not sys.stdin.isatty():
            raise UsageError("refusing to upgrade without confirmation on a non-interactive "
                             "terminal", hint="pass --yes (or --dry-run to only see the plan)")
        from rich.prompt import Confirm

        if not Confirm.ask(f"upgrade {block} in {environment}?", default=False):
            return 1
        to = preview.to_version
    try:
        outcome = upgrade(workspace, block, environment, to=to, dry_run=dry_run,
                          resume=resume, rollback_failed=rollback_failed, say=printer.say,
                          lock_timeout=float(lock_timeout),
                          fault=FaultHook.from_environ())  # the test hook, read here only
    except UpgradeHalted as exc:
        printer.halted(exc)
        raise
    printer.outcome(outcome)
    return 0


def _test_create(targets: list[str], jobs: int, report: str | None, env: str | None,
                 platform: str | None) -> int:
    """What `doit env` does (reusing its printer), with an optional environment name."""
    from infrablocks.deploy.orchestrate import run_test_environment
    from infrablocks.environments import is_ephemeral
    from infrablocks.errors import UsageError
    from infrablocks.resolve import resolve
    from infrablocks.tasks._deploy_output import TestEnvironmentPrinter, write_report
    from infrablocks.tasks._workspace import command_workspace

    if not targets:
        raise UsageError("name the blocks to test", hint="e.g. doit test-create microservice01")
    if env is not None and not is_ephemeral(env):
        raise UsageError(f"test-create runs in a throwaway environment; {env!r} does not start "
                         "with t-")
    workspace = command_workspace()
    workspace.choose_platform(platform)
    resolve(workspace.registry, targets)  # bad targets fail here, with nothing to clean up
    printer = TestEnvironmentPrinter(targets)
    outcome = run_test_environment(workspace, targets, jobs=int(jobs), on_event=printer.sink,
                                   announce=printer.announce, environment=env)
    printer.finish(outcome)
    write_report(report, printer.report_document(outcome))
    return 0 if outcome.ok else 1


def _test_upgrade(targets: list[str], to: str | None, env: str | None, platform: str | None,
                  json: bool, **values: Any) -> int:
    from infrablocks.tasks._upgrade_output import Printer
    from infrablocks.tasks._workspace import command_workspace
    from infrablocks.upgrade.testing import run_test_upgrade

    block = _one_block(targets, "test-upgrade")
    workspace = command_workspace()
    workspace.choose_platform(platform)
    printer = Printer(as_json=json)
    result = run_test_upgrade(workspace, block, from_version=values.get("from"),
                              to_version=to, environment=env, say=printer.say,
                              echo_tests=not json)
    printer.test_upgrade(result)
    return 0 if result.ok else 1
