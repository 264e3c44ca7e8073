"""Files a user names for a command to write: ``--report``, ``--output``, ``--out``.

Such an option is declared with :func:`infrablocks.tasks._command.output_file`; its value is
checked by :func:`output_path_problem` once, while the command line is parsed — before any work
(a `doit create --report /nonexistent/r.json` used to fail only after the run). A path is
valid when:

- it is not empty and not a directory (nor a special file such as ``/dev/null``);
- its parent directory exists — no command creates the missing directories of a path the
  user gave (a typo must not make ``/nonexistent/`` at the root of the file system);
- a new file can be made in that parent (every writer replaces the file atomically: a
  temporary file beside it, then a rename), which a probe file checks for real — the only
  answer that holds for root, read-only mounts and ``/proc`` alike.

:func:`write_output_file` is the write itself (atomic, no parent created); an ``OSError``
there (the directory went away meanwhile, the disk is full) becomes an
:class:`~infrablocks.errors.InfrablocksError` naming the path, never a traceback.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from infrablocks.errors import InfrablocksError


def output_path_problem(text: str) -> str | None:
    """What is wrong with ``text`` as a file to write, in words, or None when it is valid."""
    if not text.strip():
        return "expected a file path, got an empty value"
    path = Path(text)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):   # a missing file, or parent (below)
        info = None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            return "is a directory; expected a file path (e.g. inside it: " \
                   f"{os.path.join(text, 'FILE')})"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file (a device, a pipe or a socket); expected a file path"
    parent = path.parent
    if not parent.exists():
        return (f"the directory {parent} does not exist (commands create no directories: "
                "make it first, or write to an existing one)")
    if not parent.is_dir():
        return f"{parent} is not a directory"
    try:  # the writers replace the file atomically: a new file must be creatable here
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".infrablocks-probe-")
    except OSError as exc:
        return f"cannot create a file in {parent} ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    if info is not None and not os.access(path, os.W_OK):
        return "is not writable"
    return None


def write_output_file(path: str | Path, data: str | bytes, *, private: bool = False) -> None:
    """Write ``data`` to the user-named ``path`` atomically; its directory must exist.

    ``private``: 0600 (run reports); otherwise what a new file gets under the umask.
    Raises :class:`InfrablocksError` naming the path when the write fails.
    """
    from infrablocks.private_files import PRIVATE_FILE_MODE, write_atomic

    target = Path(path)
    try:
        write_atomic(target, data.encode("utf-8") if isinstance(data, str) else data,
                     mode=PRIVATE_FILE_MODE if private else None)
    except OSError as exc:
        raise InfrablocksError(f"cannot write {target}: {exc.strerror or exc}",
                               hint="the work itself is done; give a path in a directory "
                                    "that exists and is writable") from None
