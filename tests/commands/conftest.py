"""Command-level tests: run the real `doit` in a subprocess inside fixture repositories.

The repositories are built with tests/support/registry_repo.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.registry_repo import copy_example, write_files

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    env["TERM"] = "dumb"
    return env


def run_doit(repo: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``doit ARGS`` with ``repo`` as the working directory."""
    return subprocess.run([str(DOIT), *args], cwd=repo, env=_environment(), text=True,
                          capture_output=True, timeout=timeout, check=False)


def _write_repo(root: Path, toml: str, files: dict[str, str] | None = None,
               versions: tuple[str, ...] = ()) -> Path:
    """A monorepo: dodo.py, blocks.toml, and the given block version directories/files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dodo.py").write_text(DODO, encoding="utf-8")
    (root / "blocks.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
    for version in versions:
        (root / "blocks" / version).mkdir(parents=True, exist_ok=True)
    return write_files(root, files or {})


def copy_example_repo(root: Path) -> Path:
    """The project's example registry with its block contracts (variables.tf, outputs.tf) and
    image templates (checked by `doit check`)."""
    copy_example(root)
    (root / "dodo.py").write_text(DODO, encoding="utf-8")
    if (MAIN_REPO / "images").is_dir():
        shutil.copytree(MAIN_REPO / "images", root / "images")
    return root


@pytest.fixture
def example_repo(tmp_path: Path) -> Path:
    return copy_example_repo(tmp_path / "example")


@pytest.fixture
def doit() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``doit(repo, *args)``: the real doit, in a subprocess, in ``repo``."""
    return run_doit


@pytest.fixture
def write_repo() -> Callable[..., Path]:
    """``write_repo(root, toml, files=None, versions=("NAME/VERSION", ...))``."""
    return _write_repo
