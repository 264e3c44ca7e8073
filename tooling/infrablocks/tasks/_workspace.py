"""The workspace every command opens: deploy's :func:`~infrablocks.deploy.workspace.open_workspace`
given the rolling procedure's entry point (:func:`infrablocks.upgrade.engine.roll`) as its
``roller``, so that each command that creates or applies (``create``, ``env``,
``test-create``, ``test-upgrade``, ``apply``, ``upgrade`` and the dependents it re-applies)
repairs a stateful block's members one at a time. ``deploy`` sits below ``upgrade`` and cannot
import it: the command layer joins them here, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infrablocks.deploy.workspace import Workspace


_opened: list[Workspace] = []


def command_workspace() -> Workspace:
    """The workspace of the repository around the working directory, with its roller."""
    from infrablocks.deploy.workspace import open_workspace
    from infrablocks.upgrade.engine import roll

    workspace = open_workspace(roller=roll)
    _opened.append(workspace)
    return workspace


def take_subnet_notes() -> list[str]:
    """What the subnet allocators of the workspaces this command opened reclaimed or repaired
    in the machine-wide table (``reclaimed 127.42.7.0/24 from …: its checkout is gone``), each
    once; the list of opened workspaces is emptied (``run_command`` prints them at the end)."""
    notes: list[str] = []
    for workspace in _opened:
        notes += [n for n in workspace.subnets.notes if n not in notes]
    _opened.clear()
    return notes
