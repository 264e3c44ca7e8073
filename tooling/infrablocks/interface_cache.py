"""Which dependency outputs a block version reads: its variables' object attributes, cached;
and which resources a module declares (:func:`module_resources`, for the rolling declarations).

A dependent receives each dependency's outputs as one variable named after the dependency
(docs/ARCHITECTURE.md, "Block interface"); when that variable has an ``object({...})`` type,
only those attributes are sent. Reading them means parsing the module's HCL with python-hcl2
(:func:`infrablocks.contracts.read_interface`), 0.2-0.4 s per block, so the answer is cached in
``<repo>/.infrablocks/cache/inputs/BLOCK-VERSION-DIGEST.json`` under a digest of the module's
``*.tf`` files: an edited module gets a new entry, never a stale one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.paths import work_dir

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion

__all__ = ["dependency_attributes", "module_resources"]


def dependency_attributes(repo_root: Path, version: BlockVersion
                          ) -> dict[str, list[str] | None]:
    """Per dependency of ``version``, the sorted attributes its variable of that name declares,
    or None when the variable is not an object type (then every output goes)."""
    files = sorted(version.path.glob("*.tf"))
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    cache = (work_dir(repo_root) / "cache" / "inputs"
             / f"{version.block}-{version.version}-{digest.hexdigest()[:32]}.json")
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict) and set(cached) == set(version.requires):
            return cached
    except (OSError, ValueError):
        pass
    from infrablocks.contracts import object_attributes, read_interface

    interface = read_interface(version.path, block=version.block, version=version.version)
    answer: dict[str, list[str] | None] = {}
    for dependency in version.requires:
        declared = object_attributes(interface.variables.get(dependency))
        answer[dependency] = None if declared is None else sorted(declared)
    from infrablocks.private_files import private_dir, write_private_text

    private_dir(cache.parent, base=cache.parent.parent.parent)   # 0700 cache, 0600 entries
    write_private_text(cache, json.dumps(answer, sort_keys=True))
    return answer


def module_resources(repo_root: Path, directory: Path
                     ) -> tuple[set[str], list[str], dict[str, str]]:
    """The managed resources (``TYPE.NAME``) the Terraform module in ``directory`` declares,
    with ``module.NAME`` for each module it calls, its parse errors (``file:line:
    message``) and each module call's ``source`` (``NAME → "./modules/x"``; ``""`` when not a
    literal string), cached like :func:`dependency_attributes` (``.infrablocks/cache/
    resources/``) under a digest of the module's ``*.tf`` files."""
    files = sorted(directory.glob("*.tf"))
    digest = hashlib.sha256(str(directory.resolve()).encode() + b"\0")
    for file in files:
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    cache = work_dir(repo_root) / "cache" / "resources" / f"{digest.hexdigest()[:40]}.json"
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict) and isinstance(cached.get("resources"), list) \
                and isinstance(cached.get("sources"), dict):
            return (set(cached["resources"]), list(cached.get("errors", [])),
                    {str(k): str(v) for k, v in cached["sources"].items()})
    except (OSError, ValueError):
        pass
    from infrablocks.contracts import read_interface

    interface = read_interface(directory)
    resources = set(interface.resources) | {f"module.{name}" for name in interface.modules}
    errors = [str(e) for e in interface.errors]
    sources = dict(interface.modules)
    from infrablocks.private_files import private_dir, write_private_text

    private_dir(cache.parent, base=cache.parent.parent.parent)
    write_private_text(cache, json.dumps({"resources": sorted(resources), "errors": errors,
                                          "sources": sources}))
    return resources, errors, sources
