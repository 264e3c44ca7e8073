"""Static contract check between block versions, parsing the HCL without running Terraform.

A dependent receives each dependency's outputs as one input variable named after the dependency,
typed as an object of the outputs it uses::

    variable "base" { type = object({ endpoints = list(string), cluster_name = string }) }

For every (dependent version, dependency version) pair the dependency's ``output`` blocks must
provide every (non-``optional``) attribute of that object. Extra outputs are fine.

python-hcl2 (v8) returns block labels with their quotes (``'"base"'``) and expressions as
``${…}`` strings, so the type expression is parsed here (a small bracket-aware splitter).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.versions import Version

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion, Registry
    from infrablocks.resolve import Resolution
    from infrablocks.validators import ValidationOutcome

__all__ = [
    "ContractProblem",
    "ModuleInterface",
    "check_contracts",
    "contract_check",
    "object_attributes",
    "read_interface",
    "registry_pairs",
    "resolution_pairs",
]


@dataclass(frozen=True)
class ContractProblem:
    """One mismatch (or unreadable file) found by the contract check."""

    dependent: str
    dependent_version: Version | None
    dependency: str | None
    dependency_version: Version | None
    variable: str | None
    missing: tuple[str, ...]
    message: str
    file: Path | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        return f"{where}{self.message}"


@dataclass
class ModuleInterface:
    """The variables and outputs a Terraform module declares."""

    directory: Path
    variables: dict[str, str | None] = field(default_factory=dict)  # name → type expression
    variable_lines: dict[str, tuple[Path, int]] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    errors: list[ContractProblem] = field(default_factory=list)


def _label(raw: str) -> str:
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def read_interface(directory: Path, *, block: str = "", version: Version | None = None
                   ) -> ModuleInterface:
    """Parse every ``*.tf`` file of a module directory for its variables and outputs.

    Parse errors become ``ContractProblem``s carrying file and line.
    """
    import hcl2
    from lark.exceptions import UnexpectedInput

    interface = ModuleInterface(directory=directory)
    for file in sorted(directory.glob("*.tf")):
        try:
            text = file.read_text(encoding="utf-8")
            parsed = hcl2.loads(text)
        except UnexpectedInput as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
            interface.errors.append(ContractProblem(
                block, version, None, None, None, (),
                f"cannot parse HCL: {first_line}", file, getattr(exc, "line", None)))
            continue
        except Exception as exc:  # python-hcl2 raises assorted errors on odd input
            interface.errors.append(ContractProblem(
                block, version, None, None, None, (), f"cannot parse HCL: {exc}", file))
            continue
        for entry in parsed.get("variable", []):
            for raw_name, body in entry.items():
                name = _label(raw_name)
                kind = body.get("type") if isinstance(body, dict) else None
                interface.variables[name] = kind if isinstance(kind, str) else None
                interface.variable_lines[name] = (file, _line_of(text, "variable", name))
        for entry in parsed.get("output", []):
            interface.outputs.update(_label(raw) for raw in entry)
    return interface


def _line_of(text: str, kind: str, name: str) -> int:
    match = re.search(rf'^[ \t]*{kind}[ \t]+"{re.escape(name)}"', text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _unwrap(expression: str) -> str:
    expression = expression.strip()
    if expression.startswith("${") and expression.endswith("}"):
        expression = expression[2:-1].strip()
    return expression


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    parts, depth, current, quote = [], 0, [], False
    for char in text:
        if char == '"':
            quote = not quote
        elif not quote and char in "([{":
            depth += 1
        elif not quote and char in ")]}":
            depth -= 1
        if char == separator and depth == 0 and not quote:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if "".join(current).strip():
        parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def object_attributes(type_expression: str | None) -> dict[str, bool] | None:
    """Attributes of an ``object({...})`` type → {name: required}; None if not an object type.

    ``optional(T)`` attributes are not required (Terraform fills them with null).
    """
    if not type_expression:
        return None
    expression = _unwrap(type_expression)
    match = re.fullmatch(r"object\s*\(\s*\{(?P<body>.*)\}\s*\)", expression, re.DOTALL)
    if not match:
        return None
    attributes: dict[str, bool] = {}
    for part in _split_top_level(match.group("body").replace("\n", ",")):
        name, _, kind = part.partition("=")
        attributes[_label(name.strip())] = not kind.strip().startswith("optional(")
    return attributes


def registry_pairs(registry: Registry) -> list[tuple[BlockVersion, BlockVersion]]:
    """Every (dependent version, dependency version) the constraints allow to meet."""
    pairs = []
    for block in registry.blocks.values():
        for dependent in block.versions.values():
            for dep, constraint in sorted(dependent.requires.items()):
                for dependency in registry.blocks[dep].versions.values():
                    if constraint.allows(dependency.version):
                        pairs.append((dependent, dependency))
    return pairs


def resolution_pairs(resolution: Resolution) -> list[tuple[BlockVersion, BlockVersion]]:
    """The (dependent, dependency) pairs of one resolution."""
    return [(bv, resolution.selected[dep]) for bv in resolution.selected.values()
            for dep in sorted(bv.requires)]


def check_contracts(registry: Registry,
                    pairs: Iterable[tuple[BlockVersion, BlockVersion]] | None = None
                    ) -> list[ContractProblem]:
    """Contract problems of ``pairs`` (default: every pair the registry allows), plus parse
    errors of the modules involved. Deterministic order."""
    interfaces: dict[Path, ModuleInterface] = {}

    def interface(bv: BlockVersion) -> ModuleInterface:
        if bv.path not in interfaces:
            interfaces[bv.path] = read_interface(bv.path, block=bv.block, version=bv.version)
        return interfaces[bv.path]

    if pairs is None:
        pairs = registry_pairs(registry)
        for block in registry.blocks.values():  # parse errors of every module, paired or not
            for bv in block.versions.values():
                interface(bv)

    problems: list[ContractProblem] = []
    reported_variables: set[tuple[int, str]] = set()
    for dependent, dependency in pairs:
        mine, theirs = interface(dependent), interface(dependency)
        if mine.errors or theirs.errors:
            continue  # reported once below
        name = dependency.block
        if name not in mine.variables:
            if (id(dependent), name) not in reported_variables:
                reported_variables.add((id(dependent), name))
                problems.append(ContractProblem(
                    dependent.block, dependent.version, name, None, name, (),
                    f"{dependent.label} requires {name} but declares no variable \"{name}\": "
                    f"add variable \"{name}\" {{ type = object({{ … }}) }} with the outputs of "
                    f"{name} it uses", _rel(registry, dependent.path)))
            continue
        file, line = mine.variable_lines[name]
        attributes = object_attributes(mine.variables[name])
        if attributes is None:
            if (id(dependent), name) not in reported_variables:
                reported_variables.add((id(dependent), name))
                problems.append(ContractProblem(
                    dependent.block, dependent.version, name, None, name, (),
                    f"{dependent.label}: variable \"{name}\" must be typed "
                    f"object({{ … }}) with the outputs of {name} it uses (found type "
                    f"{_unwrap(mine.variables[name]) if mine.variables[name] else 'none'})",
                    _rel(registry, file), line))
            continue
        missing = tuple(sorted(a for a, required in attributes.items()
                               if required and a not in theirs.outputs))
        if missing:
            problems.append(ContractProblem(
                dependent.block, dependent.version, name, dependency.version, name, missing,
                f"{dependent.label}: variable \"{name}\" uses "
                f"{', '.join(missing)}, which {dependency.label} does not output "
                f"(its outputs: {', '.join(sorted(theirs.outputs)) or 'none'})",
                _rel(registry, file), line))
    for path in sorted(interfaces):
        for error in interfaces[path].errors:
            problems.append(ContractProblem(
                error.dependent, error.dependent_version, None, None, None, (), error.message,
                _rel(registry, error.file) if error.file else None, error.line))
    return problems


def _rel(registry: Registry, path: Path) -> Path:
    try:
        return path.relative_to(registry.root)
    except ValueError:
        return path


def contract_check(registry: Registry) -> ValidationOutcome:
    """The ``doit check`` entry (see ``infrablocks.validators``)."""
    from infrablocks.validators import ValidationOutcome

    pairs = registry_pairs(registry)
    problems = check_contracts(registry, pairs)
    modules = sum(len(block.versions) for block in registry.blocks.values())
    return ValidationOutcome(
        problems=[str(p) for p in problems],
        info=[f"contracts: {len(pairs)} dependent/dependency version pairs in {modules} "
              f"block versions checked"])
