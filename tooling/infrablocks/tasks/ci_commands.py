"""`doit affected` and `doit ci-pipeline`: what a change affects, and the CI workflow testing it.

Thin: parse arguments, call :mod:`infrablocks.ci`, print. See docs/ci.md.
"""

from __future__ import annotations

from typing import Any

from infrablocks.tasks._command import command_task, flag, option, output_file

_BASE = option("base", help="compare with this revision (default: the merge base with the "
                            "default branch)")
_HEAD = option("head", help="this revision (default: the working tree, uncommitted and "
                            "untracked files included)")


def task_affected() -> dict[str, Any]:
    return command_task(
        "affected", _affected,
        doc="block versions (and images) a change affects, and why (doit affected --base main)",
        params=[_BASE, _HEAD, flag("json", help="print the result as JSON"),
                flag("dependents", help="include dependents of affected blocks (the default)"),
                flag("no_dependents", help="only the directly affected block versions")])


def task_ci_pipeline() -> dict[str, Any]:
    return {"basename": "ci-pipeline", **command_task(
        "ci-pipeline", _ci_pipeline,
        doc="write a GitHub Actions workflow testing the affected blocks on many runners",
        params=[_BASE, _HEAD,
                output_file("output", help="write the workflow to this file (default: stdout)",
                            example=".github/workflows/infrablocks.yml"),
                option("format", default="workflow", choices=["workflow", "matrix"],
                       help="workflow (default) or matrix: the jobs as JSON strategy "
                            "matrices by stage, for a static workflow"),
                option("deploy", help="also deploy to these persistent environments after "
                                      "every test passed (comma-separated, e.g. staging)"),
                flag("check", help="with --output: fail if the file differs from what would "
                                   "be generated (CI keeps a committed workflow current)")])}


def _affected(base: str | None, head: str | None, json: bool, dependents: bool = False,
              no_dependents: bool = False) -> int | None:
    import json as json_module

    from infrablocks.ci.affected import find_affected
    from infrablocks.errors import UsageError
    from infrablocks.paths import find_repo_root
    from infrablocks.tasks._console import counted, make_console

    if dependents and no_dependents:
        raise UsageError("doit affected: --dependents and --no-dependents exclude each other")
    result = find_affected(find_repo_root(), base, head, dependents=not no_dependents)
    if json:
        print(json_module.dumps(result.to_json(), indent=2))
        return None
    console = make_console()
    what = f"{result.base[:12]}..{(result.head or 'working tree')[:12]}"
    console.print(f"Changes {what}: {counted(len(result.changed), 'file')}")
    if not result.versions:
        console.print("[green]no block version is affected[/]")
    for item in result.versions.values():
        how = "" if item.direct else " [dim](dependent)[/]"
        console.print(f"  [bold]{item.block}[/] [green]{item.version}[/]{how}")
        for reason in item.reasons:
            console.print(f"      [dim]← {reason}[/]")
    for label, values in (("images changed", result.images),
                          ("block versions removed", result.removed_versions),
                          ("images removed", result.removed_images)):
        if values:
            console.print(f"{label}: {', '.join(values)}")
    if result.other_files:
        shown = result.other_files[:8]
        more = f" and {len(result.other_files) - 8} more" if len(result.other_files) > 8 else ""
        console.print(f"[dim]other changes (no block affected): {', '.join(shown)}{more}[/]")
    return None


def _ci_pipeline(base: str | None, head: str | None, output: str | None,
                 deploy: str | None, check: bool, format: str = "workflow") -> int | None:
    import json as json_module
    from pathlib import Path

    from infrablocks.ci.affected import find_affected
    from infrablocks.ci.pipeline import PipelineOptions, matrix, render
    from infrablocks.errors import InfrablocksError, UsageError
    from infrablocks.paths import find_repo_root
    from infrablocks.tasks._console import counted, make_console
    from infrablocks.tasks._output_files import write_output_file

    if check and not output:
        raise UsageError("doit ci-pipeline: --check needs --output FILE (the file to compare)")
    environments = tuple(e.strip() for e in (deploy or "").split(",") if e.strip())
    repo_root = find_repo_root()
    result = find_affected(repo_root, base, head)
    if format == "matrix":
        if environments:
            raise UsageError("doit ci-pipeline: --deploy goes with --format workflow")
        text = json_module.dumps(matrix(result), separators=(",", ":")) + "\n"
    else:
        text = render(result, PipelineOptions(deploy_environments=environments))
    if not output:
        print(text, end="")
        return None
    path = Path(output)
    console = make_console(stderr=True)
    if check:
        current = path.read_text() if path.is_file() else None
        if current != text:
            raise InfrablocksError(
                f"{output} is not the workflow this change needs",
                hint=f"regenerate it: doit ci-pipeline --base {base or 'REF'} --output {output}")
        console.print(f"[green]ok[/] {output} is current")
        return None
    write_output_file(path, text)   # its directory was checked with the option: never made
    console.print(f"wrote {output}: {counted(len(result.versions), 'block version')}, "
                  f"{counted(len(result.images), 'image')}")
    return None
