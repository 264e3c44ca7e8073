"""Where every command's output goes: one console factory, and what a closed pipe does.

**Consoles.** ``make_console()`` is the only way commands build a rich console. On a
terminal it is rich's own (the terminal's width, live displays, colours). Anywhere else (a
pipe, a file, a CI log) nothing is cut or wrapped to a width: tables take the width their
values need, table titles are printed as a line of their own, rules are a short line. rich
alone would take the width of whichever standard stream is a terminal (so ``doit images |
grep`` got the width of the terminal on stdin), or ``$COLUMNS``, or 80, and shorten or wrap
what does not fit. Colours follow rich's rules (``NO_COLOR``, ``FORCE_COLOR``).

**Closed pipes.** ``guard_output()`` wraps ``sys.stdout`` and ``sys.stderr`` while a command
runs. When the reader of either goes away (``doit status | head -1``), the write that notices
it points the descriptor at ``/dev/null`` and everything after is discarded: the command
carries on to its end — a create or an upgrade is never cut short between two steps because
nobody reads its output any more — and ``finish_closed_output()`` then ends the process the
way a closed pipe ends ``seq``: killed by ``SIGPIPE`` (a shell shows status 141), without a
traceback. A command that failed keeps its own exit status. doit's own commands (``doit
list``, ``doit help``) never start anything, so ``restore_sigpipe()`` lets ``SIGPIPE`` end
them at once, as it ends any Unix tool.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import signal
import sys
import threading
from typing import IO, Any

# "No width limit": tables and lines take what their values need. rich wants a number; this one
# is never reached by a real value, and nothing printed here pads to the console's width.
UNLIMITED_WIDTH = 1_000_000
# Rules (section lines, e.g. `doit env`'s stages) outside a terminal: a short line, long
# enough for their title.
RULE_WIDTH = 80


@functools.cache
def _console_class() -> type:
    """The rich Console subclass (built on first use: rich is imported only by commands that
    print)."""
    from rich.console import Console, ConsoleDimensions
    from rich.text import Text

    class _CommandConsole(Console):
        """rich's Console, with whole values when the output is not a terminal."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._width_given = kwargs.get("width") is not None
            super().__init__(*args, **kwargs)

        @property
        def size(self) -> ConsoleDimensions:
            dimensions = super().size
            # Not the terminal's width (rich asks any standard stream that is one), not
            # $COLUMNS (rich reads it for pipes too): no limit.
            if not self._width_given and not stream_is_terminal(self.file):
                return ConsoleDimensions(UNLIMITED_WIDTH, dimensions.height)
            return dimensions

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            self._width, self._height = new_size
            self._width_given = True

        @property
        def width(self) -> int:
            return self.size.width

        @width.setter
        def width(self, width: int) -> None:
            self._width = width
            self._width_given = True

        def print(self, *objects: Any, **kwargs: Any) -> None:
            if any(_titled_table(o) for o in objects) and not stream_is_terminal(self.file):
                objects = tuple(self._untitled(o) for o in objects)
            super().print(*objects, **kwargs)

        def _untitled(self, item: Any) -> Any:
            """A table's title as its own line: rich would wrap it to the table's width."""
            if not _titled_table(item):
                return item
            import copy

            title = item.title
            super().print(Text.from_markup(title, style="table.title") if isinstance(title, str)
                          else title, soft_wrap=True)
            untitled = copy.copy(item)
            untitled.title = None
            return untitled

        def rule(self, title: Any = "", **kwargs: Any) -> None:
            if stream_is_terminal(self.file):
                super().rule(title, **kwargs)
                return
            from rich.rule import Rule

            length = Text.from_markup(title).cell_len if isinstance(title, str) else 0
            self.print(Rule(title, **kwargs), width=max(RULE_WIDTH, length + 8))

    return _CommandConsole


def _titled_table(item: Any) -> bool:
    table = sys.modules.get("rich.table")  # no table can exist before rich.table is imported
    return table is not None and isinstance(item, table.Table) and bool(item.title)


def make_console(*, stderr: bool = False, soft_wrap: bool = True,
                 file: IO[str] | None = None, **options: Any) -> Any:
    """A rich ``Console`` for a command's output (stdout; ``stderr=True`` for messages).

    Progress, notes and errors go to stderr (``stderr=True``), so stdout stays parseable.
    ``soft_wrap`` (default True): lines of text are not wrapped even on a terminal (False:
    rich wraps them to the terminal's width; outside a terminal nothing is wrapped anyway).
    ``file``: write there instead (e.g. a ``StringIO`` to render into a file: not a terminal,
    so whole values). Other keyword arguments go to rich's Console. Highlighting is off: our
    output styles what it means to.
    """
    options.setdefault("highlight", False)
    return _console_class()(stderr=stderr, soft_wrap=soft_wrap, file=file, **options)


def stream_is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (what decides the width; colours are rich's call)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # closed
        return False


# -- closed pipes ---------------------------------------------------------------------------------


class ClosedPipeGuard(io.TextIOBase):
    """A text stream in front of stdout or stderr that survives its reader going away."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self._reader_went_away()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self._reader_went_away()

    def _reader_went_away(self) -> None:
        """Discard from now on; the descriptor points at /dev/null so that nothing (a child
        process writing to it, the interpreter's last flush) meets the closed pipe again."""
        self.reader_gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, self.stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        # whatever the stream still buffers now goes to /dev/null (or is dropped)
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    # -- the rest of a text stream ------------------------------------------------------------

    def isatty(self) -> bool:
        return not self.reader_gone and stream_is_terminal(self.stream)

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class guard_output:  # noqa: N801 - used as a context manager, like a function
    """While active, ``sys.stdout`` and ``sys.stderr`` are :class:`ClosedPipeGuard` s, and
    ``SIGPIPE`` is ignored (a write to a closed pipe raises, and the guard absorbs it).

    ``closed`` afterwards: whether a reader went away during the command.
    """

    def __enter__(self) -> guard_output:
        self.saved = (sys.stdout, sys.stderr)
        self.guards = [g if isinstance(g, ClosedPipeGuard) else ClosedPipeGuard(g)
                       for g in self.saved]
        sys.stdout, sys.stderr = self.guards
        self.previous_handler: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous_handler = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        return self

    def __exit__(self, *exc: object) -> None:
        for guard in self.guards:
            guard.flush()
        sys.stdout, sys.stderr = self.saved
        if self.previous_handler is not None:
            signal.signal(signal.SIGPIPE, self.previous_handler)

    @property
    def closed(self) -> bool:
        return any(g.reader_gone for g in self.guards)


def finish_closed_output() -> None:
    """End the process as a closed pipe ends a Unix tool: killed by SIGPIPE (status 141)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    os._exit(128 + signal.SIGPIPE)  # not reached: the signal ends the process first


def restore_sigpipe() -> None:
    """Let SIGPIPE end the process (Python ignores it by default and raises on the write)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """``1 block``, ``2 blocks``, ``0 blocks``: a count and its noun, singular only for one
    (``plural`` for irregular nouns: ``counted(n, "entry", "entries")``)."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"
