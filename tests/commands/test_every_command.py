"""Every command, whatever it is: a closed pipe ends it quietly, every numeric option is
checked (exit 2, the option named), and output that is not a terminal holds whole values.

The commands are discovered from the task list (``infrablocks.tasks``, checked against ``doit
list``), so a new command is covered as soon as it exists. ``INVOCATIONS`` gives the known ones
arguments that make them do their work and print; a command it does not know yet runs bare
(``doit NAME``), which still has to end without a traceback. Invocations that run Terraform
(``terraform_data`` only: no instances) are marked slow.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import struct
import subprocess
import termios
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.commands.conftest import (
    DOIT,
    IMAGE_USER,
    LONG_ENV,
    LONG_OUTPUT,
    LONG_TAG,
    TINY,
    environment_for_doit,
    every_command_repo,
    register_long_tagged_image,
    run_doit,
    write_deployed_tiny,
)

SIGPIPE_DEATH = -signal.SIGPIPE   # how subprocess reports "killed by SIGPIPE" (a shell: 141)
TIMEOUT = 300


def _discover() -> dict[str, Any]:
    """name → Command for every task the doit commands define."""
    import infrablocks.tasks as tasks
    from infrablocks.tasks._command import COMMANDS

    for name in tasks.__all__:
        if name.startswith("task_"):
            getattr(tasks, name)()
    return dict(COMMANDS)


COMMANDS = _discover()


@dataclass(frozen=True)
class Invocation:
    args: tuple[str, ...]
    prepare: Callable[[Path], Any] | None = None     # fills the repository first
    setup: tuple[tuple[str, ...], ...] = ()         # doit commands run first
    terraform: bool = False                         # runs Terraform: slow


def _deployed(repo: Path) -> str:
    write_deployed_tiny(repo)
    return register_long_tagged_image(repo)


_CREATE = ("create", TINY, "--env", LONG_ENV, "--yes")   # a persistent environment asks
INVOCATIONS: dict[str, Invocation] = {
    "check": Invocation(("check",)),
    "resolve": Invocation(("resolve", TINY, IMAGE_USER, "microservice01")),
    "graph": Invocation(("graph",)),
    "status": Invocation(("status", "--no-drift"), prepare=_deployed),
    "outputs": Invocation(("outputs", TINY, "--env", LONG_ENV), prepare=_deployed),
    "cloud": Invocation(("cloud",), prepare=_deployed),
    "images": Invocation(("images",), prepare=_deployed),
    "image": Invocation(("image", "--verify", "etcd@1.1.0")),   # not registered: not booted
    "affected": Invocation(("affected", "--base", "HEAD")),
    "ci-pipeline": Invocation(("ci-pipeline", "--base", "HEAD")),
    "create": Invocation(_CREATE, terraform=True),
    "plan": Invocation(("plan", TINY, "--env", LONG_ENV), terraform=True),
    "apply": Invocation(("apply", "tiny.plan"),
                        setup=(("plan", TINY, "--env", LONG_ENV, "--out", "tiny.plan"),),
                        terraform=True),
    "destroy": Invocation(("destroy", TINY, "--env", LONG_ENV, "--yes"), setup=(_CREATE,),
                          terraform=True),
    "upgrade": Invocation(("upgrade", TINY, "--env", LONG_ENV, "--dry-run"),
                          setup=(("create", f"{TINY}@1.0.0", "--env", LONG_ENV, "--yes"),),
                          terraform=True),
    "env": Invocation(("env", TINY), terraform=True),
    "test-create": Invocation(("test-create", TINY), terraform=True),
    "test-upgrade": Invocation(("test-upgrade", TINY), terraform=True),
}
# doit's own commands, also piped into `head` and `grep`
BUILTINS: dict[str, Invocation] = {"list": Invocation(("list",)),
                                   "help create": Invocation(("help", "create"))}


def _invocation(name: str) -> Invocation:
    return INVOCATIONS.get(name) or BUILTINS.get(name) or Invocation((name,))


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(name, id=name, marks=[pytest.mark.slow, pytest.mark.integration]
                         if _invocation(name).terraform else [])
            for name in names]


def _repo(tmp_path: Path, name: str) -> Path:
    """A fresh fixture repository with ``name``'s invocation prepared and set up."""
    return _prepared_repo(tmp_path, name)[0]


def _prepared_repo(tmp_path: Path, name: str) -> tuple[Path, Any]:
    """The repository and what the invocation's ``prepare`` returned."""
    invocation = _invocation(name)
    repo = every_command_repo(tmp_path / "repo")
    prepared = invocation.prepare(repo) if invocation.prepare is not None else None
    for args in invocation.setup:
        done = run_doit(repo, *args, timeout=TIMEOUT)
        assert done.returncode == 0, f"setup doit {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return repo, prepared


def _run(repo: Path, args: tuple[str, ...], *, stdout: Any, stderr: Any, stdin: Any = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DOIT), *args], cwd=repo, env=env or environment_for_doit(),
                          stdout=stdout, stderr=stderr, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL if stdin is None else stdin, check=False)


def _closed_pipe() -> int:
    """The writing end of a pipe whose reader is already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def test_discovery_finds_every_command_doit_lists(tmp_path: Path) -> None:
    listed = run_doit(every_command_repo(tmp_path / "repo"), "list")
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert names == set(COMMANDS), "every doit task is made with command_task()"
    assert {"create", "resolve", "status", "images", "cloud"} <= names


# -- a closed pipe ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params(sorted(COMMANDS) + sorted(BUILTINS)))
def test_a_closed_pipe_ends_the_command_quietly(name: str, tmp_path: Path) -> None:
    """`doit … | head -1`: no traceback; a command that succeeds and prints ends as `seq`
    does (killed by SIGPIPE, status 141); one that fails keeps its own exit status."""
    args = _invocation(name).args
    normal = _run(_repo(tmp_path / "normal", name), args, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE)
    assert "Traceback" not in normal.stdout + normal.stderr, normal.stderr
    if name in INVOCATIONS or name in BUILTINS:
        assert normal.returncode == 0 and normal.stdout.strip(), (
            f"doit {' '.join(args)} should succeed and print:\n{normal.stdout}{normal.stderr}")

    pipe = _closed_pipe()
    try:  # stdout closed: the command still finishes its work, then ends quietly
        closed = _run(_repo(tmp_path / "stdout", name), args, stdout=pipe,
                      stderr=subprocess.PIPE)
    finally:
        os.close(pipe)
    assert "Traceback" not in closed.stderr and "Exception ignored" not in closed.stderr, \
        closed.stderr
    expected = SIGPIPE_DEATH if normal.returncode == 0 and normal.stdout else normal.returncode
    assert closed.returncode == expected, closed.stderr

    pipe = _closed_pipe()
    try:  # `2>&1 | head`: errors and progress meet the closed pipe too
        both = _run(_repo(tmp_path / "both", name), args, stdout=pipe, stderr=pipe)
    finally:
        os.close(pipe)
    wrote = normal.stdout or normal.stderr
    assert both.returncode == (SIGPIPE_DEATH if normal.returncode == 0 and wrote
                               else normal.returncode)


# -- numeric options ---------------------------------------------------------------------------


def _bad_values(option: Any) -> list[str]:
    values = ["abc", ""]
    if option.type is int:
        values.append("1.5")
    else:
        values += ["nan", "inf"]
    if option.min is not None:
        values.append(str(int(option.min) - 1))
        if option.min >= 0:
            values.append("-1")
    if option.max is not None:
        values.append(str(int(option.max) + 1))
    return values


def _numeric_cases() -> list[Any]:
    cases = []
    for name, command in sorted(COMMANDS.items()):
        for option in command.options:
            if not option.numeric:
                continue
            for value in _bad_values(option):
                for where in ("before", "after"):
                    cases.append(pytest.param(name, option.name, value, where,
                                              id=f"{name}-{option.flag}={value!r}-{where}"))
    return cases


NUMERIC_CASES = _numeric_cases()


def test_commands_have_numeric_options_to_check() -> None:
    assert any(case.values[:2] == ("create", "jobs") for case in NUMERIC_CASES)


@pytest.mark.parametrize(("name", "option_name", "value", "where"), NUMERIC_CASES)
def test_a_bad_numeric_value_is_a_clear_usage_error(name: str, option_name: str, value: str,
                                                    where: str, example_repo: Path) -> None:
    """Before or after the positionals (doit parses the first, infrablocks the second), the
    value is checked before anything runs: exit 2, the option named, what would be valid."""
    command = COMMANDS[name]
    option = command.by_name[option_name]
    given = (f"{option.flag}={value}",) if value == "" else (option.flag, value)
    positional = ("base",) if command.positional else ()
    args = ((name, *given, *positional) if where == "before"
            else (name, *positional, *given))
    result = run_doit(example_repo, *args)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr
    assert f"{option.flag} expects {option.requirement()}" in result.stderr, result.stderr
    assert repr(value) in result.stderr


# -- whole values outside a terminal -------------------------------------------------------------


def _pty_of(columns: int) -> tuple[int, int]:
    """A pseudo-terminal ``columns`` wide: as stdin it is what `doit images | grep` runs with."""
    import pty

    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    return controller, terminal


def _assert_whole(text: str, values: list[str]) -> None:
    # rich shortens a value that does not fit to "reg…"; " … (" marks are the commands' own
    assert not re.search(r"\S…", text), f"a value was shortened:\n{text}"
    for value in values:
        for match in re.finditer(re.escape(value[:16]), text):
            found = text[match.start():match.start() + len(value)]
            assert found == value, f"{value!r} cut or wrapped:\n{text}"


@pytest.mark.parametrize("name", _params(sorted(COMMANDS) + sorted(BUILTINS)))
def test_output_that_is_not_a_terminal_holds_whole_values(name: str, tmp_path: Path) -> None:
    """stdout and stderr into pipes while stdin is a 40-column terminal and COLUMNS=40 (both
    made rich cut or wrap at that width before): every long value comes out whole."""
    repo, digest = _prepared_repo(tmp_path, name)
    if digest is None:
        digest = register_long_tagged_image(repo)
    controller, terminal = _pty_of(40)
    try:
        result = _run(repo, _invocation(name).args, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, stdin=terminal,
                      env={**environment_for_doit(), "COLUMNS": "40"})
    finally:
        os.close(terminal)
        os.close(controller)
    assert "Traceback" not in result.stderr, result.stderr
    values = [TINY, IMAGE_USER, LONG_ENV, LONG_TAG, LONG_OUTPUT, digest]
    _assert_whole(result.stdout, values)
    _assert_whole(result.stderr, values)
    if name in ("images", "cloud"):
        assert LONG_TAG in result.stdout
    if name in ("status", "outputs", "resolve", "create", "plan", "apply", "destroy"):
        assert TINY in result.stdout
