"""``doit cloud --purge ENV``: remove what an environment left on its platform.

Purge is for leftovers (an interrupted run's instances, a throwaway environment whose state is
gone). An environment that still has deployments (records or state) is destroyed with
``doit destroy``; purging it anyway needs a confirmation (``confirm`` is shown a
:class:`PurgePreview`), holds every block's lock while it runs (never under a running command),
and marks each deployment record ``purged`` (``extra["purged"]``: the status before, what was
removed), so ``doit status`` tells what is gone. The state is left alone: it is the only link to
what existed (``doit create`` rebuilds, ``doit destroy`` then forgets). An environment without
deployments also gives its subnet claim back (machine-wide table), as its last destroy would.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.platforms import SweepReport


@dataclass
class PurgePreview:
    """What a purge of ``environment`` would remove, and what it has deployed."""

    environment: str
    deployed: list[str] = field(default_factory=list)   # blocks with records or state
    instances: list[str] = field(default_factory=list)  # "name (id)"
    volumes: list[str] = field(default_factory=list)    # "name (id)"


def purge_preview(workspace: Workspace, environment: str) -> PurgePreview:
    snapshot = workspace.platform(environment).inventory(environment)
    return PurgePreview(
        environment, list(workspace.backend.list_blocks(environment)),
        [f"{i['name']} ({i['id']})" for i in snapshot["instances"]],
        [f"{v['name']} ({v['id']})" for v in snapshot["volumes"]])


def purge_environment(workspace: Workspace, environment: str, *,
                      confirm: Callable[[PurgePreview], bool]) -> SweepReport | None:
    """Sweep ``environment`` from its platform; None when ``confirm`` refused (it is asked only
    when the environment has deployments). Errors: ``LockHeldError`` while a command works on
    one of its blocks."""
    preview = purge_preview(workspace, environment)
    if not preview.deployed:
        removed = workspace.platform(environment).sweep_environment(environment)
        # nothing deployed and nothing left: its subnet claim goes back, as after the last
        # destroy (one with deployments keeps it: its state says where its instances were)
        workspace.subnets.release(environment)
        return removed
    if not confirm(preview):
        return None
    backend = workspace.backend
    with contextlib.ExitStack() as locks:
        for block in preview.deployed:
            locks.enter_context(backend.acquire_lock(environment, block, "purge"))
        removed = workspace.platform(environment).sweep_environment(environment)
        _mark_purged(workspace, environment, removed)
    return removed


def _mark_purged(workspace: Workspace, environment: str, removed: SweepReport) -> None:
    from infrablocks.state import PURGED
    from infrablocks.state.records import current_identity, utc_now_iso

    backend = workspace.backend
    for record in backend.list_records(environment):
        if record.status == PURGED:
            continue
        backend.put_record(dataclasses.replace(
            record, status=PURGED, applied_at=utc_now_iso(), applied_by=current_identity(),
            extra={**record.extra, "purged": {
                "previous_status": record.status,
                **{kind: list(items) for kind, items in removed.items() if kind != "kept"}}}))
