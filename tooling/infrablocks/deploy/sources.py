"""The code a deployment was applied with, kept beside its record in the state backend.

Every apply that changes a deployment's code stores a copy of the block version's files (what
Terraform saw: :func:`infrablocks.release.digest.module_files`) as the deployment's document
``source``. A deployment whose version has since left blocks.toml can then still be destroyed
(or planned) from exactly the code it was applied with: :func:`recorded_version` writes the
copy back into a private directory and describes it as a ``BlockVersion``.

Document ``source``: ``{"block", "version", "digest", "images", "requires": {dep: constraint},
"files": {path: base64}}``. Block code holds no secrets (inputs are not part of it).
"""

from __future__ import annotations

import base64
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.release.digest import ModuleDigest
    from infrablocks.state import DeploymentRecord, StateBackend

SOURCE_DOCUMENT = "source"
MAX_SOURCE_BYTES = 8 * 1024 * 1024   # a block's code; more is refused with a clear message


def store_source(backend: StateBackend, environment: str, block: str, version: BlockVersion,
                 code: ModuleDigest, record: DeploymentRecord | None) -> str:
    """Keep a copy of ``version``'s code with the deployment (skipped when the record says the
    same code is kept already); the document's name."""
    from infrablocks.release.digest import module_files
    from infrablocks.state.records import EXTRA_SOURCE

    if (record is not None and record.extra.get(EXTRA_SOURCE) == SOURCE_DOCUMENT
            and (record.code_digest or {}).get("digest") == code.digest):
        return SOURCE_DOCUMENT
    files: dict[str, str] = {}
    size = 0
    for relative, path in module_files(version.path):
        data = path.read_bytes()
        size += len(data)
        files[relative] = base64.b64encode(data).decode()
    if size > MAX_SOURCE_BYTES:
        raise InfrablocksError(
            f"{version.label}: its code is {size} bytes, more than the {MAX_SOURCE_BYTES} kept "
            "with a deployment", hint=f"keep large files out of {version.path}")
    backend.put_document(environment, block, SOURCE_DOCUMENT, {
        "block": block, "version": str(version.version), "digest": code.digest,
        "images": list(version.images),
        "requires": {name: str(constraint) for name, constraint in version.requires.items()},
        "files": files})
    return SOURCE_DOCUMENT


def recorded_version(workspace: Workspace, environment: str, record: DeploymentRecord
                     ) -> BlockVersion:
    """The deployment's version as it was applied, from the code kept with its record.

    ``InfrablocksError`` when the record keeps no code (deployed before infrablocks kept it).
    """
    from infrablocks.private_files import private_dir, write_private_file
    from infrablocks.registry import BlockVersion
    from infrablocks.versions import parse_constraint, parse_version

    block = record.block
    document = workspace.backend.get_document(environment, block, SOURCE_DOCUMENT)
    if not document or document.get("version") != record.version:
        raise InfrablocksError(
            f"{block} {record.version} is deployed in {environment}, but blocks.toml no longer "
            "declares that version and its deployment keeps no copy of its code",
            hint=f"restore blocks/{block}/{record.version} and its blocks.toml entry (e.g. "
                 "from git history), then run the command again")
    directory = workspace.work_root / ".recorded" / environment / block / record.version
    private_dir(directory)
    for relative, encoded in (document.get("files") or {}).items():
        path = PurePosixPath(relative)
        if path.is_absolute() or ".." in path.parts:
            raise InfrablocksError(f"the code kept with {block} {record.version} in "
                                   f"{environment} names an unsafe path {relative!r}")
        target = directory / Path(*path.parts)
        private_dir(target.parent)
        write_private_file(target, base64.b64decode(encoded))
    requires = {str(name): parse_constraint(str(text))
                for name, text in (document.get("requires") or {}).items()}
    return BlockVersion(block, parse_version(record.version), path=directory,
                        requires=requires, images=list(document.get("images") or []))


def version_for_record(workspace: Workspace, environment: str, record: DeploymentRecord,
                       *, as_applied: bool = False) -> tuple[BlockVersion, bool]:
    """The version a record names: from blocks.toml when it still declares it, else from the
    code kept with the record. The flag says whether it came from the record.

    ``as_applied``: also take the kept code when blocks.toml's version was edited since it was
    applied (what `destroy` needs: the edited code may no longer even plan).
    """
    from infrablocks.errors import UsageError
    from infrablocks.release.digest import module_digest

    try:
        version = workspace.registry.block_version(record.block, record.version)
    except UsageError:
        return recorded_version(workspace, environment, record), True
    applied = (record.code_digest or {}).get("digest")
    if as_applied and applied and module_digest(version).digest != applied:
        try:
            return recorded_version(workspace, environment, record), True
        except InfrablocksError:
            return version, False
    return version, False
