"""Running Debian's packer (1.6.6) on an image template, offline."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infrablocks.errors import InfrablocksError
from infrablocks.private_files import open_private, private_dir

PACKER_ENV = "INFRABLOCKS_PACKER"   # override of the packer executable
DEFAULT_PACKER = "/usr/bin/packer"

# Lines of packer's human output that carry the reason of a failure: its own error reports,
# and what the provisioners wrote to stderr ("==> BUILD: text"); progress lines are left out.
_ERROR_LINE = re.compile(r"(^==> |^--> |^Build '|error|failed|\* |missing|not found|unsupported)",
                         re.IGNORECASE)
_PROGRESS_LINE = re.compile(r"(Running local shell script|Running post-processor|Wait completed|"
                            r"Builds finished|Running the cleanup provisioner|Did not export)")


@dataclass(frozen=True)
class PackerRun:
    returncode: int
    log_path: Path


class PackerError(InfrablocksError):
    """packer build failed; the message carries packer's error lines and the log path."""


def packer_executable() -> str:
    candidate = os.environ.get(PACKER_ENV) or (
        DEFAULT_PACKER if os.access(DEFAULT_PACKER, os.X_OK) else shutil.which("packer"))
    if not candidate or not os.access(candidate, os.X_OK):
        raise InfrablocksError(
            "packer not found (looked at $INFRABLOCKS_PACKER, /usr/bin/packer and PATH)",
            hint="install Debian's packer: scripts/bootstrap, or apt-get install packer")
    return candidate


def packer_build(template_dir: Path, variables: dict[str, str], log_path: Path,
                 *, what: str, scratch_dir: Path) -> PackerRun:
    """``packer build -var k=v … .`` in ``template_dir``; output goes to ``log_path``.

    Raises PackerError naming ``what`` with packer's error lines when the build fails.
    ``scratch_dir`` receives packer's cache and temporary files, so nothing lands in the source
    tree or the user's home.
    """
    command = [packer_executable(), "build", "-color=false", "-on-error=cleanup"]
    for key, value in sorted(variables.items()):
        command += ["-var", f"{key}={value}"]
    command.append(".")
    cache = scratch_dir / "packer-cache"
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CHECKPOINT_DISABLE": "1",
        "PACKER_CACHE_DIR": str(cache),
        "TMPDIR": str(scratch_dir),
        "PACKER_NO_COLOR": "1",
    }
    private_dir(log_path.parent, base=log_path.parent.parent)   # logs: 0700 folders, 0600 files
    with open_private(log_path, "w") as log:
        log.write("$ " + " ".join(command) + f"\n# in {template_dir}\n")
        log.flush()
        result = subprocess.run(command, cwd=template_dir, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        lines = [line.rstrip() for line in log_path.read_text(errors="replace").splitlines()[2:]]
        errors = list(dict.fromkeys(
            line for line in lines
            if line.strip() and _ERROR_LINE.search(line) and not _PROGRESS_LINE.search(line)))
        shown = (errors or [line for line in lines if line.strip()])[-15:]
        detail = "\n".join(f"    {line.strip()}" for line in shown)
        raise PackerError(
            f"{what}: packer build failed (exit {result.returncode})\n{detail}",
            hint=f"full log: {log_path}")
    return PackerRun(result.returncode, log_path)
