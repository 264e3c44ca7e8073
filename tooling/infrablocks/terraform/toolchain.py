"""The driver wired up for a repository: its Terraform, CLI config, logs and local cloud.

Layout inside the repository's working area (``<repo>/.infrablocks``):

    terraform/terraform.rc     the CLI config every Terraform process reads
    terraform/mirror/          the filesystem mirror holding the local-cloud provider
    terraform/plugin-cache/    providers from registries, shared by all working directories
    logs/terraform/            one log file per Terraform command
    work/ENV/BLOCK/            working directories (``prepare_workdir(work_root(repo), …)``)
    cloud/                     the local cloud (``LOCALCLOUD_ROOT`` unless already set)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from infrablocks.paths import work_dir
from infrablocks.terraform.binary import find_terraform
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import ProgressCallback, Terraform


def work_root(repo_root: Path) -> Path:
    """Where the per-(environment, block) working directories live."""
    return work_dir(repo_root) / "work"


def terraform_log_dir(repo_root: Path) -> Path:
    return work_dir(repo_root) / "logs" / "terraform"


def cli_config_paths(repo_root: Path) -> CliConfigPaths:
    return CliConfigPaths.under(work_dir(repo_root) / "terraform")


def repo_terraform(repo_root: Path, binary_setting: str | None = None, *,
                   env_extra: Mapping[str, str] | None = None,
                   on_output: ProgressCallback | None = None,
                   cancel: threading.Event | None = None,
                   timeout: float | None = None) -> Terraform:
    """A ``Terraform`` driver for ``repo_root``.

    ``binary_setting`` is blocks.toml's ``[terraform] binary`` (or None). Writes the CLI config
    and puts the local-cloud provider in the mirror. Use ``.for_deployment(env, block)`` to get
    a driver whose errors and logs name the deployment.
    """
    binary = find_terraform(binary_setting, base_dir=repo_root)
    config = write_cli_config(cli_config_paths(repo_root))
    from infrablocks.cloud.local.control import ENV_ROOT, default_root

    env = {ENV_ROOT: str(default_root(repo_root)), **(env_extra or {})}
    return Terraform(binary, config, terraform_log_dir(repo_root), env, on_output=on_output,
                     cancel=cancel, timeout=timeout)
