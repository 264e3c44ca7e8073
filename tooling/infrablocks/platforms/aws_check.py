"""``doit check`` of the blocks' AWS modules (``blocks/NAME/VERSION/aws/``).

1. **Contract**: an AWS module declares the same variables (names and types) and outputs (names
   and sensitivity) as the local module of its version, so that one blocks.toml entry, one set
   of contracts and one resolution serve both platforms. Static (python-hcl2), always run.
2. **terraform validate** with the hashicorp/aws provider: one generated root module in
   ``.infrablocks/check/aws/`` calls every AWS module (each variable becomes a root variable of
   the same type, unknown to ``validate``), so one ``init`` and one ``validate`` cover them all
   (the provider is ~700 MB; each ``init`` hashes it). The result is cached by the modules'
   digest, the Terraform in use and the provider installation methods. It runs when the
   provider can be installed without the network (a configured mirror has
   ``registry.terraform.io/hashicorp/aws``) or an environment runs on AWS (then the registry
   is fair game); otherwise it is skipped with that reason (info, not a problem).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.platforms.aws import MODULE_FOLDER

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion, Registry
    from infrablocks.validators import ValidationOutcome

__all__ = ["AWS_PROVIDER", "aws_module_check", "contract_differences", "modules_of"]

AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"
_CACHE_FILE = "validate.json"


@dataclass
class _Interface:
    variables: dict[str, str | None] = field(default_factory=dict)   # name → normalised type
    sensitive_variables: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    sensitive_outputs: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def _norm(type_text: str | None) -> str | None:
    if type_text is None:
        return None
    text = type_text.strip()
    if text.startswith("${") and text.endswith("}"):
        text = text[2:-1]
    return re.sub(r"\s+", "", text)


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip('"').lower() == "true"


def _interface(directory: Path) -> _Interface:
    import hcl2

    found = _Interface()
    for file in sorted(directory.glob("*.tf")):
        try:
            parsed = hcl2.loads(file.read_text(encoding="utf-8"))
        except Exception as exc:  # python-hcl2 raises assorted errors on odd input
            found.errors.append(f"{file}: cannot parse HCL: {str(exc).strip().splitlines()[0]}")
            continue
        for kind in ("variable", "output"):
            for entry in parsed.get(kind, []):
                for raw, body in entry.items():
                    name = raw.strip('"')
                    body = body if isinstance(body, dict) else {}
                    if kind == "variable":
                        kind_text = body.get("type")
                        found.variables[name] = _norm(kind_text if isinstance(kind_text, str)
                                                      else None)
                        if _truthy(body.get("sensitive")):
                            found.sensitive_variables.add(name)
                    else:
                        found.outputs.add(name)
                        if _truthy(body.get("sensitive")):
                            found.sensitive_outputs.add(name)
    return found


def modules_of(registry: Registry) -> list[tuple[BlockVersion, Path]]:
    """Every block version that has an AWS module, with the module's folder."""
    return [(version, version.path / MODULE_FOLDER)
            for block in registry.blocks.values() for version in block.versions.values()
            if (version.path / MODULE_FOLDER).is_dir()]


def contract_differences(local_dir: Path, aws_dir: Path) -> list[str]:
    """How the AWS module's contract differs from the local module's (empty: the same)."""
    local, aws = _interface(local_dir), _interface(aws_dir)
    problems = local.errors + aws.errors
    if problems:
        return problems
    for name in sorted(set(local.variables) - set(aws.variables)):
        problems.append(f"variable {name!r} is missing (the local module declares it)")
    for name in sorted(set(aws.variables) - set(local.variables)):
        problems.append(f"variable {name!r} is not in the local module")
    for name in sorted(set(local.variables) & set(aws.variables)):
        if local.variables[name] != aws.variables[name]:
            problems.append(f"variable {name!r} has type {aws.variables[name]}, the local "
                            f"module {local.variables[name]}")
        if (name in local.sensitive_variables) != (name in aws.sensitive_variables):
            problems.append(f"variable {name!r}: sensitive differs from the local module")
    for name in sorted(local.outputs - aws.outputs):
        problems.append(f"output {name!r} is missing (the local module declares it)")
    for name in sorted(aws.outputs - local.outputs):
        problems.append(f"output {name!r} is not in the local module")
    for name in sorted(local.outputs & aws.outputs):
        if (name in local.sensitive_outputs) != (name in aws.sensitive_outputs):
            problems.append(f"output {name!r}: sensitive differs from the local module")
    return problems


def _uses_aws(registry: Registry) -> bool:
    from infrablocks.platforms.choice import profiles

    try:
        found = profiles(registry)
    except Exception:  # the platforms validator reports those problems
        return False
    kinds = {name: p.kind for name, p in found.items()}
    chosen = [registry.defaults.get("platform")]
    chosen += [e.extra.get("platform") for e in registry.environments.values()]
    return any(kinds.get(name) == "aws" for name in chosen if name)


def aws_module_check(registry: Registry) -> ValidationOutcome:
    """The ``doit check`` entry (see ``infrablocks.validators``)."""
    from infrablocks.validators import ValidationOutcome

    modules = modules_of(registry)
    if not modules:
        return ValidationOutcome(info=["AWS modules: none"])
    outcome = ValidationOutcome()
    for version, module in modules:
        for problem in contract_differences(version.path, module):
            outcome.problems.append(f"{_rel(registry, module)}: {problem}")
    outcome.info.append(f"AWS modules: {len(modules)} ("
                        + ", ".join(v.label for v, _ in modules)
                        + "), contracts the same as the local modules'"
                        + ("" if not outcome.problems else " except where listed"))
    if outcome.problems:
        return outcome
    _validate(registry, modules, outcome)
    return outcome


def _rel(registry: Registry, path: Path) -> str:
    try:
        return str(path.relative_to(registry.root))
    except ValueError:
        return str(path)


def _validate(registry: Registry, modules: list[tuple[BlockVersion, Path]],
              outcome: ValidationOutcome) -> None:
    from infrablocks.errors import InfrablocksError
    from infrablocks.paths import work_dir
    from infrablocks.terraform.binary import find_terraform
    from infrablocks.terraform.cliconfig import (
        provider_methods,
        repo_mirror_folders,
        write_cli_config,
    )
    from infrablocks.terraform.driver import Terraform
    from infrablocks.terraform.toolchain import cli_config_paths, terraform_log_dir

    settings = registry.settings.get("terraform") or {}
    try:
        methods = provider_methods(repo_mirror_folders(settings, registry.root))
        binary = find_terraform(settings.get("binary"), base_dir=registry.root)
    except InfrablocksError as exc:
        outcome.problems.append(f"terraform validate of the AWS modules: {exc}")
        return
    mirrored = [m for m in methods if AWS_PROVIDER in m.providers]
    if not mirrored and not _uses_aws(registry):
        outcome.info.append("AWS modules: terraform validate skipped: no configured mirror has "
                            f"{AWS_PROVIDER} (blocks.toml terraform.mirrors) and no "
                            "environment runs on AWS")
        return
    folder = work_dir(registry.root) / "check" / "aws"
    digest = _digest(registry, modules, binary.describe(), [m.render() for m in methods])
    cache = folder / _CACHE_FILE
    if _cached(cache) == digest:
        outcome.info.append("AWS modules: terraform validate passed (cached: nothing changed)")
        return
    config = write_cli_config(cli_config_paths(registry.root), methods=methods)
    _write_root(folder, modules)
    # validate never calls AWS; a region keeps the provider's configuration checks quiet
    terraform = Terraform(binary, config, terraform_log_dir(registry.root),
                          {"AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"})
    where = mirrored[0].describe() if mirrored else "the registry"
    try:
        from infrablocks.terraform.init import ensure_init

        ensure_init(registry.root, terraform, folder)
        terraform.validate(folder)
    except InfrablocksError as exc:
        outcome.problems.append(f"terraform validate of the AWS modules ({where}): {exc}")
        cache.unlink(missing_ok=True)
        return
    cache.write_text(json.dumps({"digest": digest}))
    outcome.info.append(f"AWS modules: terraform validate passed ({where})")


def _cached(path: Path) -> str | None:
    try:
        digest = json.loads(path.read_text()).get("digest")
    except (OSError, ValueError, AttributeError):
        return None
    return digest if isinstance(digest, str) else None


def _digest(registry: Registry, modules: list[tuple[BlockVersion, Path]], terraform: str,
            methods: list[str]) -> str:
    hasher = hashlib.sha256(json.dumps([terraform, methods]).encode())
    for _, module in modules:
        for file in sorted(module.glob("*.tf")):
            hasher.update(_rel(registry, file).encode() + b"\0" + file.read_bytes() + b"\0")
    return hasher.hexdigest()


def _label(version: BlockVersion) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{version.block}_{version.version}")


def _write_root(folder: Path, modules: list[tuple[BlockVersion, Path]]) -> None:
    """The root module calling every AWS module with unknown values of the declared types."""
    from infrablocks.terraform.workdir import INIT_STAMP_FILE

    folder.mkdir(parents=True, exist_ok=True)
    lines = ["# Generated by `doit check`: calls every AWS module so that one terraform "
             "validate covers them.", ""]
    for version, module in modules:
        label = _label(version)
        interface = _interface(module)
        source = os.path.relpath(module, folder)
        arguments = []
        for name, kind in sorted(interface.variables.items()):
            lines.append(f'variable "{label}__{name}" {{')
            if kind:
                lines.append(f"  type = {kind}")
            lines.append("}")
            arguments.append(f"  {name} = var.{label}__{name}")
        lines += [f'module "{label}" {{', f'  source = "{source}"', *arguments, "}", ""]
    text = "\n".join(lines) + "\n"
    main = folder / "main.tf"
    if not main.is_file() or main.read_text() != text:
        main.write_text(text)
        (folder / INIT_STAMP_FILE).unlink(missing_ok=True)   # other module calls: init again
