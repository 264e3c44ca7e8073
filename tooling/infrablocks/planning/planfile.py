"""The saved plan file of `doit plan --out FILE`, read back by `doit apply FILE`.

A zip archive, written 0600 (atomically: a temporary file beside it, then a rename)::

    manifest.json        format, environment, subnet, Terraform version, who and when; the
                         environment's fingerprint; per block (dependency order): version,
                         requirements, images, a digest of its code, the reviewed resource
                         actions, unknown inputs, how it is applied (saved / replan /
                         unchanged), digests of its input values, refusals
    plans/BLOCK.tfplan   Terraform's saved plan of each block planned with known inputs

The saved plans embed the blocks' input values — sensitive ones such as a database password
included — exactly as Terraform's own plan files do: the file must be kept as private as the
state. ``doit apply`` extracts them into a private (0700) temporary directory, files 0600.

The **fingerprint** is, for every block with anything stored in the environment and every block
of the plan: its state's lineage and serial and a digest of its deployment record. Any
difference at apply time means the environment moved since the plan was reviewed.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError, UsageError
from infrablocks.private_files import atomic_open

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace

FORMAT = 1
KIND = "infrablocks-plan"
MANIFEST = "manifest.json"
PLANS_DIR = "plans"


class PlanFileError(UsageError):
    """The file is not a saved plan this infrablocks can apply."""


class StalePlan(InfrablocksError):
    """The environment (or the code) changed since the plan was saved."""


def environment_fingerprint(workspace: Workspace, environment: str,
                            blocks: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per block: ``{"lineage", "serial", "record"}`` (None where absent); see the module doc."""
    backend = workspace.backend
    names = sorted(set(backend.list_blocks(environment)) | set(blocks))
    return {name: block_fingerprint(workspace, environment, name) for name in names}


def block_fingerprint(workspace: Workspace, environment: str, block: str) -> dict[str, Any]:
    backend = workspace.backend
    state = backend.read_state(environment, block)
    record = backend.get_record(environment, block)
    return {"lineage": state.get("lineage") if state else None,
            "serial": state.get("serial") if state else None,
            "record": hashlib.sha256(record.dumps()).hexdigest() if record else None}


def fingerprint_changes(saved: Mapping[str, Mapping[str, Any]],
                        now: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What differs, one line per block (empty: nothing moved)."""
    lines = []
    for block in sorted(set(saved) | set(now)):
        before = saved.get(block) or {"lineage": None, "serial": None, "record": None}
        after = now.get(block) or {"lineage": None, "serial": None, "record": None}
        what = []
        if before.get("lineage") != after.get("lineage"):
            what.append("its state was replaced" if before.get("lineage") and after.get("lineage")
                        else "its state appeared" if after.get("lineage") else
                        "its state is gone")
        elif before.get("serial") != after.get("serial"):
            what.append(f"state serial {before.get('serial')} → {after.get('serial')}")
        if before.get("record") != after.get("record"):
            what.append("its deployment record changed" if before.get("record") and
                        after.get("record") else "its deployment record appeared" if
                        after.get("record") else "its deployment record is gone")
        if what:
            lines.append(f"{block}: {', '.join(what)}")
    return lines


def describe_difference(reviewed: Iterable[tuple[str, str]], now: Iterable[tuple[str, str]]
                        ) -> str:
    """``address: reviewed → now`` lines for the resource actions that differ."""
    before = dict(reviewed)
    after = dict(now)
    lines = []
    for address in sorted(set(before) | set(after)):
        if before.get(address) != after.get(address):
            lines.append(f"{address}: {before.get(address, 'no change')} → "
                         f"{after.get(address, 'no change')}")
    return "\n".join(lines) if lines else "(no difference)"


# -- the file -----------------------------------------------------------------------------------


def check_plan_path(path: Path) -> None:
    """UsageError when a plan cannot be written to ``path`` (checked before planning)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write the plan to {path}: {path.parent} is not a directory")
    if path.is_dir():
        raise UsageError(f"cannot write the plan to {path}: it is a directory",
                         hint="name a file, e.g. --out staging.plan")


def write_plan_file(path: Path, manifest: Mapping[str, Any], plans: Mapping[str, Path]) -> None:
    """Write the archive to ``path`` (0600, atomically); ``plans``: block → saved plan file."""
    path = Path(path)
    check_plan_path(path)
    document = {"format": FORMAT, "kind": KIND, **manifest,
                "plans": {block: f"{PLANS_DIR}/{block}.tfplan" for block in sorted(plans)}}
    opened = False
    try:
        with atomic_open(path, mode=0o600, binary=True) as handle, \
                zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
            opened = True
            archive.writestr(_entry(MANIFEST), json.dumps(document, indent=2, sort_keys=True))
            for block, plan in sorted(plans.items()):
                archive.writestr(_entry(document["plans"][block]), Path(plan).read_bytes())
    except OSError as exc:
        if opened:
            raise
        raise UsageError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.external_attr = 0o600 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def read_plan_file(path: Path, extract_to: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """The manifest and, extracted into the private directory ``extract_to``, the saved plans.

    Raises :class:`PlanFileError` naming the file when it is not a saved plan of this format.
    """
    path = Path(path)
    if path.is_dir():
        raise PlanFileError(f"{path} is a directory, not a plan file",
                            hint="name the file doit plan … --out FILE wrote")
    if not path.is_file():
        raise PlanFileError(f"no plan file {path}",
                            hint="save one with doit plan TARGET --env ENV --out FILE")
    try:
        with zipfile.ZipFile(path) as archive:
            document = json.loads(archive.read(MANIFEST))
            if not isinstance(document, dict) or document.get("kind") != KIND:
                raise PlanFileError(f"{path} is not a plan saved by doit plan --out")
            if document.get("format") != FORMAT:
                raise PlanFileError(f"{path} has plan format {document.get('format')!r}; this "
                                    f"infrablocks reads format {FORMAT}",
                                    hint="plan again with this version: doit plan … --out FILE")
            plans: dict[str, Path] = {}
            for block, member in sorted((document.get("plans") or {}).items()):
                target = extract_to / f"{block}.tfplan"
                descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(archive.read(member))
                plans[block] = target
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        if isinstance(exc, PlanFileError):
            raise
        raise PlanFileError(f"{path} is not a readable saved plan ({exc})",
                            hint="save one with doit plan TARGET --env ENV --out FILE") from None
    _check_shape(path, document)
    return document, plans


def _check_shape(path: Path, document: Mapping[str, Any]) -> None:
    problems = [key for key in ("environment", "subnet", "terraform_version", "fingerprint",
                                "blocks") if key not in document]
    blocks = document.get("blocks")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) and "block" in b
                                               for b in blocks):
        problems.append("blocks")
    if problems:
        raise PlanFileError(f"{path} is a damaged saved plan: missing or invalid "
                            f"{', '.join(sorted(set(problems)))}")


def is_private(path: Path) -> bool:
    """Whether only the owner may read the file (mode without group/other bits)."""
    return not os.stat(path).st_mode & 0o077
