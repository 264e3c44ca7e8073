"""Platforms: where a deployment's instances, volumes and images live (see ``base.Platform``).

:func:`open_platform` is the one place a platform object is built; the workspace calls it once
per platform an environment uses (``Workspace.platform(environment)``). Implementations are
registered by kind as ``"module:class"`` (imported only when used); each class has
``open(repo_root, **settings)``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError
from infrablocks.platforms.base import Platform, SweepReport

__all__ = ["DEFAULT_PLATFORM", "PLATFORMS", "Platform", "SweepReport", "open_platform"]

DEFAULT_PLATFORM = "local"
PLATFORMS: dict[str, str] = {
    "local": "infrablocks.platforms.local:LocalPlatform",
    "aws": "infrablocks.platforms.aws:AwsPlatform",
}


def open_platform(kind: str, repo_root: Path, settings: dict[str, Any] | None = None,
                  *, where: str = "platform") -> Platform:
    """The platform ``kind`` for ``repo_root`` with its ``settings`` (blocks.toml's
    ``[platforms.NAME]`` table without ``kind``, see ``platforms.choice``; the local platform
    takes none). ``where`` names the setting in the error for an unknown kind."""
    target = PLATFORMS.get(kind)
    if target is None:
        raise ConfigError(f"{where}: unknown platform {kind!r}",
                          hint=f"valid: {', '.join(sorted(PLATFORMS))}")
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    platform: Platform = cls.open(repo_root, **(settings or {}))
    return platform
