"""Private scratch directories for planning and applying (they hold state copies and saved
plans, secrets included).

``WORK_ROOT/.KIND-PID-XXXXXXXX/`` (0700, in the repository's private working area): removed by
the command that made it, also after an error or Ctrl-C; one left by a killed process (its pid
no longer runs) is removed by the next plan or apply.
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

    from infrablocks.state.locks import process_alive

    if kind not in KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}")
    work_root.mkdir(parents=True, exist_ok=True)
    work_root.chmod(0o700)
    for entry in work_root.iterdir():
        match = _NAME.match(entry.name)
        if match and entry.is_dir() and not process_alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{kind}-{os.getpid()}-", dir=work_root))
