"""``terraform init`` beside other blocks' Terraform runs: one at a time, past the plugin cache.

Terraform's plugin cache is not safe for concurrent use, and two races were seen with blocks
running side by side: two first inits at once fail with "failed to create directory
…/plugin-cache/…: file exists"; and every init re-creates the cache's entry for the mirrored
local-cloud provider (a symlink into the mirror), so another block's running command, which
reaches its provider through that entry, can fail with "there is no package … cached in
.terraform/providers". So inits run one at a time per repository (a file lock, also across
processes; an init is ~0.1-0.2 s), and after an init the working directory's provider links are
pointed past the cache at their real, stable targets.

Every caller that runs Terraform for a block (create, plan, destroy, status, the rolling engine,
a dependent's re-apply) goes through :func:`ensure_init`.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.terraform.toolchain import cli_config_paths

if TYPE_CHECKING:
    from infrablocks.terraform.driver import Terraform

__all__ = ["bypass_plugin_cache", "ensure_init"]


def ensure_init(repo_root: Path, terraform: Terraform, workdir: Path) -> bool:
    """``terraform init`` in ``workdir`` when needed (see the module docstring); True if it ran.

    The lock file is ``<repo>/.infrablocks/terraform/init.lock``, beside the plugin cache.
    """
    cache = cli_config_paths(repo_root).plugin_cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / "init.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ran = terraform.ensure_init(workdir)
        if ran:
            bypass_plugin_cache(workdir / ".terraform" / "providers", cache)
        return ran


def bypass_plugin_cache(providers: Path, cache: Path) -> None:
    """Re-point symlinks into ``cache`` at what they finally resolve to (same content)."""
    if not providers.is_dir():
        return
    for link in providers.glob("*/*/*/*/*"):   # HOST/NAMESPACE/TYPE/VERSION/PLATFORM
        if not link.is_symlink():
            continue
        target = Path(os.readlink(link))
        if not target.is_absolute():
            target = link.parent / target
        if not target.is_relative_to(cache):
            continue  # not through the cache
        final = target.resolve()
        if final.is_relative_to(cache):
            continue  # a real directory in the cache (a registry provider): stable
        temporary = link.with_name(f".{link.name}.tmp")
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(final, target_is_directory=True)
        os.replace(temporary, link)
