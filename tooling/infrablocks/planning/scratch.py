"""Private scratch directories for planning and applying (they hold state copies and saved
plans, secrets included).

``.infrablocks/private/.KIND-PID-XXXXXXXX/`` (0700, in the private root beside the working area
``WORK_ROOT``: one of the state folders, the only places that may hold secrets): removed by the
command that made it, also after an error or Ctrl-C; one left by a killed process (its pid no
longer runs) is removed by the next plan or apply.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

KINDS = ("plan", "apply")
_NAME = re.compile(rf"^\.(?:{'|'.join(KINDS)})-(\d+)-")


def private_scratch(work_root: Path, kind: str) -> Path:
    """A fresh private directory ``work_root/.KIND-PID-…``; sweeps those of dead processes."""
    import os

    from infrablocks.private_files import private_dir
    from infrablocks.processes import is_alive
    from infrablocks.terraform.workdir import private_root_for

    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}")
    root = private_dir(private_root_for(work_root), base=work_root.parent)
    for entry in root.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_dir() and not is_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{kind}-{os.getpid()}-", dir=root))
