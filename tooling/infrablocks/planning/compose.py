"""The composed root module: the blocks of one plan as modules of one temporary configuration.

Terraform plans one root module at a time, and a root module's variables must be known values,
so a dependent cannot be planned on its own against a dependency that does not exist yet. A
*module's* inputs may be unknown, though: composed into one configuration, each block version
becomes ``module "NAME"``, each dependency variable is wired from the dependency module's
outputs, and Terraform itself carries "known after apply" from the resources that produce a
value to every block that reads it. The layout written under the composition directory::

    main.tf                          the module calls, and one sensitive root output per block
                                     (``outputs_NAME = module.NAME``) to read each block's outputs
    modules/NAME/                    a copy of the block version's files (as a working directory
                                     gets them: no tests, no state, no generated files)
    modules/NAME/_infrablocks_images_pending.tf, _infrablocks_images_override.tf
                                     only when an image the block looks up is not built yet
                                     (see :func:`pending_image_files`)
    terraform.tfstate                the deployed blocks' states merged under their module
                                     addresses (:func:`merge_states`)

Blocks are root modules with their own ``provider`` and ``terraform { required_providers }``
blocks. Terraform accepts provider blocks in a called module (a "legacy" module) as long as the
call uses no ``count``, ``for_each`` or ``depends_on``, which the composition never does; each
module keeps its own provider configuration, exactly as its root would have it. A block has no
backend block of its own (infrablocks generates it, ``_infrablocks_backend.tf``, and never
copies it here); the composition has no backend block either: its state is a private file.

Nothing here runs Terraform; :mod:`infrablocks.planning.crossplan` does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infrablocks.errors import ConfigError, InfrablocksError
from infrablocks.terraform.hcl import hcl_string
from infrablocks.terraform.workdir import GENERATED_PREFIX, source_files

MODULES_DIR = "modules"
ROOT_FILE = "main.tf"
STATE_FILE = "terraform.tfstate"
OUTPUTS_PREFIX = "outputs_"
PENDING_RESOURCE = "terraform_data.infrablocks_image_pending"
PENDING_FILE = f"{GENERATED_PREFIX}images_pending.tf"
OVERRIDE_FILE = f"{GENERATED_PREFIX}images_override.tf"
# The image look-up data source of the local cloud and the argument that names the image. A
# look-up of an image that is not built yet gets that argument from a resource created in the
# same (never applied) plan, so Terraform defers the read to apply time: "known after apply".
IMAGE_DATA_SOURCES = {"localcloud_image": "name"}
# Variable files Terraform loads by itself in a root module but never in a called module.
_OWN_TFVARS = re.compile(r"^(terraform\.tfvars(\.json)?|.*\.auto\.tfvars(\.json)?)$")
_OUTPUT_BLOCK = re.compile(r'^[ \t]*output[ \t]+"([^"]+)"', re.MULTILINE)
_PROVIDER_BLOCK = re.compile(r'^provider[ \t]+"([^"]+)"[ \t]*\{', re.MULTILINE)
_DATA_BLOCK = re.compile(r'^data[ \t]+"([^"]+)"[ \t]+"([^"]+)"[ \t]*\{', re.MULTILINE)
_REQUIRED_SOURCE = re.compile(
    r'([A-Za-z_][A-Za-z0-9_-]*)[ \t]*=[ \t]*\{[^{}]*?source[ \t]*=[ \t]*"([^"]+)"')
_STATE_PROVIDER = re.compile(r'^((?:module\.[^.\[]+(?:\[[^\]]*\])?\.)*)provider\["([^"]+)"\]'
                             r'(?:\.([A-Za-z_][A-Za-z0-9_-]*))?$')


@dataclass(frozen=True)
class ModuleSpec:
    """One block version as a module of the composition.

    ``wiring``: per dependency, the attributes its variable receives (``None``: the whole
    outputs object, for a variable that is not an ``object({...})``), as
    :func:`infrablocks.interface_cache.dependency_attributes` gives them.
    ``pending_images``: names of the images the block looks up that are not built yet.
    """

    block: str
    source: Path
    wiring: Mapping[str, Sequence[str] | None] = field(default_factory=dict)
    pending_images: tuple[str, ...] = ()


def declared_outputs(module_dir: Path) -> set[str]:
    """Names of the ``output`` blocks of a module (a top-level scan of its ``*.tf`` files)."""
    names: set[str] = set()
    for file in sorted(module_dir.glob("*.tf")):
        names.update(_OUTPUT_BLOCK.findall(file.read_text(encoding="utf-8")))
    return names


def write_composition(root: Path, modules: Sequence[ModuleSpec], *, environment: str,
                      subnet: str) -> None:
    """Write the composed configuration for ``modules`` (dependencies before dependents) into
    ``root`` (which must exist and be private: the state copied in holds secrets).

    Raises ConfigError for a block the composition cannot carry faithfully (its own
    ``*.tfvars`` files, which Terraform ignores in a called module).
    """
    modules_root = root / MODULES_DIR
    modules_root.mkdir(exist_ok=True)
    outputs = {spec.block: declared_outputs(spec.source) for spec in modules}
    for spec in modules:
        _copy_module(spec, modules_root / spec.block)
    (root / ROOT_FILE).write_text(render_root(modules, outputs, environment=environment,
                                              subnet=subnet))


def _copy_module(spec: ModuleSpec, target: Path) -> None:
    files = dict(source_files(spec.source))
    own_vars = sorted(rel for rel in files if "/" not in rel and _OWN_TFVARS.match(rel))
    if own_vars:
        raise ConfigError(
            f"block {spec.block} ({spec.source}) sets its own variables in "
            f"{', '.join(own_vars)}: a cross-block plan calls each block as a module, where "
            "Terraform does not read such files",
            hint="give those variables defaults in the block's variables.tf")
    reserved = sorted(rel for rel in files if Path(rel).name.startswith(GENERATED_PREFIX))
    if reserved:
        raise ConfigError(f"block {spec.block} ({spec.source}): file names starting with "
                          f"{GENERATED_PREFIX!r} are reserved for infrablocks",
                          problems=reserved)
    for rel, path in files.items():
        destination = target / rel
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
    if spec.pending_images:
        for name, text in pending_image_files(target, spec.pending_images).items():
            (target / name).write_text(text)


def render_root(modules: Sequence[ModuleSpec], outputs: Mapping[str, set[str]], *,
                environment: str, subnet: str) -> str:
    """``main.tf`` of the composition: one module call per block and one root output each."""
    lines = ["# Generated by infrablocks for one cross-block plan; never applied.", ""]
    for spec in modules:
        lines += [f'module "{spec.block}" {{',
                  f"  source      = {hcl_string(f'./{MODULES_DIR}/{spec.block}')}",
                  f"  environment = {hcl_string(environment)}",
                  f"  subnet_cidr = {hcl_string(subnet)}"]
        for dependency in sorted(spec.wiring):
            wanted = spec.wiring[dependency]
            if wanted is None:
                lines.append(f"  {dependency} = module.{dependency}")
                continue
            # Only what the dependency outputs, as BlockRun.inputs() sends it (an optional
            # attribute the dependency does not provide is left out, not null).
            present = [a for a in wanted if a in outputs.get(dependency, set())]
            lines.append(f"  {dependency} = {{")
            lines += [f"    {_key(a)} = module.{dependency}.{a}" for a in present]
            lines.append("  }")
        lines += ["}", "",
                  f'output "{OUTPUTS_PREFIX}{spec.block}" {{',
                  f"  value     = module.{spec.block}",
                  "  sensitive = true",
                  "}", ""]
    return "\n".join(lines)


def _key(name: str) -> str:
    return name if re.match(r"^[A-Za-z_][A-Za-z0-9_-]*$", name) else hcl_string(name)


def pending_image_files(module_dir: Path, pending: Sequence[str]) -> dict[str, str]:
    """Files that defer the module's look-ups of images that are not built yet to apply time.

    A ``terraform_data`` resource is created in the same plan (its ``output`` is unknown until
    apply), and a Terraform override file sets the image name argument of each matching
    look-up to that output: the look-up's configuration is then unknown, so Terraform plans it
    as a read at apply time and everything derived from the image (its id, its path) is "known
    after apply" — not an invented id. The composed plan is never applied, so the overridden
    argument only serves to make the value unknown. A look-up is matched by its literal name
    argument; one whose name is an expression is deferred too (the conservative answer).
    """
    overrides: list[str] = []
    for kind, label, body in _data_blocks(module_dir):
        argument = IMAGE_DATA_SOURCES.get(kind)
        if argument is None:
            continue
        literal = re.search(rf'^\s*{argument}\s*=\s*"([^"$%]*)"\s*$', body, re.MULTILINE)
        if literal is not None and literal.group(1) not in pending:
            continue
        overrides += [f'data "{kind}" "{label}" {{',
                      f"  {argument} = {PENDING_RESOURCE}.output", "}", ""]
    if not overrides:
        return {}
    resource_type, resource_name = PENDING_RESOURCE.split(".")
    pending_text = (
        "# Generated by infrablocks: images not built yet; their look-ups read at apply.\n"
        f'resource "{resource_type}" "{resource_name}" {{\n'
        f"  input = {hcl_string(','.join(sorted(pending)))}\n}}\n")
    return {PENDING_FILE: pending_text, OVERRIDE_FILE: "\n".join(overrides)}


def _data_blocks(module_dir: Path) -> list[tuple[str, str, str]]:
    """``(type, name, body)`` of the top-level ``data`` blocks (brace matching on the text)."""
    found: list[tuple[str, str, str]] = []
    for file in sorted(module_dir.glob("*.tf")):
        text = file.read_text(encoding="utf-8")
        for match in _DATA_BLOCK.finditer(text):
            found.append((match.group(1), match.group(2), _block_body(text, match.end())))
    return found


def _block_body(text: str, start: int) -> str:
    depth, index = 1, start
    while index < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        index += 1
    return text[start:index - 1]


# -- state ----------------------------------------------------------------------------------------


def module_provider_configs(module_dir: Path) -> set[tuple[str, str | None]]:
    """``(provider source address, alias)`` of the provider configurations a module declares.

    The local name of each ``provider "NAME"`` block is mapped to its source through the
    module's ``required_providers`` (default ``registry.terraform.io/hashicorp/NAME``).
    """
    sources: dict[str, str] = {}
    configs: list[tuple[str, str | None]] = []
    for file in sorted(module_dir.glob("*.tf")):
        text = file.read_text(encoding="utf-8")
        for match in _REQUIRED_SOURCE.finditer(text):
            sources[match.group(1)] = _full_source(match.group(2))
        for match in _PROVIDER_BLOCK.finditer(text):
            body = _block_body(text, match.end())
            alias = re.search(r'^\s*alias\s*=\s*"([^"]+)"', body, re.MULTILINE)
            configs.append((match.group(1), alias.group(1) if alias else None))
    return {(sources.get(name, _full_source(name)), alias) for name, alias in configs}


def _full_source(source: str) -> str:
    parts = source.strip().lower().split("/")
    if len(parts) == 1:
        return f"registry.terraform.io/hashicorp/{parts[0]}"
    if len(parts) == 2:
        return f"registry.terraform.io/{parts[0]}/{parts[1]}"
    return "/".join(parts)


def merge_states(states: Mapping[str, Mapping[str, Any]],
                 provider_configs: Mapping[str, set[tuple[str, str | None]]],
                 terraform_version: str) -> dict[str, Any]:
    """One state holding every deployed block's resources under ``module.BLOCK``.

    ``states``: block → its tfstate (format 4) as stored; ``provider_configs``: block → what
    :func:`module_provider_configs` found in its module. A resource's provider address moves
    into the module (``module.BLOCK.provider["…"]``) when the module configures that provider
    itself, and stays at the root (inherited) otherwise — Terraform needs it to plan the
    destruction of a resource the block's configuration no longer has. Root outputs, check
    results and the blocks' lineages are not carried over: the result is a new state that only
    the composed plan ever reads.
    """
    resources: list[dict[str, Any]] = []
    for block, state in states.items():
        if state.get("version") != 4:
            raise InfrablocksError(
                f"the state of {block} has format version {state.get('version')!r}; a "
                "cross-block plan reads format 4 (Terraform ≥ 0.12)")
        configs = provider_configs.get(block, set())
        for resource in state.get("resources") or ():
            moved = dict(resource)
            nested = resource.get("module")
            moved["module"] = f"module.{block}" + (f".{nested}" if nested else "")
            moved["provider"] = _moved_provider(resource.get("provider", ""), block, configs)
            resources.append(moved)
    return {"version": 4, "terraform_version": terraform_version, "serial": 1,
            "lineage": str(uuid.uuid4()), "outputs": {}, "resources": resources,
            "check_results": None}


def _moved_provider(address: str, block: str, configs: set[tuple[str, str | None]]) -> str:
    match = _STATE_PROVIDER.match(address)
    if match is None:
        return address
    module_path, source, alias = match.groups()
    if module_path:                      # configured inside a nested module of the block
        return f"module.{block}.{address}"
    if (_full_source(source), alias) in configs:
        return f"module.{block}.{address}"
    return address


def write_state(root: Path, state: Mapping[str, Any]) -> Path:
    """Write the merged state as the composition's private state file (0600)."""
    path = root / STATE_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(state, handle)
    return path
