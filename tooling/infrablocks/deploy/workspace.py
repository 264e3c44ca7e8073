"""Everything a deployment command needs about one repository, opened once per command."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from infrablocks.environments import (
    SubnetAllocator,
    backend_locator,
    is_ephemeral,
    parse_subnet,
    pinned_subnets,
    subnets_in_state,
)
from infrablocks.errors import UsageError
from infrablocks.paths import find_repo_root
from infrablocks.registry import Registry, load_registry, suggest
from infrablocks.state import DEPLOYED, StateBackend, backend_from_settings

if TYPE_CHECKING:
    from semver import Version

    from infrablocks.platforms import Platform
    from infrablocks.platforms.choice import PlatformProfile
    from infrablocks.registry import BlockVersion
    from infrablocks.rolling.outcome import UpgradeOutcome
    from infrablocks.terraform.binary import TerraformBinary
    from infrablocks.terraform.driver import Terraform


class Roller(Protocol):
    """Rolls units of a deployed stateful block through the rolling procedure (one member at
    a time, gates, journal, ``--resume``): what ``create`` / ``apply`` need to repair a crashed
    or stopped member, or replace members, of a deployed stateful block.

    The implementation is :func:`infrablocks.upgrade.engine.roll` (above this layer), given to
    :func:`open_workspace` by the commands (``roller=``); ``deploy`` never imports it.
    ``units``: unit indexes to roll; ``down``: those known not to serve (they go first);
    ``resume``: continue the block's unfinished journal; ``hold_lock``: False when the caller
    holds the block's lock; ``say``: progress lines. Returns the outcome (``order``: the units
    rolled, ``members``: index → member name); raises ``UpgradeHalted`` when a gate fails.
    """

    def __call__(self, workspace: Workspace, block: str, environment: str, *,
                 units: Iterable[int] | None = None, down: Iterable[int] = (),
                 resume: bool = False, hold_lock: bool = True,
                 say: Callable[[str], None] | None = None) -> UpgradeOutcome: ...


@dataclass
class Workspace:
    """A repository's registry, state backend, platforms and Terraform, for one command.

    ``roller``: how this command rolls a deployed stateful block's members (:class:`Roller`);
    None when the command was opened without one (a repair that needs it is refused).
    """

    repo_root: Path
    registry: Registry
    backend: StateBackend
    subnets: SubnetAllocator
    _terraform_setting: str | None = None
    _terraform_parts: tuple[TerraformBinary, Path] | None = field(default=None, repr=False)
    chosen_platform: str | None = None     # --platform: throwaway environments' platform
    roller: Roller | None = None
    _platforms: dict[str, Platform] = field(default_factory=dict, repr=False)
    _profiles: dict[str, PlatformProfile] | None = field(default=None, repr=False)
    _environment_platforms: dict[str, str] = field(default_factory=dict, repr=False)
    _owned_subnets: dict[tuple[str, bool], str] = field(default_factory=dict, repr=False)
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

    def subnet(self, environment: str, *, claim: bool = False,
               destroying: bool = False, saved_plan: Path | None = None) -> str:
        """The environment's subnet: the platform's (AWS: a subnet of its VPC), else a /24 of
        127.42.0.0/16 from the allocator (blocks.toml ``subnet`` pins either).

        ``claim=True`` only for commands that change the environment (create, upgrade,
        re-apply): a read-only command looks without claiming (nothing written).
        ``destroying=True``: the subnet the environment is on, whatever blocks.toml pins.
        ``saved_plan`` (with ``claim``): the file of a saved plan made on it (the claim then
        holds while that file exists: ``SubnetAllocator.subnet_for``)."""
        declared = self.registry.environments.get(environment)
        configured = declared.extra.get("subnet") if declared else None
        cached = (environment, claim)    # a look (claim=False) never stands in for a claim
        if cached in self._owned_subnets:
            return self._owned_subnets[cached]
        owned = self.platform(environment).environment_subnet(
            environment, None if configured is None or destroying else str(configured),
            create=claim)
        if owned is not None:
            self._owned_subnets[cached] = owned   # one look-up per command
            return owned
        if configured is not None:
            configured = parse_subnet(str(configured),
                                      where=f"blocks.toml environments.{environment}.subnet")
        return self.subnets.subnet_for(environment, configured, claim=claim,
                                       destroying=destroying, saved_plan=saved_plan)

    # -- platforms --------------------------------------------------------------------------------

    def platform(self, environment: str | None = None) -> Platform:
        """The platform ``environment`` runs on (None: ``defaults.platform``, else ``local``).

        Which one is blocks.toml's choice (``infrablocks.platforms.choice``); each is built
        once per workspace (``infrablocks.platforms.open_platform``): every environment on the
        local platform shares the repository's one local cloud.
        """
        return self._open(self.platform_profile(environment))

    def _open(self, profile: PlatformProfile) -> Platform:
        from infrablocks.platforms import open_platform

        with self._lock:
            if profile.name not in self._platforms:
                self._platforms[profile.name] = open_platform(
                    profile.kind, self.repo_root, profile.settings,
                    where=f"blocks.toml platforms.{profile.name}")
            return self._platforms[profile.name]

    def platform_profile(self, environment: str | None = None) -> PlatformProfile:
        """The platform profile of ``environment``, fixed for the workspace at the first ask
        (a throwaway environment's comes from its deployments' records, or ``--platform``)."""
        from infrablocks.environments import is_ephemeral
        from infrablocks.platforms.choice import (
            environment_platform,
            profiles,
            recorded_platform,
        )

        with self._lock:
            if self._profiles is None:
                self._profiles = profiles(self.registry)
            if environment is not None and environment in self._environment_platforms:
                return self._profiles[self._environment_platforms[environment]]
        recorded = None
        if environment is not None and is_ephemeral(environment) \
                and environment not in self.registry.environments:
            recorded = recorded_platform(self.backend, environment)
        name = environment_platform(self.registry, environment, recorded=recorded,
                                    chosen=self.chosen_platform)
        if name not in self._profiles:
            from infrablocks.registry import suggest

            near = suggest(name, self._profiles, quote="'")
            raise UsageError(f"unknown platform {name!r}{near}",
                             hint="platforms in blocks.toml: "
                                  f"{', '.join(sorted(self._profiles))}")
        if environment is not None:
            with self._lock:
                self._environment_platforms.setdefault(environment, name)
                name = self._environment_platforms[environment]
        return self._profiles[name]

    def choose_platform(self, name: str | None) -> None:
        """``--platform NAME``: the platform of the throwaway environments this command makes
        (validated now: a ``UsageError`` names the declared ones)."""
        if name is None:
            return
        from infrablocks.platforms.choice import profiles
        from infrablocks.registry import suggest

        known = profiles(self.registry)
        if name not in known:
            near = suggest(name, known, quote="'")
            raise UsageError(f"--platform: unknown platform {name!r}{near}",
                             hint=f"platforms in blocks.toml: {', '.join(sorted(known))} "
                                  "(declare others as tables platforms.NAME)")
        self.chosen_platform = name

    def block_module(self, environment: str, version: BlockVersion) -> Path:
        """The block version's Terraform module on the environment's platform."""
        return self.platform(environment).block_module(version.path)

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
        environment's platform adds what its provider needs (``Platform.terraform_env``). Made
        while this process holds the block's lock, its processes carry the lock's token
        (``state.locks.worker_environment``): whoever takes over the lock after this process
        died waits for them.
        """
        from infrablocks.state.locks import worker_environment
        from infrablocks.terraform.driver import Terraform
        from infrablocks.terraform.toolchain import terraform_log_dir

        binary, cli_config = self._terraform_setup()
        platform = self.platform(environment)
        env = dict(platform.terraform_env())
        if environment is not None and block is not None:
            env.update(worker_environment(environment, block))
        return Terraform(binary, cli_config, terraform_log_dir(self.repo_root), env,
                         environment=environment, block=block,
                         shared_providers=platform.shared_providers())

    def close(self) -> None:
        """Stop what the workspace started for its Terraform runs (the platforms' shared
        provider processes). Commands run through doit need not call it: the command layer
        stops every shared provider when the command ends."""
        with self._lock:
            platforms = list(self._platforms.values())
        for platform in platforms:
            for shared in platform.shared_providers():
                shared.stop()

    def _terraform_setup(self) -> tuple[TerraformBinary, Path]:
        with self._lock:
            if self._terraform_parts is None:
                from infrablocks.terraform.binary import find_terraform
                from infrablocks.terraform.cliconfig import (
                    provider_methods,
                    repo_mirror_folders,
                    write_cli_config,
                )
                from infrablocks.terraform.toolchain import cli_config_paths

                binary = find_terraform(self._terraform_setting, base_dir=self.repo_root)
                mirrors = repo_mirror_folders(self.registry.settings.get("terraform"),
                                              self.repo_root)
                config = write_cli_config(cli_config_paths(self.repo_root),
                                          methods=provider_methods(mirrors))
                self._terraform_parts = (binary, config)
            return self._terraform_parts

    @property
    def work_root(self) -> Path:
        from infrablocks.terraform.toolchain import work_root

        return work_root(self.repo_root)


def open_workspace(repo_root: Path | None = None, *, roller: Roller | None = None) -> Workspace:
    """The workspace of ``repo_root`` (default: the repository around the working directory).

    ``roller``: the rolling procedure's entry point for repairs of stateful blocks
    (:class:`Roller`; the commands pass :func:`infrablocks.upgrade.engine.roll`).

    The local platform is opened here, so that what it reads from the process environment
    (``LOCALCLOUD_ROOT``) is read once, when the command starts; the platform settings of
    blocks.toml are validated here too (``ConfigError`` listing every problem).
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
                                reserved=pinned_subnets(registry),
                                deployed_subnets=lambda env: state_subnets(backend, env)),
        _terraform_setting=terraform_settings.get("binary"),
        roller=roller,
    )
    from infrablocks.platforms import DEFAULT_PLATFORM

    workspace.platform_profile(None)   # validates blocks.toml's platform keys
    workspace._open(workspace._profiles[DEFAULT_PLATFORM])  # type: ignore[index]
    return workspace


def state_subnets(backend: StateBackend, environment: str) -> set[str]:
    """The /24s the instances in ``environment``'s Terraform states are on."""
    found: set[str] = set()
    for block in backend.list_blocks(environment):
        found |= subnets_in_state(backend.read_state(environment, block))
    return found
