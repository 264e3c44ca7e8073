"""A saved Terraform plan, read from ``terraform show -json PLANFILE``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Summaries of the action lists Terraform reports (see the JSON output format docs).
_ACTION_NAMES = {
    ("no-op",): "no-op",
    ("create",): "create",
    ("read",): "read",
    ("update",): "update",
    ("delete",): "delete",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
    ("forget",): "forget",
}


@dataclass(frozen=True)
class ResourceChange:
    """One entry of the plan's ``resource_changes``."""

    address: str
    actions: tuple[str, ...]
    type: str
    name: str
    index: int | str | None = None
    mode: str = "managed"
    module_address: str | None = None
    deposed: str | None = None
    action_reason: str | None = None
    # Attribute paths that force replacement, e.g. (("image_id",),); empty unless replacing.
    replace_paths: tuple[tuple[str | int, ...], ...] = ()
    before: Any = None
    after: Any = None

    @property
    def action(self) -> str:
        """One word: create, update, delete, replace, read, no-op, forget (or the raw list)."""
        return _ACTION_NAMES.get(self.actions, "+".join(self.actions))

    @property
    def changes_something(self) -> bool:
        return self.action not in ("no-op", "read")

    @property
    def is_replace(self) -> bool:
        return self.action == "replace"

    @property
    def create_before_destroy(self) -> bool:
        return self.actions == ("create", "delete")

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ResourceChange:
        change = entry.get("change") or {}
        return cls(
            address=entry["address"],
            actions=tuple(change.get("actions") or ()),
            type=entry.get("type", ""),
            name=entry.get("name", ""),
            index=entry.get("index"),
            mode=entry.get("mode", "managed"),
            module_address=entry.get("module_address"),
            deposed=entry.get("deposed"),
            action_reason=entry.get("action_reason"),
            replace_paths=tuple(tuple(p) for p in change.get("replace_paths") or ()),
            before=change.get("before"),
            after=change.get("after"),
        )


@dataclass(frozen=True)
class Plan:
    """A plan saved to ``plan_file``.

    ``changes`` lists only the resources the plan changes (no no-op, no data reads);
    ``resource_changes`` lists every entry. ``has_changes`` comes from ``-detailed-exitcode``
    and is also true when only outputs change.
    """

    plan_file: Path | None
    has_changes: bool
    resource_changes: list[ResourceChange]
    output_changes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errored: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def changes(self) -> list[ResourceChange]:
        return [rc for rc in self.resource_changes if rc.changes_something]

    def addresses(self, action: str) -> list[str]:
        """Addresses of the resources with ``action`` (create, update, delete, replace, …)."""
        return [rc.address for rc in self.resource_changes if rc.action == action]

    def counts(self) -> dict[str, int]:
        """How many resources per action, for summaries like Terraform's "Plan: 1 to add"."""
        counts: dict[str, int] = {}
        for rc in self.changes:
            counts[rc.action] = counts.get(rc.action, 0) + 1
        return counts

    def summary(self) -> str:
        counts = self.counts()
        if not counts:
            return "no resource changes" + (" (outputs change)" if self.has_changes else "")
        order = ("create", "update", "replace", "delete", "forget")
        parts = [f"{counts[a]} to {a}" for a in order if a in counts]
        parts += [f"{n} to {a}" for a, n in counts.items() if a not in order]
        return ", ".join(parts)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, plan_file: Path | None = None,
                  has_changes: bool | None = None) -> Plan:
        changes = [ResourceChange.from_json(e) for e in data.get("resource_changes") or ()]
        outputs = {name: tuple((entry or {}).get("actions") or ())
                   for name, entry in (data.get("output_changes") or {}).items()}
        if has_changes is None:
            has_changes = (any(rc.changes_something for rc in changes)
                           or any(a != ("no-op",) for a in outputs.values()))
        return cls(plan_file=plan_file, has_changes=has_changes, resource_changes=changes,
                   output_changes=outputs, errored=bool(data.get("errored")), raw=dict(data))
