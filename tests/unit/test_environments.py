import json
import multiprocessing
import re

import pytest

from infrablocks.environments import (
    SubnetAllocator,
    is_ephemeral,
    new_ephemeral_name,
    parse_subnet,
)
from infrablocks.errors import ConfigError


def test_ephemeral_names_are_unique_and_recognised():
    names = {new_ephemeral_name() for _ in range(50)}
    assert len(names) == 50
    assert all(is_ephemeral(n) and re.fullmatch(r"t-[0-9a-f]{6}", n) for n in names)
    assert not is_ephemeral("prod")


def test_parse_subnet_accepts_a_24_in_the_local_range():
    assert parse_subnet("127.42.5.0/24", where="x") == "127.42.5.0/24"


@pytest.mark.parametrize("bad", ["10.0.0.0/24", "127.42.5.0/16", "nonsense", "127.43.1.0/24"])
def test_parse_subnet_refuses_others_naming_where(bad):
    with pytest.raises(ConfigError, match="environments.prod.subnet"):
        parse_subnet(bad, where="environments.prod.subnet")


def test_allocations_are_stable_disjoint_and_released(tmp_path):
    alloc = SubnetAllocator(tmp_path)
    prod = alloc.subnet_for("prod")
    staging = alloc.subnet_for("staging")
    ephemeral = alloc.subnet_for("t-abc123")
    assert len({prod, staging, ephemeral}) == 3
    assert prod.startswith("127.42.") and ephemeral == "127.42.100.0/24"
    assert SubnetAllocator(tmp_path).subnet_for("prod") == prod  # remembered on disk
    alloc.release("t-abc123")
    assert "t-abc123" not in json.loads((tmp_path / "subnets.json").read_text())
    assert alloc.subnet_for("t-def456") == "127.42.100.0/24"


def test_configured_subnet_wins_but_may_not_be_shared(tmp_path):
    alloc = SubnetAllocator(tmp_path)
    assert alloc.subnet_for("prod", "127.42.9.0/24") == "127.42.9.0/24"
    with pytest.raises(ConfigError, match="already used by environment 'prod'"):
        alloc.subnet_for("staging", "127.42.9.0/24")


def _allocate(args):
    path, name = args
    return SubnetAllocator(path).subnet_for(name)


def test_concurrent_allocations_never_collide(tmp_path):
    names = [f"t-{i:06x}" for i in range(12)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        subnets = pool.map(_allocate, [(tmp_path, n) for n in names])
    assert len(set(subnets)) == len(names)
