"""Which released or deployed block versions were edited since: their code must not change.

A version is **frozen** once it is recorded as released in ``blocks.lock`` (``doit release``)
or deployed in a persistent environment (its deployment record keeps the digest of the code
applied, :data:`~infrablocks.state.records.EXTRA_CODE`). Ephemeral environments (``t-…``, made
by ``doit env`` and the test commands) do not freeze anything: that is where a version is
developed.

- ``doit check`` reports every edited frozen version with the files that differ
  (:func:`released_check`), and warns about deployments of versions blocks.toml no longer
  declares;
- ``doit create`` refuses to apply an edited frozen version to a persistent environment
  (:func:`refuse_edited`);
- ``doit status`` says whether a deployment's drift comes from edited code
  (:func:`code_changes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from infrablocks.environments import is_ephemeral
from infrablocks.errors import InfrablocksError
from infrablocks.release.digest import ModuleDigest, module_digest
from infrablocks.release.lockfile import LOCK_FILE, read_releases

if TYPE_CHECKING:
    from collections.abc import Iterable

    from infrablocks.registry import BlockVersion, Registry
    from infrablocks.state import DeploymentRecord, StateBackend
    from infrablocks.validators import ValidationOutcome

NEW_VERSION_HINT = ("a released or deployed version must not change: restore its files "
                    "(e.g. `git checkout -- blocks/{block}/{version}`) and make the change in "
                    "a new version: doit new-version {block}")


class EditedVersionError(InfrablocksError):
    """A frozen block version's code differs from what was released or deployed."""


@dataclass
class EditedVersion:
    """A frozen version whose code differs now."""

    block: str
    version: str
    frozen_by: list[str] = field(default_factory=list)     # "released in blocks.lock", …
    differences: list[str] = field(default_factory=list)   # "main.tf (changed)", …

    def describe(self) -> str:
        return (f"{self.block} {self.version} ({', '.join(self.frozen_by)}) was edited: "
                + ", ".join(self.differences))

    def hint(self) -> str:
        return NEW_VERSION_HINT.format(block=self.block, version=self.version)


def persistent_records(backend: StateBackend) -> list[DeploymentRecord]:
    """Every deployment record of every persistent (not ``t-…``) environment with state."""
    return [record for environment in backend.list_environments()
            if not is_ephemeral(environment)
            for record in backend.list_records(environment)]


def frozen_code(registry: Registry, records: Iterable[DeploymentRecord]
                ) -> dict[tuple[str, str], list[tuple[str, ModuleDigest]]]:
    """``(block, version) → [(why frozen, code digest)]``: blocks.lock first, then records."""
    frozen: dict[tuple[str, str], list[tuple[str, ModuleDigest]]] = {}
    for key, release in sorted(read_releases(registry.path.parent).items()):
        frozen.setdefault(key, []).append((f"released in {LOCK_FILE}", release.code))
    for record in sorted(records, key=lambda r: (r.block, r.version, r.environment)):
        code = ModuleDigest.from_json(record.code_digest)
        if code is not None:
            frozen.setdefault((record.block, record.version), []).append(
                (f"deployed in {record.environment}", code))
    return frozen


def edited(version: BlockVersion,
           frozen: list[tuple[str, ModuleDigest]]) -> EditedVersion | None:
    """``version`` against what froze it: None when its code is still the same everywhere."""
    if not frozen:
        return None
    now = module_digest(version)
    found = EditedVersion(version.block, str(version.version))
    for why, code in frozen:
        if code.digest != now.digest:
            found.frozen_by.append(why)
            for difference in now.differences(code):
                if difference not in found.differences:
                    found.differences.append(difference)
    return found if found.frozen_by else None


def edited_versions(registry: Registry, records: Iterable[DeploymentRecord]
                    ) -> list[EditedVersion]:
    """Every frozen version blocks.toml declares whose code was edited."""
    found = []
    for (block, version), frozen in sorted(frozen_code(registry, records).items()):
        declared = registry.blocks.get(block)
        if declared is None or not _declares(declared, version):
            continue
        entry = edited(registry.block_version(block, version), frozen)
        if entry is not None:
            found.append(entry)
    return found


def _declares(block: object, version: str) -> bool:
    from infrablocks.versions import parse_version

    try:
        return parse_version(version) in block.versions  # type: ignore[attr-defined]
    except Exception:  # a version text that no longer parses is not declared
        return False


def undeclared_deployments(registry: Registry, records: Iterable[DeploymentRecord]
                           ) -> list[str]:
    """``"app 1.0.0 in prod"`` for each deployment of a version blocks.toml no longer declares
    (it can still be destroyed from the code kept with its record)."""
    return [f"{r.block} {r.version} in {r.environment}" for r in records
            if r.block not in registry.blocks or not _declares(registry.blocks[r.block],
                                                                r.version)]


def refuse_edited(registry: Registry, backend: StateBackend, environment: str,
                  versions: Iterable[BlockVersion]) -> None:
    """``EditedVersionError`` when any of ``versions`` is frozen and was edited, and
    ``environment`` is persistent (an ephemeral one may run edited code: that is how a new
    version is developed)."""
    if is_ephemeral(environment):
        return
    versions = list(versions)
    frozen = frozen_code(registry, (r for r in persistent_records(backend)
                                    if any(r.block == v.block and r.version == str(v.version)
                                           for v in versions)))
    found = [entry for version in versions
             if (entry := edited(version, frozen.get((version.block, str(version.version)),
                                                     []))) is not None]
    if not found:
        return
    raise EditedVersionError(
        f"refusing to apply edited code to {environment}:\n  "
        + "\n  ".join(entry.describe() for entry in found),
        hint=found[0].hint())


def code_changes(version: BlockVersion, record: DeploymentRecord) -> list[str] | None:
    """The files of ``version`` that differ from the code ``record`` was applied with (empty
    when none); None when the record predates code digests."""
    recorded = ModuleDigest.from_json(record.code_digest)
    if recorded is None:
        return None
    return module_digest(version).differences(recorded)


def released_check(registry: Registry) -> ValidationOutcome:
    """``doit check``: edited released or deployed versions (problems) and deployments of
    versions blocks.toml no longer declares (warnings)."""
    from infrablocks.state import backend_from_settings
    from infrablocks.validators import ValidationOutcome

    outcome = ValidationOutcome()
    records: list[DeploymentRecord] = []
    try:
        backend = backend_from_settings(registry.settings.get("state"), registry.path.parent)
        records = persistent_records(backend)
    except InfrablocksError as exc:
        outcome.info.append(f"deployments not checked (state backend: "
                            f"{exc.message.splitlines()[0]}); {LOCK_FILE} checked")
    for entry in edited_versions(registry, records):
        outcome.problems.append(f"{entry.describe()}; hint: {entry.hint()}")
    for text in undeclared_deployments(registry, records):
        outcome.info.append(f"warning: {text} is deployed but blocks.toml no longer declares "
                            "that version (destroy it with `doit destroy`, which uses the code "
                            "kept with its record)")
    frozen = len(frozen_code(registry, records))
    outcome.info.append(f"{frozen} released or deployed block "
                        f"version{'' if frozen == 1 else 's'} frozen")
    return outcome
