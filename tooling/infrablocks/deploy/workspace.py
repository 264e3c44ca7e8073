"""Everything a deployment command needs about one repository, opened once per command."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.environments import SubnetAllocator, is_ephemeral, parse_subnet
from infrablocks.errors import UsageError
from infrablocks.paths import find_repo_root, work_dir
from infrablocks.registry import Registry, load_registry, suggest
from infrablocks.state import DEPLOYED, StateBackend, backend_from_settings

if TYPE_CHECKING:
    from semver import Version

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.terraform.binary import TerraformBinary
    from infrablocks.terraform.driver import Terraform


@dataclass
class Workspace:
    """A repository's registry, state backend, local cloud and Terraform, for one command."""

    repo_root: Path
    registry: Registry
    backend: StateBackend
    cloud: LocalCloud
    subnets: SubnetAllocator
    _terraform_setting: str | None = None
    _terraform_parts: tuple[TerraformBinary, Path] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # -- environments ---------------------------------------------------------------------------

    def environment_name(self, name: str | None) -> str:
        """The environment a command acts on: ``--env``, else blocks.toml's default."""
        chosen = name or self.registry.default_environment
        if not chosen:
            raise UsageError("no environment given and blocks.toml has no defaults.environment",
                             hint="pass --env NAME")
        return chosen

    def check_known_environment(self, name: str) -> None:
        """Persistent environments must be declared; ephemeral ones must exist in the state."""
        if name in self.registry.environments:
            return
        if is_ephemeral(name) and name in self.backend.list_environments():
            return
        known = sorted(self.registry.environments)
        raise UsageError(
            f"unknown environment `{name}`{suggest(name, known)}",
            hint=f"environments in blocks.toml: {', '.join(known) or '(none)'}; ephemeral test "
                 "environments are made by `doit env`",
        )

    def pins(self, environment: str) -> dict[str, Version]:
        return dict(self.registry.environment(environment).pins)

    def subnet(self, environment: str) -> str:
        declared = self.registry.environments.get(environment)
        configured = declared.extra.get("subnet") if declared else None
        if configured is not None:
            configured = parse_subnet(str(configured),
                                      where=f"blocks.toml environments.{environment}.subnet")
        return self.subnets.subnet_for(environment, configured)

    def deployed_versions(self, environment: str) -> dict[str, Version]:
        """Blocks deployed in ``environment`` and their versions (from deployment records)."""
        from infrablocks.versions import parse_version

        return {r.block: parse_version(r.version)
                for r in self.backend.list_records(environment) if r.status == DEPLOYED}

    # -- Terraform --------------------------------------------------------------------------------

    def terraform_binary(self) -> TerraformBinary:
        return self._terraform_setup()[0]

    def terraform(self, environment: str | None = None, block: str | None = None) -> Terraform:
        """A fresh driver (a cancelled driver refuses new commands, so one per block run).

        The executable's version probe and the CLI config happen once per workspace.
        """
        from infrablocks.terraform.driver import Terraform
        from infrablocks.terraform.toolchain import (
            LOCALCLOUD_ROOT_ENV,
            terraform_log_dir,
        )

        binary, cli_config = self._terraform_setup()
        return Terraform(binary, cli_config, terraform_log_dir(self.repo_root),
                         {LOCALCLOUD_ROOT_ENV: str(self.cloud.root)},
                         environment=environment, block=block)

    def _terraform_setup(self) -> tuple[TerraformBinary, Path]:
        with self._lock:
            if self._terraform_parts is None:
                from infrablocks.terraform.binary import find_terraform
                from infrablocks.terraform.cliconfig import write_cli_config
                from infrablocks.terraform.toolchain import cli_config_paths

                binary = find_terraform(self._terraform_setting, base_dir=self.repo_root)
                config = write_cli_config(cli_config_paths(self.repo_root))
                self._terraform_parts = (binary, config)
            return self._terraform_parts

    @property
    def work_root(self) -> Path:
        from infrablocks.terraform.toolchain import work_root

        return work_root(self.repo_root)


def open_workspace(repo_root: Path | None = None) -> Workspace:
    from infrablocks.cloud.local.inventory import open_cloud

    root = repo_root or find_repo_root()
    registry = load_registry(root)
    terraform_settings = registry.settings.get("terraform", {}) or {}
    return Workspace(
        repo_root=root,
        registry=registry,
        backend=backend_from_settings(registry.settings.get("state"), root),
        cloud=open_cloud(root),
        subnets=SubnetAllocator(work_dir(root)),
        _terraform_setting=terraform_settings.get("binary"),
    )
