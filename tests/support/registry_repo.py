"""Builds small block monorepos in a temporary directory for the registry/resolution tests."""

from __future__ import annotations

import shutil
import textwrap
import tomllib
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[2]


def make_repo(root: Path, toml: str, *, files: dict[str, str] | None = None,
              missing: tuple[str, ...] = ()) -> Path:
    """Write ``blocks.toml`` and a directory for every declared block version.

    ``files``: extra files (relative path → content, dedented). ``missing``: ``"NAME/VERSION"``
    directories not to create. Versions with an explicit ``path`` get no directory.
    """
    root.mkdir(parents=True, exist_ok=True)
    text = textwrap.dedent(toml)
    (root / "blocks.toml").write_text(text, encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = {}
    blocks = data.get("blocks", {}) if isinstance(data.get("blocks"), dict) else {}
    for name, spec in blocks.items():
        versions = spec.get("versions", {}) if isinstance(spec, dict) else {}
        if not isinstance(versions, dict):
            continue
        for version, vspec in versions.items():
            if isinstance(vspec, dict) and "path" in vspec:
                continue
            if f"{name}/{version}" not in missing:
                (root / "blocks" / name / version).mkdir(parents=True, exist_ok=True)
    return write_files(root, files or {})


def write_files(root: Path, files: dict[str, str]) -> Path:
    """Write each file (path relative to ``root`` → content, dedented), creating directories."""
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content), encoding="utf-8")
    return root


def copy_example(root: Path) -> Path:
    """The project's example registry and block contracts (variables.tf, outputs.tf only)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(MAIN_REPO / "blocks.toml", root / "blocks.toml")
    for tf in sorted((MAIN_REPO / "blocks").glob("*/*/*.tf")):
        if tf.name in ("variables.tf", "outputs.tf"):
            target = root / tf.relative_to(MAIN_REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(tf, target)
    return root


def record_deployed(workspace: Any, environment: str, **versions: str) -> None:
    """Write a ``deployed`` record of each ``block=version`` in ``environment`` (no Terraform,
    no state): what the commands that read records see after a create."""
    from infrablocks.state import new_record

    for block, version in versions.items():
        workspace.backend.put_record(new_record(environment, block, version, outputs=None,
                                                terraform_version="1.15.5"))
