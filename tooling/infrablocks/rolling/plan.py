"""From a Terraform plan to a rolling plan: per-instance units and "the rest".

A unit is one index ``i`` of the instance group whose instance (or its attachment) is replaced:
``instances[i]`` + ``attachments[i]``. Everything else the plan changes (new volumes, in-place tag
updates, a scaled-up member, …) is "the rest", applied by the final full apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.health.base import Member

if TYPE_CHECKING:
    from infrablocks.rolling.declaration import RollingDeclaration
    from infrablocks.terraform.plan import Plan, ResourceChange

__all__ = ["RollingPlan", "RollingUnit", "classify", "members_from_state", "order_units"]


@dataclass
class RollingUnit:
    index: int
    instance_address: str
    attachment_address: str | None
    actions: dict[str, str] = field(default_factory=dict)   # address → action (replace, …)
    reasons: list[str] = field(default_factory=list)        # attributes forcing replacement
    interface_address: str | None = None                    # its network interface, if any

    def targets(self) -> list[str]:
        return [a for a in (self.instance_address, self.attachment_address,
                            self.interface_address) if a]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "instance": self.instance_address,
                "attachment": self.attachment_address, "interface": self.interface_address,
                "actions": dict(self.actions), "reasons": list(self.reasons)}


@dataclass
class RollingPlan:
    units: list[RollingUnit]
    rest: list[str]                 # "address (action)" of the other changes
    has_changes: bool               # the plan changes anything at all (outputs included)

    @property
    def rolling(self) -> bool:
        return bool(self.units)

    def to_json(self) -> dict[str, Any]:
        return {"units": [u.to_json() for u in self.units], "rest": list(self.rest),
                "has_changes": self.has_changes}


def _base_address(change: ResourceChange) -> str:
    address = change.address
    return address.rsplit("[", 1)[0] if change.index is not None else address


def classify(plan: Plan, declaration: RollingDeclaration) -> RollingPlan:
    """Split the plan's changes into rolling units (by index) and the rest."""
    units: dict[int, RollingUnit] = {}
    rest: list[str] = []
    for change in plan.changes:
        base = _base_address(change)
        index = change.index
        if (not change.is_replace or not isinstance(index, int) or change.deposed
                or base not in (declaration.instances, declaration.attachments,
                                declaration.interfaces)):
            rest.append(f"{change.address} ({change.action})")
            continue
        unit = units.setdefault(index, RollingUnit(
            index, declaration.instance_address(index), declaration.attachment_address(index),
            interface_address=declaration.interface_address(index)))
        unit.actions[change.address] = change.action
        unit.reasons += [".".join(str(p) for p in path) for path in change.replace_paths
                         if ".".join(str(p) for p in path) not in unit.reasons]
    return RollingPlan([units[i] for i in sorted(units)], rest, plan.has_changes)


def _resources(state: dict[str, Any] | None, address: str) -> dict[int, dict[str, Any]]:
    """``index → attributes`` of the instances of a managed resource ``type.name``."""
    found: dict[int, dict[str, Any]] = {}
    *modules, rtype, rname = address.split(".")
    module = ".".join(modules) or None
    for resource in (state or {}).get("resources", []):
        if (resource.get("mode") != "managed" or resource.get("type") != rtype
                or resource.get("name") != rname or resource.get("module") != module):
            continue
        for instance in resource.get("instances", []):
            key = instance.get("index_key", 0)
            if isinstance(key, int) and not instance.get("deposed"):
                found[key] = instance.get("attributes") or {}
    return found


def members_from_state(state: dict[str, Any] | None,
                       declaration: RollingDeclaration) -> list[Member]:
    """The instance group's members as the block's Terraform state records them."""
    instances = _resources(state, declaration.instances)
    attachments = _resources(state, declaration.attachments) if declaration.attachments else {}
    members = []
    for index in sorted(instances):
        attributes = instances[index]
        attachment = attachments.get(index, {})
        tagged = attributes.get("tags")
        tags = tagged if isinstance(tagged, dict) else {}
        members.append(Member(
            index=index, name=str(attributes.get("name") or tags.get("Name")  # EC2's name tag
                                  or attributes.get("id")),
            instance_address=declaration.instance_address(index),
            attachment_address=declaration.attachment_address(index),
            instance_id=str(attributes.get("id", "")),
            private_ip=str(attributes.get("private_ip", "")),
            volume_id=attachment.get("volume_id")))
    return members


def order_units(units: list[RollingUnit], leader_index: int | None,
                order: str) -> list[RollingUnit]:
    """Units by index; with ``leader-last``, the leader's unit moves to the end."""
    ordered = sorted(units, key=lambda u: u.index)
    if order == "leader-last" and leader_index is not None:
        ordered.sort(key=lambda u: u.index == leader_index)
    return ordered


def unit_for_index(plan: Plan, declaration: RollingDeclaration, index: int) -> RollingUnit | None:
    """Unit ``index`` if the plan changes its instance or attachment in any way.

    A resumed upgrade uses it: an apply interrupted half-way leaves the unit's instance deleted
    (the plan creates it, which ``classify`` counts as "the rest", like a scale-up).
    """
    addresses = {declaration.instance_address(index), declaration.attachment_address(index),
                 declaration.interface_address(index)}
    changes = [c for c in plan.changes if c.address in addresses and not c.deposed]
    if not changes:
        return None
    return RollingUnit(index, declaration.instance_address(index),
                       declaration.attachment_address(index),
                       {c.address: c.action for c in changes},
                       interface_address=declaration.interface_address(index))
