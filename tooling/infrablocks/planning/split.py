"""Splitting the composed plan back into one answer per block.

Terraform's JSON plan (``terraform show -json``) lists every resource change with its address;
those under ``module.NAME`` belong to block NAME and keep, without that prefix, the address
they have in the block's own state. Each block's outputs come from the composition's root
output ``outputs_NAME`` (the module object): ``after`` holds the known values (sensitive ones
included — never printed), ``after_unknown`` marks what is known only after apply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infrablocks.planning.compose import OUTPUTS_PREFIX, PENDING_RESOURCE
from infrablocks.terraform.plan import Plan, ResourceChange


@dataclass
class BlockSlice:
    """What the composed plan says about one block.

    ``changes``: every resource change that changes something (no no-op, no data read), with
    block-relative addresses. ``outputs``: the block's output values known at plan time;
    ``unknown_outputs``: names of outputs (partly) known only after apply.
    """

    block: str
    changes: list[ResourceChange] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    unknown_outputs: set[str] = field(default_factory=set)

    def actions(self) -> list[tuple[str, str]]:
        """``(address, action)`` of the changes, sorted: what a review compares."""
        return sorted((c.address, c.action) for c in self.changes)


def split_plan(plan: Plan, blocks: Iterable[str]) -> dict[str, BlockSlice]:
    """One :class:`BlockSlice` per block of the composition (blocks with nothing get one too)."""
    slices = {block: BlockSlice(block) for block in blocks}
    for change in plan.resource_changes:
        block, relative = _owner(change)
        if block not in slices or not change.changes_something:
            continue
        if relative.address == PENDING_RESOURCE:
            continue  # the composition's own stand-in for images not built yet
        slices[block].changes.append(relative)
    output_changes = plan.raw.get("output_changes") or {}
    for block, piece in slices.items():
        entry = output_changes.get(f"{OUTPUTS_PREFIX}{block}") or {}
        after = entry.get("after")
        unknown = entry.get("after_unknown")
        if unknown is True:
            piece.unknown_outputs = set(declared_names(entry))
            continue
        unknown = unknown if isinstance(unknown, Mapping) else {}
        after = after if isinstance(after, Mapping) else {}
        for name in set(after) | set(unknown):
            if contains_unknown(unknown.get(name)):
                piece.unknown_outputs.add(name)
            elif name in after:
                piece.outputs[name] = after[name]
    return slices


def declared_names(entry: Mapping[str, Any]) -> list[str]:
    """Output names visible in an output change whose value is wholly unknown (rare: a module
    object is known even when its attributes are not)."""
    sensitive = entry.get("after_sensitive")
    return sorted(sensitive) if isinstance(sensitive, Mapping) else []


def contains_unknown(marker: Any) -> bool:
    """Whether an ``after_unknown`` marker (bool, or nested lists/maps of them) has a true."""
    if marker is True:
        return True
    if isinstance(marker, Mapping):
        return any(contains_unknown(v) for v in marker.values())
    if isinstance(marker, list):
        return any(contains_unknown(v) for v in marker)
    return False


def _owner(change: ResourceChange) -> tuple[str | None, ResourceChange]:
    """The block a change belongs to and the change with its block-relative address."""
    address = change.address
    if not address.startswith("module."):
        return None, change
    head, _, rest = address[len("module."):].partition(".")
    if "[" in head:                                   # module calls never use count/for_each
        return None, change
    module = change.module_address or ""
    nested = module[len(f"module.{head}"):].lstrip(".") or None
    return head, dataclasses.replace(change, address=rest, module_address=nested)
