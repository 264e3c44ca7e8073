"""The provider's filesystem mirror (the CLI config pointing at it: test_terraform_cliconfig)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infrablocks.cloud.local.mirror import ensure_mirror, launcher_path, launcher_text


def test_launcher_runs_this_venvs_python_on_the_provider(tmp_path: Path) -> None:
    ensure_mirror(tmp_path / "mirror")
    launcher = launcher_path(tmp_path / "mirror")
    assert launcher == (tmp_path / "mirror" / "infrablocks.local" / "infrablocks" / "localcloud"
                        / "0.1.0" / "linux_amd64" / "terraform-provider-localcloud_v0.1.0")
    assert launcher.read_text() == (
        f'#!/bin/sh\nexec {sys.executable} -m infrablocks.cloud.local.provider "$@"\n')
    assert os.access(launcher, os.X_OK)


def test_ensure_mirror_is_idempotent_and_repairs(tmp_path: Path) -> None:
    ensure_mirror(tmp_path)
    launcher = launcher_path(tmp_path)
    before = launcher.stat()
    ensure_mirror(tmp_path)
    assert launcher.stat().st_ino == before.st_ino  # untouched when right
    launcher.write_text(launcher_text("/old/venv/bin/python"))
    ensure_mirror(tmp_path)
    assert sys.executable in launcher.read_text()
