"""Writing files: atomically, and private (0700 directories, 0600 files) unless told otherwise.

State and everything beside it may hold secrets; logs, reports, caches and journals should not,
but they are written privately all the same (a log of a block that mishandles a secret must not
be world-readable). Every writer of the tool goes through these helpers:

- ``write_atomic(path, data, mode=0o600)``: the one atomic write (a temporary file in the same
  directory, then ``os.replace``): readers see the old content or the new, never a part.
  ``mode`` is the file's permission bits (0600 by default, e.g. 0755 for a launcher script), or
  None for what a new file gets under the umask (files the user owns: blocks.toml);
- ``atomic_open(path, ...)``: the same as a context manager, for content written as a stream
  (a zip archive);
- ``private_dir(path)``: create (or tighten) ``path`` and its missing parents as 0700;
- ``write_private_file(path, data)`` / ``write_private_text(path, text)``: ``write_atomic``
  with mode 0600, flushed to disk before the rename (state folders, records, locks);
- ``open_private(path, mode)``: open for writing with 0600 from the start (``"w"``, ``"a"``,
  ``"x"``; text or binary) — for logs written as they go;
- ``touch_private_file(path)``: exist with 0600 without touching the content.
"""


from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def atomic_open(path: Path, *, mode: int | None = PRIVATE_FILE_MODE, binary: bool = False,
                fsync: bool = False, encoding: str = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on a clean exit it replaces ``path``.

    ``mode``: the permission bits ``path`` gets (exactly, whatever the umask), or None for what
    a new file gets under the umask. ``fsync``: flush the content to disk before the rename.
    The directory must exist. On an exception the temporary file is removed and ``path`` is
    left as it was.
    """
    path = Path(path)
    fd, temporary = _create_temporary(path, mode)
    try:
        handle: IO[Any] = (os.fdopen(fd, "wb") if binary
                           else os.fdopen(fd, "w", encoding=encoding))
        with handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = PRIVATE_FILE_MODE,
                 fsync: bool = False, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` (bytes, or text in ``encoding``) atomically; ``mode`` and
    ``fsync`` as for :func:`atomic_open`."""
    binary = isinstance(data, bytes)
    with atomic_open(path, mode=mode, binary=binary, fsync=fsync, encoding=encoding) as handle:
        handle.write(data)


def write_private_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600, on disk before the rename."""
    write_atomic(path, data, mode=PRIVATE_FILE_MODE, fsync=True)


def write_private_text(path: Path, text: str) -> None:
    """``write_private_file`` for text (UTF-8)."""
    write_private_file(path, text.encode("utf-8"))


def _create_temporary(path: Path, mode: int | None) -> tuple[int, Path]:
    """A new file ``.NAME.RANDOM.tmp`` beside ``path`` (never an existing one), with ``mode``."""
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o666 if mode is None else mode & 0o777)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.fchmod(fd, mode)   # the umask filtered os.open's mode
            except BaseException:
                os.close(fd)
                temporary.unlink(missing_ok=True)
                raise
        return fd, temporary


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
