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


# -- the command line itself: bad options, names, output files ----------------------------------


def _positional_for(command: Any) -> tuple[str, ...]:
    """A well-formed positional. The error under test comes first; should it not, the
    command still stops at once (no such block / image / file), starting nothing."""
    return {None: (), "targets": ("no_such_block",), "refs": ("no-such-image@1.0.0",),
            "plan_file": ("saved.plan",)}[command.positional]


def _assert_usage_error(result: subprocess.CompletedProcess[str], *texts: str) -> None:
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}{result.stderr}"
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert "ERROR: Error parsing" not in result.stderr, result.stderr   # doit's raw message
    for text in texts:
        assert text in result.stderr, result.stderr


def _valued_options() -> list[Any]:
    return [pytest.param(name, option.name, where, id=f"{name}-{option.flag}-{where}")
            for name, command in sorted(COMMANDS.items())
            for option in command.options if option.type is not bool
            for where in (("alone", "after") if command.positional else ("alone",))]


@pytest.mark.parametrize(("name", "option_name", "where"), _valued_options())
def test_an_option_without_its_value_is_a_usage_error(name: str, option_name: str, where: str,
                                                      example_repo: Path) -> None:
    """`doit status --env`: doit parses the options given first, infrablocks those after the
    positionals; both answer the same usage error (exit 2), not doit's parser dump (exit 3)."""
    command = COMMANDS[name]
    flag_text = command.by_name[option_name].flag
    args = (name, flag_text) if where == "alone" else (name, *_positional_for(command),
                                                        flag_text)
    _assert_usage_error(run_doit(example_repo, *args),
                        f"error: doit {name}: argument {flag_text}: expected one argument")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_an_unknown_option_is_a_usage_error(name: str, example_repo: Path) -> None:
    command = COMMANDS[name]
    for args in ((name, "--no-such-option", *_positional_for(command)),
                 (name, *_positional_for(command), "--no-such-option")):
        _assert_usage_error(run_doit(example_repo, *args), f"doit {name}: ",
                            "--no-such-option")


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if c.positional is None))
def test_a_command_without_positionals_refuses_one(name: str, example_repo: Path) -> None:
    """`doit status base` is a usage error, not doit running a task named `base`."""
    _assert_usage_error(run_doit(example_repo, name, "base"),
                        f"doit {name}: unexpected argument: base")


def _named_positional_cases() -> list[Any]:
    from infrablocks.tasks._command import NAMED_POSITIONALS

    words = {"base@": "the version after `@` is empty", "@1.0.0": "name is empty",
             "base,nomad": "names are separated by spaces, not commas",
             "base@1.0.0 ": "names and versions have no spaces",
             "base @1.0.0": "names and versions have no spaces"}
    return [pytest.param(name, word, expected, id=f"{name}-{word}")
            for name, command in sorted(COMMANDS.items())
            if command.positional in NAMED_POSITIONALS
            for word, expected in words.items()]


@pytest.mark.parametrize(("name", "word", "expected"), _named_positional_cases())
def test_a_malformed_block_or_image_name_is_a_usage_error(name: str, word: str, expected: str,
                                                          example_repo: Path) -> None:
    """`doit create base@` is not `base`; `base,nomad` is two names written wrongly."""
    _assert_usage_error(run_doit(example_repo, name, word), f"`{word}`", expected)


def _output_options() -> list[tuple[str, Any]]:
    return [(name, option) for name, command in sorted(COMMANDS.items())
            for option in command.options if option.writes]


def test_every_option_that_writes_a_file_is_declared_so() -> None:
    """Options naming a file to write are made with output_file(): checked before any work."""
    declared = {(name, option.flag) for name, option in _output_options()}
    assert {("create", "--report"), ("destroy", "--report"), ("env", "--report"),
            ("apply", "--report"), ("test-create", "--report"), ("plan", "--out"),
            ("graph", "--output"), ("ci-pipeline", "--output")} <= declared
    for name, command in COMMANDS.items():
        for option in command.options:
            if option.name in ("report", "output", "out"):
                assert option.writes, f"doit {name} {option.flag} is not an output_file()"


BAD_OUTPUT_PATHS = {
    "missing-directory": ("{tmp}/missing/out.file", "does not exist"),
    "a-directory": ("{tmp}", "is a directory"),
    "proc": ("/proc/version", "cannot create a file in /proc"),
    "a-device": ("/dev/null", "is not a regular file"),
}   # an empty path: test_an_empty_option_value_is_a_usage_error_not_the_default


@pytest.mark.parametrize(("name", "option_name", "case"), [
    pytest.param(name, option.name, case, id=f"{name}-{option.flag}-{case}")
    for name, option in _output_options() for case in BAD_OUTPUT_PATHS])
def test_a_bad_output_path_is_refused_before_any_work(name: str, option_name: str, case: str,
                                                      example_repo: Path,
                                                      tmp_path: Path) -> None:
    """Exit 2 naming the option, the path and what would be valid; nothing ran, and no
    directory was made for the path (`ci-pipeline --output /nonexistent/x.yml` made one)."""
    command = COMMANDS[name]
    option = command.by_name[option_name]
    template, problem = BAD_OUTPUT_PATHS[case]
    path = template.format(tmp=tmp_path)
    given = (f"{option.flag}={path}",) if path == "" else (option.flag, path)
    for args in ((name, *given, *_positional_for(command)),
                 (name, *_positional_for(command), *given)):
        result = run_doit(example_repo, *args)
        _assert_usage_error(result, f"doit {name}: {option.flag} {path!r}", problem,
                            "in a directory that exists and is writable")
        assert not (tmp_path / "missing").exists()
    assert not (example_repo / ".infrablocks" / "logs").exists(), "the command did some work"


def test_an_output_file_is_written_where_it_was_named(example_repo: Path,
                                                      tmp_path: Path) -> None:
    graph = run_doit(example_repo, "graph", "--format", "dot", "--output", str(tmp_path / "g"))
    assert graph.returncode == 0 and (tmp_path / "g").read_text().startswith("digraph")
    # relative to the working directory, into an existing file (replaced)
    (example_repo / "g.dot").write_text("old")
    again = run_doit(example_repo, "graph", "--format", "dot", "--output", "g.dot")
    assert again.returncode == 0 and (example_repo / "g.dot").read_text() != "old"


def test_purging_an_environment_that_never_existed_is_a_usage_error(example_repo: Path) -> None:
    _assert_usage_error(run_doit(example_repo, "cloud", "--purge", "nosuch"),
                        "unknown environment `nosuch`", "known environments: prod, staging")
    declared = run_doit(example_repo, "cloud", "--purge", "staging")   # declared, empty
    assert declared.returncode == 0, declared.stderr
    assert "nothing tagged environment=staging" in declared.stdout


def test_listing_an_environment_that_never_existed_is_a_usage_error(example_repo: Path) -> None:
    """`doit cloud --env nosuch` printed empty tables (exit 0): a typo looked like an empty
    environment, while every other command names an unknown one."""
    _assert_usage_error(run_doit(example_repo, "cloud", "--env", "nosuch"),
                        "doit cloud --env: unknown environment `nosuch`",
                        "known environments: prod, staging")
    declared = run_doit(example_repo, "cloud", "--env", "staging")      # declared, empty
    assert declared.returncode == 0, declared.stderr


def test_a_subdirectory_of_the_repository_runs_with_seek_file(example_repo: Path) -> None:
    """doit looks for dodo.py in the working directory before infrablocks loads; `doit -k`
    (README) finds it in a parent and runs from the repository root."""
    sub = example_repo / "blocks"
    plain = run_doit(sub, "graph")
    assert plain.returncode != 0 and "dodo" in plain.stdout + plain.stderr
    sought = run_doit(sub, "-k", "graph", "--format", "dot", "--output", "seek.dot")
    assert sought.returncode == 0, sought.stderr
    assert (example_repo / "seek.dot").read_text().startswith("digraph")


# -- Ctrl-C ------------------------------------------------------------------------------------

SLOW = "slow_block_interrupted_while_terraform_applies"
SLOW_MODULE = """\
variable "environment" { type = string }
variable "subnet_cidr" { type = string }

resource "terraform_data" "slow" {
  input = var.environment
  provisioner "local-exec" { command = "touch %s && sleep 120" }
}
"""


def _slow_repo(root: Path) -> tuple[Path, Path]:
    """The every-command repository plus ``SLOW``: a block whose apply runs a provisioner that
    marks the moment Terraform is applying (planned, creating), then sleeps."""
    repo = every_command_repo(root)
    marker = root / "applying"
    (repo / "blocks" / SLOW / "1.0.0").mkdir(parents=True)
    (repo / "blocks" / SLOW / "1.0.0" / "main.tf").write_text(SLOW_MODULE % marker)
    with (repo / "blocks.toml").open("a", encoding="utf-8") as registry:
        registry.write(f'\n[blocks.{SLOW}.versions."1.0.0"]\n')
    return repo, marker


SIGINT_CASES = {
    # the runner stops Terraform gracefully; the command ends with 130, not its failure (1)
    "create": (("create", SLOW, "--env", LONG_ENV, "--yes"), ()),
    # `doit env` destroys its environment after the Ctrl-C, then ends with 130
    "env": (("env", SLOW), ()),
    "test-create": (("test-create", SLOW), ()),
    "apply": (("apply", "slow.plan"), (("plan", SLOW, "--env", LONG_ENV, "--out", "slow.plan"),)),
}


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("case", sorted(SIGINT_CASES))
def test_sigint_while_terraform_applies_exits_130(case: str, tmp_path: Path) -> None:
    """A real SIGINT to the `doit` process while Terraform applies: exit 130, no traceback,
    and no claim that Terraform was interrupted before it started (it had planned)."""
    import time

    args, setup = SIGINT_CASES[case]
    repo, marker = _slow_repo(tmp_path / "repo")
    for step in setup:
        done = run_doit(repo, *step, timeout=TIMEOUT)
        assert done.returncode == 0, done.stdout + done.stderr
    process = subprocess.Popen([str(DOIT), *args], cwd=repo, env=environment_for_doit(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists(), f"Terraform never applied:\n{process.communicate()}"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, f"exit {process.returncode}\n{stdout}{stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    assert "before it started" not in stdout + stderr, stdout + stderr
    assert f"doit {args[0]} stopped by SIGINT" in stderr
    if case in ("env", "test-create"):   # the throwaway environment is gone all the same
        assert "destroy" in stdout + stderr


@pytest.mark.slow
@pytest.mark.integration
def test_sigint_at_a_confirmation_prompt_exits_130(tmp_path: Path) -> None:
    """`doit destroy` waiting for its answer on a terminal: Ctrl-C ends it with 130."""
    import time

    repo = every_command_repo(tmp_path / "repo")
    created = run_doit(repo, *_CREATE, timeout=TIMEOUT)
    assert created.returncode == 0, created.stdout + created.stderr
    controller, terminal = _pty_of(120)
    shown = tmp_path / "stdout"
    try:
        with shown.open("w") as stdout_file:
            process = subprocess.Popen([str(DOIT), "destroy", TINY, "--env", LONG_ENV],
                                       cwd=repo, env=environment_for_doit(), stdin=terminal,
                                       stdout=stdout_file, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 60
                while ("destroy?" not in shown.read_text() and process.poll() is None
                       and time.monotonic() < deadline):
                    time.sleep(0.1)
                assert "destroy?" in shown.read_text(), shown.read_text()
                process.send_signal(signal.SIGINT)
                _, stderr = process.communicate(timeout=60)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.communicate()
    finally:
        os.close(terminal)
        os.close(controller)
    stdout = shown.read_text()
    assert process.returncode == 130, f"exit {process.returncode}\n{stdout}{stderr}"
    assert "Traceback" not in stdout + stderr, stderr
    assert run_doit(repo, "destroy", TINY, "--env", LONG_ENV, "--yes",
                    timeout=TIMEOUT).returncode == 0


# -- empty words: an unset shell variable -------------------------------------------------------


def _string_options() -> list[Any]:
    return [pytest.param(name, option.name, form, id=f"{name}-{option.flag}-{form}")
            for name, command in sorted(COMMANDS.items())
            for option in command.options if option.type is str
            for form in ("joined", "separate")]


@pytest.mark.parametrize(("name", "option_name", "form"), _string_options())
def test_an_empty_option_value_is_a_usage_error_not_the_default(
        name: str, option_name: str, form: str, example_repo: Path) -> None:
    """`--env=$ENV` with ENV unset must not mean the default environment (often prod), and
    `--env ""` must not be doit's IndexError traceback: exit 2, the option named."""
    command = COMMANDS[name]
    option = command.by_name[option_name]
    given = (f"{option.flag}=",) if form == "joined" else (option.flag, "")
    result = run_doit(example_repo, name, *given, *_positional_for(command))
    expected = (f"{option.flag} expects {option.requirement()}, got ''" if option.numeric
                else f"doit {name}: {option.flag} is empty")
    _assert_usage_error(result, expected)


@pytest.mark.parametrize("name", sorted(n for n, c in COMMANDS.items() if c.positional))
def test_an_empty_positional_is_a_usage_error(name: str, example_repo: Path) -> None:
    from infrablocks.tasks._command import NAMED_POSITIONALS

    result = run_doit(example_repo, name, "")
    if COMMANDS[name].positional in NAMED_POSITIONALS:
        _assert_usage_error(result, f"doit {name}: an empty argument where a")
    else:   # a file (apply) or a version: the command's own message, never a traceback
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr, result.stderr


@pytest.mark.parametrize("args", [("nosuch",), ("creat", "base"), ("",), ("info", "nosuch"),
                                  ("info", ""), ("list", "nosuch"), ("help", "nosuch"),
                                  ("help", ""), ("reset-dep", "")])
def test_an_unknown_command_is_a_usage_error(args: tuple[str, ...], example_repo: Path) -> None:
    """doit said `Invalid parameter` (exit 3), or a KeyError traceback for `doit info`."""
    result = run_doit(example_repo, *args)
    _assert_usage_error(result, "unknown command" if args[-1] else "an empty argument where a "
                        "command goes", "the commands: affected, apply, check")
    if args[0] == "creat":
        assert "did you mean `create`" in result.stderr


@pytest.mark.parametrize("args", [("help", "create"), ("help", "list"), ("help", "task"),
                                  ("help",), ("list",), ("info", "create")])
def test_doits_own_commands_still_take_what_they_take(args: tuple[str, ...],
                                                      example_repo: Path) -> None:
    result = run_doit(example_repo, *args)
    assert result.returncode in (0, 1) and result.stdout.strip(), result.stderr  # info: 1
    assert "unknown command" not in result.stderr and "Traceback" not in result.stderr


def test_an_empty_plan_file_argument_is_named(example_repo: Path) -> None:
    for word in ("", " "):
        _assert_usage_error(run_doit(example_repo, "apply", word),
                            "doit apply: an empty argument where the plan file goes")
