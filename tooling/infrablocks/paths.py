"""Where things live: the monorepo root and the tool's own (gitignored) working area."""

from __future__ import annotations

import os
from pathlib import Path

from infrablocks.errors import UsageError

REGISTRY_FILE = "blocks.toml"
WORK_DIR_NAME = ".infrablocks"


def find_repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding blocks.toml.

    ``INFRABLOCKS_REPO`` overrides the search.
    """
    override = os.environ.get("INFRABLOCKS_REPO")
    if override:
        root = Path(override).resolve()
        if not (root / REGISTRY_FILE).is_file():
            raise UsageError(f"INFRABLOCKS_REPO={override}: no {REGISTRY_FILE} there")
        return root
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / REGISTRY_FILE).is_file():
            return candidate
    raise UsageError(
        f"no {REGISTRY_FILE} found in {here} or any parent directory",
        hint="run infrablocks from inside a blocks monorepo, or set INFRABLOCKS_REPO",
    )


def work_dir(repo_root: Path) -> Path:
    """The tool's private working area of a repository (state, workdirs, logs, local cloud)."""
    return repo_root / WORK_DIR_NAME
