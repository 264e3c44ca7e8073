"""File and line for problems in blocks.toml: best-effort line numbers for TOML key paths.

tomllib and rtoml keep no positions, so the lines are found again in the text, only when there
are problems to report.
"""

from __future__ import annotations

import re
from pathlib import Path

from infrablocks.registry.model import format_key_path

__all__ = ["LineLocator", "format_problems", "locate_key", "split_key"]


def format_problems(file: Path, items: list[tuple[tuple[str, ...], str]]) -> list[str]:
    """``blocks.toml:LINE: KEY.PATH: MESSAGE`` for each (key path parts, message), ordered by
    line (stable: in the order found within a line); without ``:LINE`` when none is found."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    locator = LineLocator(text)
    located = [(locator.line_of(path), path, message) for path, message in items]
    located.sort(key=lambda item: item[0] or 0)
    return [f"{file.name}:{line}: {format_key_path(*path)}: {message}" if line
            else f"{file.name}: {format_key_path(*path)}: {message}"
            for line, path, message in located]


def locate_key(file: Path, *parts: str) -> str:
    """``blocks.toml:LINE: KEY.PATH`` for a key path (``blocks.toml: KEY.PATH`` when its line is
    not found): how problems found after loading (platforms, rolling declarations) name their
    key, as the registry's own problems do. Reads the file: call it only to report a problem."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        text = ""
    line = LineLocator(text).line_of(tuple(parts))
    key = format_key_path(*parts)
    return f"{file.name}:{line}: {key}" if line else f"{file.name}: {key}"


class LineLocator:
    """Best-effort line numbers for key paths (tomllib keeps no positions).

    Finds the deepest ``[table]`` header that is a prefix of the path, then the line of the next
    key inside that table. Only used when there are problems to report.
    """

    _HEADER = re.compile(r"^\s*\[(?!\[)(?P<key>[^\]]+)\]")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: list[tuple[tuple[str, ...], int]] = []
        for number, line in enumerate(self.lines, 1):
            match = self._HEADER.match(line)
            if match:
                self.headers.append((split_key(match.group("key")), number))

    def line_of(self, path: tuple[str, ...]) -> int | None:
        """The 1-based line of the key path ``path`` (its parts): its own line when found under
        the deepest table header that is a prefix of it, else that header's; None without one."""
        best: tuple[int, int] | None = None  # (prefix length, line)
        for key, number in self.headers:
            if len(key) <= len(path) and path[: len(key)] == key and (
                    best is None or len(key) > best[0]):
                best = (len(key), number)
        if best is None:
            return None
        depth, header_line = best
        if depth == len(path):
            return header_line
        wanted = path[depth]
        key_re = re.compile(r"^\s*(?:\"" + re.escape(wanted) + r"\"|" + re.escape(wanted)
                            + r")\s*[=.]")
        for number in range(header_line + 1, len(self.lines) + 1):
            line = self.lines[number - 1]
            if self._HEADER.match(line):
                break
            if key_re.match(line):
                return number
        return header_line


def split_key(text: str) -> tuple[str, ...]:
    """A TOML dotted key as written in a header (``blocks.app."1.0.0"``) → its unquoted parts."""
    parts = re.findall(r'\s*(?:"((?:[^"\\]|\\.)*)"|\'([^\']*)\'|([A-Za-z0-9_-]+))\s*(?:\.|$)',
                       text.strip())
    return tuple(a or b or c for a, b, c in parts)
