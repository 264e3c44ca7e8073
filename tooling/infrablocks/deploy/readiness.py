"""A block counts as created only when it serves: its instances run and finished booting, and,
where it declares a health check (its rolling declaration's ``check``), the check passes.

Checked after every apply by `create` (and for an unchanged block, whose instances may have
been restarted since): dependents start only once their dependencies are ready. Everything goes
through the environment's platform (``Platform.block_instances``, ``CloudOps.instance_ready``)
and the service's ``ServiceCheck``; nothing here knows a particular cloud or service.

- Instances: those tagged with the environment and block whose ids the block's Terraform state
  holds, each polled until it is ``running`` and ready. One that stops or is terminated while
  booting fails the block at once, naming the instance and where its console log is.
- Timeouts: the rolling declaration's ``running`` and ``healthy`` timeouts (docs/upgrades.md),
  else :data:`DEFAULT_READY_TIMEOUT` for the instances.
- A declared instance group none of whose members is an instance of the platform (a rolling
  declaration over other resources) has nothing for the check to ask: the check is skipped and
  the readiness says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError

if TYPE_CHECKING:
    from infrablocks.cloud.ops import InstanceInfo
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.runner import CancelToken

DEFAULT_READY_TIMEOUT = 120.0   # seconds for a block's instances to run and finish booting
POLL_SECONDS = 0.2
DEAD_STATES = ("stopping", "stopped", "shutting-down", "terminated")
CONSOLE_TAIL_LINES = 8


class BlockNotReady(InfrablocksError):
    """The block was applied, but its instances did not come up or its health check failed."""


@dataclass
class Readiness:
    instances: list[str] = field(default_factory=list)   # names of the instances waited on
    health: str | None = None                             # the check's summary, if any
    seconds: float = 0.0


def state_names(state: dict[str, Any] | None) -> dict[str, str]:
    """Every managed resource id in a Terraform state → its name (its ``name`` attribute, its
    ``Name`` tag, else the id)."""
    names: dict[str, str] = {}
    for resource in (state or {}).get("resources", []):
        if resource.get("mode") != "managed":
            continue
        for instance in resource.get("instances", []):
            attributes = instance.get("attributes") or {}
            value = attributes.get("id")
            if value:
                raw_tags = attributes.get("tags")
                tags = raw_tags if isinstance(raw_tags, dict) else {}
                names[str(value)] = str(attributes.get("name") or tags.get("Name") or value)
    return names


def wait_ready(workspace: Workspace, environment: str, version: BlockVersion,
               token: CancelToken, *, applied: bool = True) -> Readiness:
    """Wait until ``version``'s instances in ``environment`` are ready and its health check
    passes; :class:`BlockNotReady` naming the instance and its console log otherwise.
    ``applied``: the block was just applied (an instance that stops "died while booting")."""
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.waiting import Deadline, poll

    block = version.block
    state = workspace.backend.read_state(environment, block)
    names = state_names(state)
    platform = workspace.platform(environment)
    declaration = (declaration_for(workspace.registry, version)
                   if workspace.registry.blocks[block].stateful else None)
    timeout = declaration.timeout("running") if declaration else DEFAULT_READY_TIMEOUT
    deadline = Deadline(timeout)
    readiness = Readiness()

    def probe() -> tuple[list[InstanceInfo], list[InstanceInfo]]:
        """The block's instances and those not ready yet; one that died fails the block."""
        instances = [i for i in platform.block_instances(environment, block) if i.id in names]
        dead = [i for i in instances if i.state in DEAD_STATES]
        if dead:
            raise BlockNotReady(
                f"{version.label} in {environment}: "
                + "; ".join(f"{names[i.id]} ({i.id}) "
                            + ("died while booting" if applied else "does not run")
                            + f" (it is {i.state})" for i in dead) + _consoles(dead, names),
                hint="see the console log; a broken image or wrong user data is the usual "
                     "cause. Fix it (a new version), then run the same `doit create` again")
        return instances, [i for i in instances
                           if i.state != "running" or not platform.ops.instance_ready(i.id)]

    polled = poll(probe, lambda seen: not seen[1], timeout=deadline, interval=POLL_SECONDS,
                  cancel=token.event)
    instances, waiting = polled.value
    if waiting:
        raise BlockNotReady(
            f"{version.label} in {environment}: not ready after {timeout:g}s: "
            + ", ".join(f"{names[i.id]} ({i.id}, {i.state})" for i in waiting)
            + _consoles(waiting, names),
            hint="see the console log; raise the block's rolling `timeouts.running` if it "
                 "only boots slowly")
    readiness.instances = sorted(names[i.id] for i in instances)
    running = {i.id for i in instances}
    if declaration is not None:
        token.phase("health check")
        readiness.health = _health(workspace, environment, version, declaration, state,
                                   running)
    readiness.seconds = round(deadline.elapsed(), 2)
    return readiness


def _health(workspace: Workspace, environment: str, version: BlockVersion, declaration: Any,
            state: dict[str, Any] | None, running: set[str]) -> str:
    """The check's ``cluster_health`` of the declared instance group, polled up to the
    ``healthy`` timeout. A group none of whose members is an instance of the platform (a
    declaration over other resources) has nothing the check could ask: skipped, said so."""
    from infrablocks.cloud.ops import CloudNotFoundError
    from infrablocks.health import build_check
    from infrablocks.health.base import CheckContext
    from infrablocks.rolling.gates import poll_gate
    from infrablocks.rolling.plan import members_from_state

    outputs = workspace.backend.read_outputs(environment, version.block)
    check = build_check(declaration.check, CheckContext(
        block=version.block, environment=environment, options=dict(declaration.check_options),
        outputs=outputs.unmasked(), block_dir=str(version.path)))
    members = members_from_state(state, declaration)
    if not any(member.instance_id in running for member in members):
        return (f"{declaration.instances} has no instance on the platform: "
                f"health check ({declaration.check}) skipped")
    ops = workspace.platform(environment).ops
    for member in members:
        try:
            member.console_log = ops.describe_instance(member.instance_id).console_log
        except CloudNotFoundError:
            member.console_log = None
    timeout = declaration.timeout("healthy")
    result, _ = poll_gate(lambda: check.cluster_health(members), timeout,
                          declaration.poll_interval)
    if not result.ok:
        evidence = json.dumps(result.evidence, indent=2, sort_keys=True, default=str)
        logs = [f"{m.name}: {m.console_log}" for m in members if m.console_log]
        raise BlockNotReady(
            f"{version.label} in {environment}: its health check ({declaration.check}) did not "
            f"pass within {timeout:g}s: {result.summary}\nevidence:\n{evidence}"
            + ("\nconsole logs:\n  " + "\n  ".join(logs) if logs else ""),
            hint="see the console logs; fix the cause, then run the same `doit create` again")
    return result.summary


def _consoles(instances: list[InstanceInfo], names: dict[str, str]) -> str:
    lines = []
    for instance in instances:
        if not instance.console_log:
            continue
        lines.append(f"\n  console log of {names[instance.id]}: {instance.console_log}")
        tail = _tail(instance.console_log)
        if tail:
            lines.append("\n" + "\n".join(f"    | {line}" for line in tail))
    return "".join(lines)


def _tail(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-CONSOLE_TAIL_LINES:]
