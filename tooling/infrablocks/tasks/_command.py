"""The thin layer between doit and the library: options, argument parsing, errors, exit codes.

A command module declares its command once::

    def task_create():
        return command_task("create", _create, positional="targets", doc="…",
                            params=[option("jobs", type=int, default=4, min=1, help="…"),
                                    flag("keep_going", help="…")])

- Options may come before or after positionals. doit stops reading options at the first
  positional (``doit resolve a --json`` would hand ``--json`` over as a positional), so the
  positionals are read again here, with the same option table doit shows in ``doit help``.
- Every value is checked here, wherever it was written: its type (``int``, ``float``), its
  range (``min`` / ``max``, declared with the option) and its ``choices``. A bad value is a
  :class:`~infrablocks.errors.UsageError` naming the option (exit 2), never a traceback: doit
  itself receives every option as a string (``type=str``) so that it converts nothing.
- doit reads the options written before the first positional itself; its parse errors (a
  missing value, an unknown option) are turned into the same usage errors (exit 2, see
  :func:`install_doit_parse_errors`). Every command takes doit's positional list, so that words
  a command does not take are a usage error too, not further doit tasks.
- Positional block and image names are ``NAME`` or ``NAME@VERSION``, separated by spaces
  (``base@`` and ``base,nomad`` are usage errors); options naming a file to write
  (:func:`output_file`) are checked before any work (:mod:`infrablocks.tasks._output_files`).
- ``InfrablocksError`` raised by the command is printed as ``error: …`` (with its hint) and the
  process exits with the error's ``exit_code``; a command that received SIGINT (Ctrl-C) exits
  130, whoever handled the signal (the runner stops Terraform, `doit env` tears down first).
- Output goes through :mod:`infrablocks.tasks._console`: whole values outside a terminal, and
  a closed pipe ends the command quietly (status 141, as for ``seq | head -1``).

Every command made here is listed in :data:`COMMANDS` (name → :class:`Command`), which the
command tests walk to cover each command and each option.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from infrablocks.errors import InfrablocksError, UsageError

Func = Callable[..., "int | None"]

_TYPE_WORDS = {int: "a whole number", float: "a number"}
_METAVARS = {int: "N", float: "X"}


@dataclass(frozen=True)
class Option:
    """One ``--option`` of a command; ``type`` is ``str``, ``int``, ``float`` or ``bool``
    (a flag). ``min`` / ``max`` bound numbers (inclusive); ``choices`` lists the accepted
    strings."""

    name: str
    help: str
    type: type = str
    default: Any = None
    short: str = ""
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    writes: bool = False        # names a file the command writes (see output_file())
    example: str = ""           # a valid value, for messages

    @property
    def flag(self) -> str:
        """``--keep-going`` for ``keep_going``."""
        return "--" + self.name.replace("_", "-")

    @property
    def numeric(self) -> bool:
        return self.type in (int, float)

    def requirement(self) -> str:
        """What a valid value is, in words: ``a whole number, at least 1``."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = _TYPE_WORDS.get(self.type, "a value")
        if self.min is not None and self.max is not None:
            return f"{words} from {_number(self.min)} to {_number(self.max)}"
        if self.min is not None:
            return f"{words}, at least {_number(self.min)}"
        if self.max is not None:
            return f"{words}, at most {_number(self.max)}"
        return words

    def doit_param(self) -> dict[str, Any]:
        """The doit ``params`` entry: doit parses the flag; the value stays a string."""
        spec: dict[str, Any] = {"name": self.name, "long": self.flag[2:], "help": self.help,
                                "default": False if self.type is bool else self.default}
        if self.short:
            spec["short"] = self.short
        if self.type is bool:
            spec["type"] = bool
            return spec
        spec["type"] = str
        spec["metavar"] = _METAVARS.get(self.type, "ARG")
        if self.numeric and (self.min is not None or self.max is not None):
            spec["help"] = f"{self.help} [{self.requirement()}]"
        if self.choices:
            spec["help"] = f"{self.help} [{self.requirement()}]"
        return spec

    def value(self, raw: Any, command: str) -> Any:
        """``raw`` (a string from the command line, or the default) as the option's type.

        Raises :class:`UsageError` naming the option and what would be valid.
        """
        if self.type is bool or raw is None:
            return raw
        if not isinstance(raw, str):
            return raw  # the declared default
        text = raw.strip()
        if not text and self.type is str:
            # `--env=` (an unset shell variable: `--env=$ENV`) must not quietly mean the
            # default: that would be defaults.environment, often prod
            wanted = self.requirement() if self.choices else "a value"
            example = f", e.g. {self.flag} {self.example}" if self.example else ""
            raise UsageError(f"doit {command}: {self.flag} is empty",
                             hint=f"give {self.flag} {wanted}{example}, or leave the option "
                                  "out for its default")
        if self.type is str:
            if self.choices and text not in self.choices:
                raise self._error(command, raw)
            if self.writes:
                from infrablocks.tasks._output_files import output_path_problem

                problem = output_path_problem(raw)
                if problem is not None:
                    raise UsageError(
                        f"doit {command}: {self.flag} {raw!r}: {problem}",
                        hint=f"{self.flag} takes the path of a file to write, in a directory "
                             f"that exists and is writable, e.g. {self.flag} {self.example}")
            return raw
        try:
            number = int(text, 10) if self.type is int else float(text)
        except ValueError:
            raise self._error(command, raw) from None
        if isinstance(number, float) and not math.isfinite(number):
            raise self._error(command, raw)
        if ((self.min is not None and number < self.min)
                or (self.max is not None and number > self.max)):
            raise self._error(command, raw)
        return number

    def _error(self, command: str, raw: str) -> UsageError:
        return UsageError(f"doit {command}: {self.flag} expects {self.requirement()}, "
                          f"got {raw!r}", hint=f"see `doit help {command}`")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def option(name: str, *, help: str, type: type = str, default: Any = None, short: str = "",
           choices: list[str] | tuple[str, ...] | None = None, min: float | None = None,
           max: float | None = None) -> Option:
    """An option ``--name-with-dashes``; see :class:`Option`."""
    if type not in (str, int, float, bool):
        raise TypeError(f"option {name}: type must be str, int, float or bool, not {type}")
    if (min is not None or max is not None) and type not in (int, float):
        raise TypeError(f"option {name}: min/max only go with int or float")
    return Option(name=name, help=help, type=type, default=default, short=short,
                  choices=tuple(choices or ()), min=min, max=max)


def flag(name: str, *, help: str, short: str = "") -> Option:
    return option(name, help=help, type=bool, default=False, short=short)


def output_file(name: str, *, help: str, example: str) -> Option:
    """An option naming a file the command writes (``--report FILE``): checked while the
    command line is parsed, before any work (see :mod:`infrablocks.tasks._output_files`);
    ``example`` is a valid value for the message (``report.json``)."""
    return Option(name=name, help=help, writes=True, example=example)


@dataclass(frozen=True)
class Command:
    """A user command: its options and the function doing the work.

    ``func(positional_args, **options)`` when ``positional`` names the positional list,
    ``func(**options)`` otherwise. It returns an exit code (or None for 0).
    """

    name: str
    func: Func
    doc: str
    options: tuple[Option, ...] = ()
    positional: str | None = None
    by_name: dict[str, Option] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {o.name: o for o in self.options})

    def parse(self, positional: list[str], values: dict[str, Any]) -> tuple[list[str],
                                                                            dict[str, Any]]:
        """Positionals and typed, checked option values (``values``: what doit parsed)."""
        merged = dict(values)
        if any(arg.startswith("-") for arg in positional):  # options among the positionals
            parser = _ArgumentParser(prog=self.name, add_help=False)
            for opt in self.options:
                flags = [opt.flag] + ([f"-{opt.short}"] if opt.short else [])
                if opt.type is bool:
                    parser.add_argument(*flags, dest=opt.name, action="store_true",
                                        default=None)
                else:
                    parser.add_argument(*flags, dest=opt.name, default=None)
            parser.add_argument("positional", nargs="*")
            namespace = parser.parse_intermixed_args(positional)
            positional = list(namespace.positional)
            for opt in self.options:
                late = getattr(namespace, opt.name)
                if late is not None:
                    merged[opt.name] = late
        if self.positional in NAMED_POSITIONALS:
            for word in positional:
                _check_name_syntax(self.name, word, NAMED_POSITIONALS[self.positional])
        if positional and self.positional is None:
            raise UsageError(f"doit {self.name}: unexpected argument"
                             f"{'' if len(positional) == 1 else 's'}: {' '.join(positional)}"
                             " (this command takes options only)",
                             hint=f"see `doit help {self.name}`")
        checked = {name: (self.by_name[name].value(raw, self.name) if name in self.by_name
                          else raw) for name, raw in merged.items()}
        return list(positional), checked


# Positionals that are NAME or NAME@VERSION, and what they are called in messages.
NAMED_POSITIONALS = {"targets": "block", "refs": "image"}


def _check_name_syntax(command: str, word: str, kind: str) -> None:
    """``word`` is ``NAME`` or ``NAME@VERSION`` (both parts non-empty, no list separators):
    a :class:`UsageError` otherwise, before anything runs. Whether the name and the version
    exist is the registry's to say."""
    example = "base" if kind == "block" else "etcd@1.0.0"
    if not word:
        article = "an" if kind[0] in "aeiou" else "a"
        raise UsageError(f"doit {command}: an empty argument where {article} {kind} name goes (an "
                         "unset shell variable?)", hint=f"write NAME or NAME@VERSION, e.g. "
                                                        f"{example}")
    if "," in word or ";" in word:
        words = " ".join(w for w in word.replace(";", ",").split(",") if w)
        raise UsageError(f"doit {command}: `{word}`: {kind} names are separated by spaces, "
                         "not commas", hint=f"e.g. doit {command} {words}")
    if word.strip() and any(c.isspace() for c in word):
        raise UsageError(f"doit {command}: `{word}`: {kind} names and versions have no spaces",
                         hint=f"write NAME or NAME@VERSION without spaces, e.g. {example}; "
                              "several names are separate arguments")
    name, at, version = word.partition("@")
    if at and not version:
        raise UsageError(f"doit {command}: `{word}`: the version after `@` is empty",
                         hint=f"write {name or kind.upper()} or {name or kind.upper()}@VERSION, "
                              f"e.g. {name or example}@1.0.0")
    if not name.strip():
        raise UsageError(f"doit {command}: `{word}`: the {kind} name is empty",
                         hint=f"write NAME or NAME@VERSION, e.g. {example}")


def _ArgumentParser(prog: str, add_help: bool) -> Any:  # noqa: N802 - a class, imported late
    """argparse's parser, raising a UsageError instead of printing usage and exiting."""
    import argparse

    class ArgumentParser(argparse.ArgumentParser):
        def error(self, message: str) -> None:  # type: ignore[override]
            raise UsageError(f"doit {self.prog}: {message}",
                             hint=f"see `doit help {self.prog}`")

    return ArgumentParser(prog=prog, add_help=add_help)


COMMANDS: dict[str, Command] = {}
# doit's name for the positional list of a command that takes no positionals
NO_POSITIONAL = "arguments"
# Set when the process is the `doit` command (tasks/__init__.py): the reporter then ends it as
# soon as doit is done (see _reporter.py), with ``exit_status``, the status of the command.
EXIT_WHEN_DONE = False
exit_status: int | None = None


def run_command(command: Command, positional: list[str] | None,
                values: dict[str, Any]) -> None:
    """Run ``command`` with parsed arguments; user errors become a message and an exit code.

    A command that received SIGINT (Ctrl-C) exits 130, whoever handled the signal: the runner
    turns it into a clean stop of the running blocks, `doit env` into its teardown, and the
    command then returns its own failure status, which 130 replaces (README: exit codes).
    """
    global exit_status
    from infrablocks.tasks._console import guard_output

    rc: int | None = None
    with guard_output() as output, _signals_witnessed() as witness:
        try:
            args, kwargs = command.parse(list(positional or []), values)
            rc = (command.func(args, **kwargs) if command.positional is not None
                  else command.func(**kwargs))
        except InfrablocksError as exc:
            print_error(exc)
            rc = exc.exit_code
        except KeyboardInterrupt:
            witness.seen.add(signal.SIGINT)
        finally:
            _stop_shared_providers()
            _print_subnet_notes()
        if signal.SIGINT in witness.received():
            from infrablocks.tasks._console import make_console

            make_console(stderr=True).print(
                f"[yellow]interrupted:[/] doit {command.name} stopped by SIGINT (Ctrl-C)")
            rc = INTERRUPTED
    if output.closed and not rc:
        from infrablocks.tasks._console import finish_closed_output

        finish_closed_output()
    exit_status = int(rc or 0)
    if rc:
        sys.exit(int(rc))


def _stop_shared_providers() -> None:
    """The run is over: stop the provider processes it served Terraform from, if any
    (``infrablocks.terraform.reattach``; not even imported by commands that started none)."""
    reattach = sys.modules.get("infrablocks.terraform.reattach")
    if reattach is not None:
        reattach.stop_all()


def _print_subnet_notes() -> None:
    """Say what the command's subnet allocation reclaimed from a stale entry of the
    machine-wide table (or repaired in it): addresses another checkout held are now this
    one's, and people should know (``infrablocks.environments.SubnetAllocator.notes``)."""
    opened = sys.modules.get("infrablocks.tasks._workspace")
    notes = opened.take_subnet_notes() if opened is not None else []
    if notes:
        from rich.markup import escape

        from infrablocks.tasks._console import make_console

        console = make_console(stderr=True)
        for note in notes:
            console.print(f"[yellow]note:[/] {escape(note)}")


INTERRUPTED = 128 + signal.SIGINT   # 130, as a shell reports a command ended by Ctrl-C


class _SignalWitness:
    """Which signals arrived while it was installed (see :func:`_signals_witnessed`)."""

    def __init__(self, read_end: int | None) -> None:
        self.read_end = read_end
        self.seen: set[int] = set()

    def received(self) -> set[int]:
        """The signal numbers received so far."""
        while self.read_end is not None:
            try:
                chunk = os.read(self.read_end, 512)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            self.seen.update(chunk)
        return self.seen


@contextlib.contextmanager
def _signals_witnessed() -> Iterator[_SignalWitness]:
    """A witness of the signals received while the body runs.

    Python writes the number of every signal it handles to its wakeup file descriptor,
    whichever Python handler is installed (the runner's, `doit env`'s deferral of a second
    Ctrl-C, the default KeyboardInterrupt), so a pipe there tells whether a Ctrl-C came.
    Only in the main thread (elsewhere the witness sees nothing).
    """
    try:
        read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        yield _SignalWitness(None)
        return
    try:
        try:
            previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            yield _SignalWitness(None)
            return
        witness = _SignalWitness(read_end)
        try:
            yield witness
        finally:
            signal.set_wakeup_fd(previous)
            witness.received()
            witness.read_end = None
    finally:
        os.close(read_end)
        os.close(write_end)


def print_error(exc: InfrablocksError) -> None:
    from rich.markup import escape

    from infrablocks.tasks._console import make_console

    make_console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}")


def command_task(name: str, func: Func, *, doc: str, params: list[Option] | None = None,
                 positional: str | None = None) -> dict[str, Any]:
    """A doit task dict for a user command (also recorded in :data:`COMMANDS`)."""
    command = Command(name=name, func=func, doc=doc, options=tuple(params or ()),
                      positional=positional)
    COMMANDS[name] = command
    task: dict[str, Any] = {
        "doc": doc,
        "params": [opt.doit_param() for opt in command.options],
        "uptodate": [False],
        "verbosity": 2,
    }
    # Every command takes doit's positional list, also one without positionals: words after
    # its name then reach parse() (a clear usage error), not doit (which would run them as
    # further tasks, or fail with its own message).
    task["pos_arg"] = positional or NO_POSITIONAL
    task["actions"] = [(_action, [command])]
    return task


def _action(command: Command, **values: Any) -> None:
    pos = values.pop(command.positional or NO_POSITIONAL, None) or []
    run_command(command, pos, values)


def install_doit_parse_errors() -> None:
    """Make doit's parse errors of our commands' options usage errors (exit 2).

    doit reads a command's options itself (with getopt) up to the first positional, before
    any command runs; a bad one (``doit status --env``, ``--nosuch``) ended with doit's raw
    ``ERROR: Error parsing Task: … (parsing options: [CmdOption(…)])`` and exit 3. doit has no
    hook for this, so its ``Task.init_options`` is wrapped (once): on a parse error of one of
    our commands, the same words are parsed by :meth:`Command.parse`, which names the option
    as it does for options after the positionals — ``error: doit status: argument --env:
    expected one argument`` — and the process exits 2.
    """
    from doit.cmdparse import CmdParseError
    from doit.task import Task

    original = Task.init_options
    if getattr(original, "infrablocks_wrapped", False):
        return

    def init_options(self: Task, args: Any = None) -> Any:
        try:
            return original(self, args)
        except CmdParseError as exc:
            command = COMMANDS.get(self.name)
            if command is None:
                raise
            try:
                command.parse(list(args or []), {})
                cause = exc.__context__
                detail = str(getattr(cause, "msg", "") or cause or exc)
                raise UsageError(f"doit {command.name}: {detail}",
                                 hint=f"see `doit help {command.name}`") from None
            except UsageError as usage:
                print_error(usage)
                sys.exit(usage.exit_code)

    init_options.infrablocks_wrapped = True  # type: ignore[attr-defined]
    Task.init_options = init_options
