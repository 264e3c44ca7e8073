"""The command layer's own logic: option values checked once, consoles that keep values whole
outside a terminal, and a stream guard that survives a closed pipe."""

from __future__ import annotations

import io
import os
import signal
import sys

import pytest

from infrablocks.errors import UsageError
from infrablocks.tasks._command import Command, option
from infrablocks.tasks._console import (
    RULE_WIDTH,
    ClosedPipeGuard,
    guard_output,
    make_console,
)

JOBS = option("jobs", type=int, default=4, min=1, help="blocks run at once")
RATIO = option("ratio", type=float, default=0.5, min=0, max=1, help="a share")
FORMAT = option("format", default="tree", choices=["tree", "dot"], help="how")


@pytest.mark.parametrize(("raw", "value"), [("4", 4), (" 7 ", 7), ("1", 1), (4, 4), (None, None)])
def test_an_int_option_converts_valid_values(raw, value) -> None:
    assert JOBS.value(raw, "create") == value


@pytest.mark.parametrize("raw", ["0", "-1", "abc", "", "1.5", "1e3", "0x10", "four"])
def test_an_int_option_refuses_the_rest_naming_itself(raw) -> None:
    with pytest.raises(UsageError) as caught:
        JOBS.value(raw, "create")
    assert str(caught.value).startswith(
        f"doit create: --jobs expects a whole number, at least 1, got {raw!r}")
    assert caught.value.exit_code == 2
    assert "doit help create" in str(caught.value)


@pytest.mark.parametrize(("raw", "value"), [("0.25", 0.25), ("1", 1.0), ("0", 0.0),
                                            ("1e-3", 0.001)])
def test_a_float_option_converts_valid_values(raw, value) -> None:
    assert RATIO.value(raw, "x") == value


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "1.01", "-0.1", "half"])
def test_a_float_option_refuses_out_of_range_and_non_finite_values(raw) -> None:
    with pytest.raises(UsageError, match=r"--ratio expects a number from 0 to 1, got"):
        RATIO.value(raw, "x")


def test_choices_are_checked_with_the_valid_ones_named() -> None:
    assert FORMAT.value("dot", "graph") == "dot"
    with pytest.raises(UsageError, match="--format expects one of tree, dot, got 'png'"):
        FORMAT.value("png", "graph")


def test_doit_receives_strings_and_shows_the_requirement_in_its_help() -> None:
    spec = JOBS.doit_param()
    assert spec["type"] is str and spec["default"] == 4 and spec["long"] == "jobs"
    assert spec["metavar"] == "N" and "[a whole number, at least 1]" in spec["help"]
    assert "choices" not in FORMAT.doit_param()
    flag = option("keep_going", type=bool, default=False, help="go on").doit_param()
    assert flag["type"] is bool and flag["long"] == "keep-going"


def test_ranges_only_go_with_numbers() -> None:
    with pytest.raises(TypeError):
        option("env", min=1, help="x")
    with pytest.raises(TypeError):
        option("when", type=list, help="x")


def test_options_after_positionals_are_read_and_checked_like_the_others() -> None:
    command = Command("create", lambda targets, **kw: None, "doc",
                      options=(JOBS, FORMAT, option("yes", type=bool, default=False, help="y")),
                      positional="targets")
    args, values = command.parse(["base", "--jobs", "2", "nomad", "--yes"],
                                 {"jobs": 4, "format": "tree", "yes": False})
    assert args == ["base", "nomad"] and values == {"jobs": 2, "format": "tree", "yes": True}
    _, values = command.parse([], {"jobs": "3", "format": "dot", "yes": False})  # from doit
    assert values["jobs"] == 3
    with pytest.raises(UsageError, match="--jobs expects"):
        command.parse(["base", "--jobs", "0"], {"jobs": 4, "format": "tree", "yes": False})
    with pytest.raises(UsageError, match="unrecognized arguments: --nope"):
        command.parse(["base", "--nope"], {"jobs": 4, "format": "tree", "yes": False})


# -- consoles ----------------------------------------------------------------------------------


def _table(title: str = "") -> object:
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for column in ("block", "detail"):
        table.add_column(column)
    table.add_row("a_block_with_a_very_long_name_" * 4, "a detail that goes on " * 8)
    return table


def test_outside_a_terminal_tables_and_titles_are_never_cut(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")  # rich would use it for a pipe
    buffer = io.StringIO()
    console = make_console(file=buffer)
    console.print(_table(title="a title much longer than the table is wide " * 3))
    console.rule("stage")
    text = buffer.getvalue()
    assert "a_block_with_a_very_long_name_" * 4 in text
    assert ("a detail that goes on " * 8).strip() in text
    assert ("a title much longer than the table is wide " * 3).strip() in text.splitlines()[0]
    assert "…" not in text
    assert len(text.splitlines()[-1]) == RULE_WIDTH  # a rule is a short line, not 10^6 wide


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_rich_keeps_its_width(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = make_console(file=_Terminal())
    assert console.width == 40
    assert make_console(file=io.StringIO(), width=50).width == 50  # asked for: kept


# -- closed pipes ------------------------------------------------------------------------------


def _closed_pipe_stream() -> io.TextIOWrapper:
    read_end, write_end = os.pipe()
    os.close(read_end)
    return io.TextIOWrapper(os.fdopen(write_end, "wb", buffering=0), write_through=True)


def test_the_guard_absorbs_a_closed_pipe_and_discards_what_follows() -> None:
    stream = _closed_pipe_stream()
    guard = ClosedPipeGuard(stream)
    assert guard.write("first line\n") == len("first line\n")
    assert guard.reader_gone
    guard.write("more\n" * 10_000)
    guard.flush()
    # the descriptor now leads to /dev/null: a direct write (a child process, the last flush
    # at exit) meets no closed pipe either
    os.write(stream.fileno(), b"direct\n")
    stream.close()


def test_guard_output_wraps_and_restores_the_standard_streams() -> None:
    saved = (sys.stdout, sys.stderr)
    handler = signal.getsignal(signal.SIGPIPE)
    with guard_output() as output:
        assert isinstance(sys.stdout, ClosedPipeGuard) and isinstance(sys.stderr, ClosedPipeGuard)
        assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
        print("through the guard")
    assert (sys.stdout, sys.stderr) == saved
    assert signal.getsignal(signal.SIGPIPE) == handler
    assert not output.closed
