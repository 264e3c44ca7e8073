"""Static contract check between block versions, parsing the HCL without running Terraform.

A dependent receives each dependency's outputs as one input variable named after the dependency,
typed as an object of the outputs it uses::

    variable "base" { type = object({ endpoints = list(string), cluster_name = string }) }

For every (dependent version, dependency version) pair the dependency's ``output`` blocks must
provide every (non-``optional``) attribute of that object. Extra outputs are fine.

Sensitivity must survive the boundary: a variable that receives a dependency output declared
``sensitive = true`` must itself be declared ``sensitive = true``, or Terraform prints the value
(and anything built from it) in the dependent's plan and apply output and in non-sensitive
outputs. ``doit check`` reports every such variable from the declarations
(:func:`sensitivity_problems`); the commands that apply refuse before applying, from the
declarations of what they are about to deploy and from the dependencies' state
(:func:`received_sensitive_problems`).

python-hcl2 (v8) returns block labels with their quotes (``'"base"'``) and expressions as
``${…}`` strings, so the type expression is parsed here (a small bracket-aware splitter).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError
from infrablocks.versions import Version

if TYPE_CHECKING:
    from infrablocks.registry import BlockVersion, Registry
    from infrablocks.resolve import Resolution
    from infrablocks.validators import ValidationOutcome

__all__ = [
    "ContractProblem",
    "ModuleInterface",
    "SensitiveInputError",
    "check_contracts",
    "check_received_inputs",
    "refuse_sensitive_leaks",
    "leaks",
    "sensitive_dependencies",
    "module_summary",
    "received_sensitive_problems",
    "sensitivity_problems",
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
    sensitive_variables: set[str] = field(default_factory=set)
    sensitive_outputs: set[str] = field(default_factory=set)
    resources: set[str] = field(default_factory=set)   # managed resources: "TYPE.NAME"
    modules: dict[str, str] = field(default_factory=dict)  # module call → its source ("" if
    #                                                          not a literal string)


def _label(raw: str) -> str:
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def read_interface(directory: Path, *, block: str = "", version: Version | None = None
                   ) -> ModuleInterface:
    """Parse every ``*.tf`` file of a module directory for its variables, outputs and managed
    resources.

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
                if isinstance(body, dict) and _is_true(body.get("sensitive")):
                    interface.sensitive_variables.add(name)
        for entry in parsed.get("module", []):
            for raw_name, body in entry.items():
                source = body.get("source") if isinstance(body, dict) else None
                interface.modules[_label(raw_name)] = (_label(source) if isinstance(source, str)
                                                       else "")
        for entry in parsed.get("resource", []):
            for raw_type, named in entry.items():
                for raw_name in (named if isinstance(named, dict) else {}):
                    interface.resources.add(f"{_label(raw_type)}.{_label(raw_name)}")
        for entry in parsed.get("output", []):
            for raw_name, body in entry.items():
                interface.outputs.add(_label(raw_name))
                if isinstance(body, dict) and _is_true(body.get("sensitive")):
                    interface.sensitive_outputs.add(_label(raw_name))
    return interface


def _is_true(value: object) -> bool:
    """``sensitive = true`` as python-hcl2 gives it (a bool, or ``"${true}"`` in some forms)."""
    return value is True or (isinstance(value, str) and _unwrap(value) == "true")


def _line_of(text: str, kind: str, name: str) -> int:
    match = re.search(rf'^[ \t]*{kind}[ \t]+"{re.escape(name)}"', text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else 1


def _unwrap(expression: str) -> str:
    expression = expression.strip()
    if expression.startswith("${") and expression.endswith("}"):
        expression = expression[2:-1].strip()
    return expression


def _split_top_level(text: str, separator: str = ",") -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, False
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
                    pairs: Iterable[tuple[BlockVersion, BlockVersion]] | None = None,
                    interfaces: dict[Path, ModuleInterface] | None = None
                    ) -> list[ContractProblem]:
    """Contract problems of ``pairs`` (default: every pair the registry allows), plus parse
    errors of the modules involved. Deterministic order. ``interfaces``: a cache of parsed
    modules (by directory) to share with :func:`sensitivity_problems`."""
    interfaces = interfaces if interfaces is not None else {}

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
                    f"{_unwrap(found) if (found := mine.variables[name]) else 'none'})",
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


class SensitiveInputError(ConfigError):
    """A dependency variable receives a sensitive output but is not declared sensitive."""


def received_attributes(interface: ModuleInterface, dependency: str,
                        outputs: Iterable[str]) -> set[str]:
    """Which of the dependency's ``outputs`` the variable named after it receives: the
    attributes of its ``object({...})`` type, or all of them when it is not an object type."""
    declared = object_attributes(interface.variables.get(dependency))
    outputs = set(outputs)
    return outputs if declared is None else outputs & set(declared)


def received_sensitive_problems(dependent: BlockVersion, interface: ModuleInterface,
                                dependency: str, dependency_label: str,
                                sensitive_outputs: Iterable[str], *, source: str = "",
                                root: Path | None = None) -> list[ContractProblem]:
    """The problem (zero or one) of ``dependent``'s variable ``dependency`` receiving any of
    ``sensitive_outputs`` without ``sensitive = true``.

    ``dependency_label``: e.g. ``"stolon 1.0.0"``; ``source``: where the sensitivity is known
    from (``"declared"`` / ``"in its state"``), for the message.
    """
    if dependency not in interface.variables or dependency in interface.sensitive_variables:
        return []
    received = sorted(received_attributes(interface, dependency, sensitive_outputs))
    if not received:
        return []
    file, line = interface.variable_lines[dependency]
    if root is not None:
        with contextlib.suppress(ValueError):
            file = file.relative_to(root)
    return [ContractProblem(
        dependent.block, dependent.version, dependency, None, dependency, tuple(received),
        leak_message(dependent.label, dependency, received, dependency_label, source),
        file, line)]


def leak_message(dependent_label: str, variable: str, outputs: Iterable[str],
                 dependency_label: str, source: str = "") -> str:
    """The one message for a variable receiving sensitive outputs without being sensitive
    (``doit check`` and the refusal of the commands that apply)."""
    names = sorted(outputs)
    plural = "s" if len(names) > 1 else ""
    return (f"{dependent_label}: variable \"{variable}\" receives the sensitive output{plural} "
            f"{', '.join(names)} of {dependency_label}{f' ({source})' if source else ''} but "
            f"is not declared sensitive: add `sensitive = true` to variable \"{variable}\" "
            f"(else Terraform prints the value{plural} in plans, apply logs and outputs)")


def sensitivity_problems(registry: Registry,
                         pairs: Iterable[tuple[BlockVersion, BlockVersion]] | None = None,
                         interfaces: dict[Path, ModuleInterface] | None = None
                         ) -> list[ContractProblem]:
    """Variables receiving a sensitive output that are not sensitive, for ``pairs`` (default:
    every pair the registry allows), known from the dependencies' ``output`` declarations.
    One problem per (dependent version, variable): the first dependency version that makes it.
    """
    cache = interfaces if interfaces is not None else {}

    def interface(bv: BlockVersion) -> ModuleInterface:
        if bv.path not in cache:
            cache[bv.path] = read_interface(bv.path, block=bv.block, version=bv.version)
        return cache[bv.path]

    problems: list[ContractProblem] = []
    seen: set[tuple[str, str, str]] = set()
    for dependent, dependency in (registry_pairs(registry) if pairs is None else pairs):
        key = (dependent.block, str(dependent.version), dependency.block)
        if key in seen:
            continue
        mine, theirs = interface(dependent), interface(dependency)
        if mine.errors or theirs.errors:
            continue
        found = received_sensitive_problems(
            dependent, mine, dependency.block, dependency.label, theirs.sensitive_outputs,
            source="declared sensitive", root=registry.root)
        if found:
            seen.add(key)
            problems += found
    return problems


def module_summary(version: BlockVersion, cache_dir: Path | None = None) -> dict[str, Any]:
    """What the sensitivity checks need of a module, parsed once and kept in ``cache_dir``
    (0600, under a digest of its ``*.tf`` files; parsing costs 0.2-0.4 s per module)::

        {"variables": [...], "sensitive_variables": [...], "sensitive_outputs": [...],
         "object_attributes": {variable: [attribute, ...] | None}, "parse_errors": bool}
    """
    import hashlib
    import json

    cache = None
    if cache_dir is not None:
        digest = hashlib.sha256()
        for file in sorted(version.path.glob("*.tf")):
            digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
        cache = cache_dir / f"{version.block}-{version.version}-{digest.hexdigest()[:32]}.json"
        try:
            cached = json.loads(cache.read_text())
            if isinstance(cached, dict) and "object_attributes" in cached:
                return cached
        except (OSError, ValueError):
            pass
    interface = read_interface(version.path, block=version.block, version=version.version)
    summary = {
        "variables": sorted(interface.variables),
        "sensitive_variables": sorted(interface.sensitive_variables),
        "sensitive_outputs": sorted(interface.sensitive_outputs),
        "object_attributes": {name: (None if (found := object_attributes(kind)) is None
                                     else sorted(found))
                              for name, kind in sorted(interface.variables.items())},
        "parse_errors": bool(interface.errors),
    }
    if cache is not None:
        from infrablocks.private_files import private_dir, write_private_text

        private_dir(cache.parent, base=cache.parent.parent)
        write_private_text(cache, json.dumps(summary, sort_keys=True))
    return summary


def leaks(pairs: Iterable[tuple[BlockVersion, BlockVersion]],
          cache_dir: Path | None = None) -> list[str]:
    """:func:`leak_message` for every pair whose dependent's variable receives a sensitive
    output of the dependency (from the declarations) without being sensitive."""
    found = []
    for dependent, dependency in pairs:
        mine = module_summary(dependent, cache_dir)
        theirs = module_summary(dependency, cache_dir)
        name = dependency.block
        if mine["parse_errors"] or theirs["parse_errors"] or name not in mine["variables"] \
                or name in mine["sensitive_variables"]:
            continue
        declared = mine["object_attributes"].get(name)
        received = set(theirs["sensitive_outputs"])
        if declared is not None:
            received &= set(declared)
        if received:
            found.append(leak_message(dependent.label, name, received, dependency.label,
                                      "declared sensitive"))
    return found


def refuse_sensitive_leaks(pairs: Iterable[tuple[BlockVersion, BlockVersion]],
                           cache_dir: Path | None = None) -> None:
    """Raise :class:`SensitiveInputError` (exit 2) naming every variable of ``pairs`` that would
    receive a sensitive output without being sensitive — called before anything is applied."""
    problems = leaks(pairs, cache_dir)
    if problems:
        raise SensitiveInputError(
            "refusing to apply: sensitive outputs would reach variables that are not sensitive",
            problems=problems,
            hint="declare those variables `sensitive = true` (and any output built from them); "
                 "`doit check` lists them all")


def sensitive_dependencies(version: BlockVersion, inputs: Mapping[str, Any],
                           versions: Mapping[str, BlockVersion],
                           cache_dir: Path | None = None) -> set[str]:
    """The dependency inputs of ``version`` (``inputs``: variable → value) that hold an output
    the dependency's version (``versions[dependency]``) declares sensitive."""
    found = set()
    for dependency in version.requires:
        value = inputs.get(dependency)
        if not isinstance(value, Mapping) or dependency not in versions:
            continue
        declared = set(module_summary(versions[dependency], cache_dir)["sensitive_outputs"])
        if declared & set(value):
            found.add(dependency)
    return found


def check_received_inputs(version: BlockVersion, received: dict[str, set[str]],
                          label_of: Callable[[str], str], *,
                          cache_dir: Path | None = None) -> None:
    """Refuse (:class:`SensitiveInputError`) when a variable of ``version`` receives sensitive
    outputs (``received``: dependency → names of the sensitive outputs in its input object, as
    the dependency's state marks them) without being declared sensitive.

    ``label_of(dependency)``: e.g. ``"stolon 1.0.0"`` (the deployed version), for the message.
    """
    wanted = {dep: names for dep, names in received.items() if names}
    if not wanted:
        return
    declared = set(module_summary(version, cache_dir)["sensitive_variables"])
    problems = [leak_message(version.label, dep, names, label_of(dep), "sensitive in its state")
                for dep, names in sorted(wanted.items()) if dep not in declared]
    if problems:
        raise SensitiveInputError(
            f"refusing to apply {version.label}: sensitive outputs would reach variables that "
            "are not sensitive", problems=problems,
            hint="declare those variables `sensitive = true` (and any output built from them)")


def _rel(registry: Registry, path: Path) -> Path:
    try:
        return path.relative_to(registry.root)
    except ValueError:
        return path


def contract_check(registry: Registry) -> ValidationOutcome:
    """The ``doit check`` entry (see ``infrablocks.validators``)."""
    from infrablocks.validators import ValidationOutcome

    pairs = registry_pairs(registry)
    interfaces: dict[Path, ModuleInterface] = {}
    problems = check_contracts(registry, pairs, interfaces)
    problems += sensitivity_problems(registry, pairs, interfaces)
    modules = sum(len(block.versions) for block in registry.blocks.values())
    return ValidationOutcome(
        problems=[str(p) for p in problems],
        info=[f"contracts: {len(pairs)} dependent/dependency version pairs in {modules} "
              f"block versions checked (outputs, types and sensitivity)"])
