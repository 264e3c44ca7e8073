"""The filesystem mirror Terraform installs the local-cloud provider from (offline).

The "provider binary" is a two-line launcher that runs this venv's Python on
``infrablocks.cloud.local.provider``. Terraform's lock file hash (``h1:``) covers the launcher
only, so it changes only when the venv's Python path does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from infrablocks.private_files import write_atomic

PROVIDER_HOST = "infrablocks.local"
PROVIDER_NAMESPACE = "infrablocks"
PROVIDER_TYPE = "localcloud"
PROVIDER_VERSION = "0.1.0"
PROVIDER_SOURCE = f"{PROVIDER_HOST}/{PROVIDER_NAMESPACE}/{PROVIDER_TYPE}"
PLATFORM = "linux_amd64"


def launcher_path(mirror_dir: Path) -> Path:
    """Where the launcher lives inside the mirror (Terraform's unpacked mirror layout)."""
    return (Path(mirror_dir) / PROVIDER_HOST / PROVIDER_NAMESPACE / PROVIDER_TYPE
            / PROVIDER_VERSION / PLATFORM
            / f"terraform-provider-{PROVIDER_TYPE}_v{PROVIDER_VERSION}")


def launcher_text(python: str | None = None) -> str:
    return (f"#!/bin/sh\nexec {python or sys.executable} -m infrablocks.cloud.local.provider"
            ' "$@"\n')


def serve_argv(python: str | None = None) -> list[str]:
    """The command serving the provider once for a whole run (``provider_serve``)."""
    return [python or sys.executable, "-m", "infrablocks.cloud.local.provider", "--serve"]


def ensure_mirror(mirror_dir: Path) -> None:
    """Create (or fix) the launcher in ``mirror_dir``; a no-op when it is already right.

    Safe from several processes at once: the launcher is replaced atomically.
    """
    path = launcher_path(mirror_dir)
    text = launcher_text()
    try:
        if path.read_text() == text and os.access(path, os.X_OK):
            return
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text, mode=0o755)
