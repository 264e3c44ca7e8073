"""The thin layer between doit and the library: argument parsing and error reporting.

doit stops reading options at the first positional argument (``doit resolve a --json`` would
hand ``--json`` over as a positional). Users expect options anywhere, so each command takes its
positionals raw and re-reads any options among them here, with the same option table doit uses
for ``doit help``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from infrablocks.errors import InfrablocksError, UsageError


def option(name: str, *, help: str, type: Any = str, default: Any = None, short: str = "",
           choices: list[str] | None = None) -> dict[str, Any]:
    """A doit ``params`` entry; the long flag is ``--name`` with dashes."""
    spec: dict[str, Any] = {"name": name, "long": name.replace("_", "-"), "type": type,
                            "default": default, "help": help}
    if short:
        spec["short"] = short
    if choices:
        spec["choices"] = [(c, "") for c in choices]
    return spec


def flag(name: str, *, help: str, short: str = "") -> dict[str, Any]:
    return option(name, help=help, type=bool, default=False, short=short)


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit(2) itself
        raise UsageError(f"doit {self.prog}: {message}", hint=f"see `doit help {self.prog}`")


def _reparse(command: str, params: list[dict[str, Any]], positional: list[str],
             values: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    parser = _ArgumentParser(prog=command, add_help=False)
    for spec in params:
        flags = [f"--{spec['long']}"] + ([f"-{spec['short']}"] if spec.get("short") else [])
        if spec["type"] is bool:
            parser.add_argument(*flags, dest=spec["name"], action="store_true", default=None)
        else:
            choices = [c for c, _ in spec["choices"]] if spec.get("choices") else None
            parser.add_argument(*flags, dest=spec["name"], default=None, choices=choices)
    parser.add_argument("positional", nargs="*")
    namespace = parser.parse_intermixed_args(positional)
    merged = dict(values)
    for spec in params:
        late = getattr(namespace, spec["name"])
        if late is not None:
            merged[spec["name"]] = spec["type"](late) if spec["type"] not in (bool, str) else late
    return list(namespace.positional), merged


def run_command(command: str, func: Callable[..., int | None], params: list[dict[str, Any]],
                positional: list[str] | None, values: dict[str, Any]) -> None:
    """Run ``func`` with parsed arguments; turn user errors into a message and an exit code."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False)
    try:
        args, kwargs = _reparse(command, params, list(positional or []), values)
        rc = func(args, **kwargs) if positional is not None else func(**kwargs)
    except InfrablocksError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]")
        sys.exit(130)
    if rc:
        sys.exit(int(rc))


def command_task(name: str, func: Callable[..., int | None], *, doc: str,
                 params: list[dict[str, Any]] | None = None,
                 positional: str | None = None) -> dict[str, Any]:
    """A doit task dict for a user command.

    ``func(positional_args, **options)`` when ``positional`` names the positional list,
    ``func(**options)`` otherwise. It returns an exit code (or None for 0).
    """
    params = list(params or [])

    def action(pos_arg_value: list[str] | None = None, **values: Any) -> None:
        run_command(name, func, params, pos_arg_value, values)

    task: dict[str, Any] = {
        "doc": doc,
        "params": params,
        "uptodate": [False],
        "verbosity": 2,
    }
    if positional:
        task["pos_arg"] = positional
        task["actions"] = [(_positional_action, [name, func, params, positional])]
    else:
        task["actions"] = [(action,)]
    return task


def _positional_action(name: str, func: Callable[..., int | None], params: list[dict[str, Any]],
                       positional: str, **values: Any) -> None:
    pos = values.pop(positional, None) or []
    run_command(name, func, params, pos, values)
