"""A pytest plugin: the test session gives back every subnet claimed under its temporary root.

Tests create repositories under pytest's temporary directories and run the real tool in them;
every environment the tool creates there claims a /24 in the machine-wide subnet table
(:mod:`infrablocks.subnets`). An entry whose checkout still exists and holds state is, by the
tool's rule, in use — and pytest keeps the last three sessions' directories — so without this
plugin each session would leave claims behind that shrink the pool for every later session on
the machine (and a pinned subnet would be refused to the next one).

At the end of the session (passed, failed or interrupted), every entry whose checkout lies
under this session's ``basetemp`` is removed from the table. Instances are not this plugin's
business: the fixtures that start them stop them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infrablocks.subnets import SubnetTable


def release_claims_under(root: Path, table: SubnetTable | None = None) -> list[str]:
    """Remove the table's entries whose checkout is ``root`` or below it (and those checkouts'
    memory of them, which would otherwise be migrated back); their owner keys."""
    from infrablocks.environments import SubnetAllocator

    root = root.resolve()
    table = table or SubnetTable()
    with table.locked() as entries:
        mine = {key: entry for key, entry in entries.entries.items()
                if Path(entry.checkout) == root or root in Path(entry.checkout).parents}
        for key in mine:
            del entries.entries[key]
    for entry in mine.values():
        if Path(entry.checkout).is_dir():
            SubnetAllocator(Path(entry.checkout), table=table).release(entry.environment)
    return sorted(mine)


def pytest_sessionfinish(session: pytest.Session) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    try:
        basetemp = factory.getbasetemp()
    except (OSError, ValueError):
        return
    release_claims_under(Path(basetemp))
