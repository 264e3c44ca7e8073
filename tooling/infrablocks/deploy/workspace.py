"""Everything a deployment command needs about one repository, opened once per command."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.environments import (
    SubnetAllocator,
    backend_locator,
    is_ephemeral,
    parse_subnet,
    pinned_subnets,
)
from infrablocks.errors import UsageError
from infrablocks.paths import find_repo_root
from infrablocks.registry import Registry, load_registry, suggest
from infrablocks.state import DEPLOYED, StateBackend, backend_from_settings

if TYPE_CHECKING:
    from semver import Version

    from infrablocks.platforms import Platform
    from infrablocks.terraform.binary import TerraformBinary
    from infrablocks.terraform.driver import Terraform


@dataclass
class Workspace:
    """A repository's registry, state backend, platforms and Terraform, for one command."""

    repo_root: Path
    registry: Registry
    backend: StateBackend
    subnets: SubnetAllocator
    _terraform_setting: str | None = None
    _terraform_parts: tuple[TerraformBinary, Path] | None = field(default=None, repr=False)
    _platforms: dict[str, Platform] = field(default_factory=dict, repr=False)
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

    # -- platforms --------------------------------------------------------------------------------

    def platform(self, environment: str | None = None) -> Platform:
        """The platform ``environment`` runs on (None: the default platform, ``local``).

        Built once per workspace and platform (``infrablocks.platforms.open_platform``); every
        environment on the local platform shares the repository's one local cloud.
        """
        from infrablocks.platforms import DEFAULT_PLATFORM, open_platform

        kind = DEFAULT_PLATFORM  # issue 12: [environments.NAME] platform = "aws" chooses here
        with self._lock:
            if kind not in self._platforms:
                self._platforms[kind] = open_platform(kind, self.repo_root)
            return self._platforms[kind]

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

        The executable's version probe and the CLI config happen once per workspace; the
        environment's platform adds what its provider needs (``Platform.terraform_env``).
        """
        from infrablocks.terraform.driver import Terraform
        from infrablocks.terraform.toolchain import terraform_log_dir

        binary, cli_config = self._terraform_setup()
        return Terraform(binary, cli_config, terraform_log_dir(self.repo_root),
                         self.platform(environment).terraform_env(),
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
    """The workspace of ``repo_root`` (default: the repository around the working directory).

    The default platform is opened here, so that what it reads from the process environment
    (``LOCALCLOUD_ROOT``) is read once, when the command starts.
    """
    root = repo_root or find_repo_root()
    registry = load_registry(root)
    terraform_settings = registry.settings.get("terraform", {}) or {}
    backend = backend_from_settings(registry.settings.get("state"), root)
    workspace = Workspace(
        repo_root=root,
        registry=registry,
        backend=backend,
        subnets=SubnetAllocator(root, locate=backend_locator(backend, root),
                                has_state=lambda env: bool(backend.list_blocks(env)),
                                reserved=pinned_subnets(registry)),
        _terraform_setting=terraform_settings.get("binary"),
    )
    workspace.platform()
    return workspace
