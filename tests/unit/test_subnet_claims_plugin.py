"""The test session's plugin gives back the claims made under its temporary root, only those."""

from __future__ import annotations

from pathlib import Path

from infrablocks.environments import SubnetAllocator
from infrablocks.subnets import SubnetTable
from tests.support.subnet_claims import release_claims_under


def test_claims_under_the_root_are_released_and_others_kept(tmp_path: Path) -> None:
    table = SubnetTable(tmp_path / "table", bound=set)
    inside = tmp_path / "session" / "test_x0" / "repo"
    outside = tmp_path / "elsewhere" / "repo"
    for checkout in (inside, outside):
        checkout.mkdir(parents=True)
        SubnetAllocator(checkout, table=table).subnet_for("staging")
    pinned = SubnetAllocator(inside, table=table).subnet_for("pinned", "127.42.251.0/24")

    released = release_claims_under(tmp_path / "session", table)

    assert len(released) == 2
    left = SubnetAllocator(outside, table=table).allocations()
    assert list(left) == ["staging"]
    assert SubnetAllocator(inside, table=table).allocations() == {}
    other = tmp_path / "other"
    other.mkdir()
    assert SubnetAllocator(other, table=table).subnet_for("e", pinned) == pinned
