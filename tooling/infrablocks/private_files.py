"""Private files: 0700 directories and 0600 files for everything the tool writes for itself.

State and everything beside it may hold secrets; logs, reports, caches and journals should not,
but they are written privately all the same (a log of a block that mishandles a secret must not
be world-readable). Every writer of the tool goes through these helpers:

- ``private_dir(path)``: create (or tighten) ``path`` and its missing parents as 0700;
- ``write_private_file(path, data)``: atomic write, 0600;
- ``write_private_text(path, text)``: the same for text;
- ``open_private(path, mode)``: open for writing with 0600 from the start (``"w"``, ``"a"``,
  ``"x"``; text or binary) — for logs written as they go;
- ``touch_private_file(path)``: exist with 0600 without touching the content.
"""


from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path, *, base: Path | None = None) -> Path:
    """Create ``path`` (and missing parents) as 0700 directories; tighten it if it exists.

    With ``base`` (an ancestor of ``path``), ``base`` itself is created with the usual mode and
    only the levels below it are private: ``<repo>/.infrablocks`` stays traversable for the
    local cloud's services (PostgreSQL runs as ``postgres``) while ``.infrablocks/logs`` is not.
    """
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=PRIVATE_DIR_MODE)
        os.chmod(directory, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
    if path.is_dir() and (path.stat().st_mode & 0o777) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename) with mode 0600."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, PRIVATE_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_private_text(path: Path, text: str) -> None:
    """``write_private_file`` for text (UTF-8)."""
    write_private_file(path, text.encode("utf-8"))


_OPEN_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
               "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
               "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


def open_private(path: Path, mode: str = "w", *, encoding: str | None = "utf-8") -> IO[Any]:
    """Open ``path`` for writing, created 0600 (an existing file is made 0600 too).

    ``mode``: ``"w"``, ``"a"`` or ``"x"`` (exclusive creation, FileExistsError if it exists),
    optionally with ``"b"``. The parent directory must exist (see ``private_dir``).
    """
    kind = mode.replace("b", "")
    if kind not in _OPEN_FLAGS:
        raise ValueError(f"open_private: mode {mode!r} is not one of w, a, x (+b)")
    fd = os.open(path, _OPEN_FLAGS[kind] | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
        if "b" in mode:
            return os.fdopen(fd, mode)
        return os.fdopen(fd, mode, encoding=encoding)
    except BaseException:
        os.close(fd)
        raise


def touch_private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 without touching its content.

    Terraform's local backend rewrites an existing state file in place (keeping its mode) but
    creates a missing one with the umask's mode; creating it first keeps it 0600.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    os.close(fd)
    os.chmod(path, PRIVATE_FILE_MODE)
