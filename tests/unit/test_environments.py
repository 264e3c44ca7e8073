"""Environment names and the machine-wide subnet allocation (infrablocks.environments and
infrablocks.subnets). Each test has its own machine-wide table (a temporary directory) and its
own checkouts; ``bound`` is injected except where a real bound socket is the point."""

import ipaddress
import json
import multiprocessing
import os
import re
import shutil
import socket
import stat
from pathlib import Path

import pytest

from infrablocks.environments import (
    SubnetAllocator,
    is_ephemeral,
    new_ephemeral_name,
    parse_subnet,
)
from infrablocks.errors import ConfigError, UsageError
from infrablocks.subnets import STATE_DIR_ENV, SubnetTable, bound_addresses, machine_state_dir


def test_ephemeral_names_are_unique_and_recognised():
    names = {new_ephemeral_name() for _ in range(50)}
    assert len(names) == 50
    assert all(is_ephemeral(n) and re.fullmatch(r"t-[0-9a-f]{6}", n) for n in names)
    assert not is_ephemeral("prod")


def test_parse_subnet_accepts_a_24_in_the_local_range():
    assert parse_subnet("127.42.5.0/24", where="x") == "127.42.5.0/24"


@pytest.mark.parametrize("bad", ["10.0.0.0/24", "127.42.5.0/16", "nonsense", "127.43.1.0/24",
                                 "2400::/24"])
def test_parse_subnet_refuses_others_naming_where(bad):
    with pytest.raises(ConfigError, match="environments.prod.subnet"):
        parse_subnet(bad, where="environments.prod.subnet")


def checkout(base: Path, name: str = "repo") -> Path:
    root = base / name
    root.mkdir(parents=True, exist_ok=True)
    (root / "blocks.toml").write_text("")
    return root


def nothing_bound() -> set:
    return set()


@pytest.fixture
def table(tmp_path: Path) -> SubnetTable:
    return SubnetTable(tmp_path / "machine", bound=nothing_bound)


def add_state(repo: Path, environment: str, block: str = "base") -> None:
    directory = repo / ".infrablocks" / "state" / environment / block
    directory.mkdir(parents=True)
    (directory / "terraform.tfstate").write_text('{"version": 4}')


def test_allocations_are_stable_disjoint_and_released(tmp_path, table):
    repo = checkout(tmp_path)
    alloc = SubnetAllocator(repo, table=table)
    prod = alloc.subnet_for("prod")
    staging = alloc.subnet_for("staging")
    ephemeral = alloc.subnet_for("t-abc123")
    assert (prod, staging, ephemeral) == ("127.42.1.0/24", "127.42.2.0/24", "127.42.100.0/24")
    assert SubnetAllocator(repo, table=table).subnet_for("prod") == prod  # remembered
    assert alloc.allocations() == {"prod": prod, "staging": staging, "t-abc123": ephemeral}
    alloc.release("t-abc123")
    assert "t-abc123" not in alloc.allocations()
    assert "t-abc123" not in json.loads((repo / ".infrablocks" / "subnets.json").read_text())
    assert alloc.subnet_for("t-def456") == "127.42.100.0/24"


def test_the_table_is_private_and_outside_the_checkout(tmp_path, table):
    repo = checkout(tmp_path)
    SubnetAllocator(repo, table=table).subnet_for("prod")
    assert table.path == tmp_path / "machine" / "subnets.json"
    assert stat.S_IMODE(table.path.stat().st_mode) == 0o600
    [entry] = json.loads(table.path.read_text())["environments"].values()
    assert entry["checkout"] == str(repo.resolve()) and entry["environment"] == "prod"
    assert entry["holder"]["pid"] == os.getpid()


def test_two_checkouts_never_get_the_same_subnet(tmp_path, table):
    first = SubnetAllocator(checkout(tmp_path, "one"), table=table)
    second = SubnetAllocator(checkout(tmp_path, "two"), table=table)
    assert first.subnet_for("t-aaaaaa") != second.subnet_for("t-aaaaaa")
    assert first.subnet_for("prod") != second.subnet_for("prod")


def test_configured_subnet_wins_but_may_not_be_shared(tmp_path, table):
    alloc = SubnetAllocator(checkout(tmp_path), table=table)
    assert alloc.subnet_for("prod", "127.42.9.0/24") == "127.42.9.0/24"
    with pytest.raises(ConfigError, match="in use by environment 'prod'"):
        alloc.subnet_for("staging", "127.42.9.0/24")


def test_dynamic_allocation_skips_subnets_pinned_for_other_environments(tmp_path, table):
    alloc = SubnetAllocator(checkout(tmp_path), table=table,
                            reserved={"prod": "127.42.1.0/24"})
    assert alloc.subnet_for("staging") == "127.42.2.0/24"
    assert alloc.subnet_for("prod", "127.42.1.0/24") == "127.42.1.0/24"


def _claim_and_exit(args):
    table_dir, repo, environment, configured, *saved_plan = args
    table = SubnetTable(Path(table_dir), bound=nothing_bound)
    return SubnetAllocator(Path(repo), table=table).subnet_for(
        environment, configured, saved_plan=saved_plan[0] if saved_plan else None)


def claim_in_another_process(table, repo, environment, configured=None, saved_plan=None):
    """A claim by a process that is gone afterwards (like a finished or killed `doit`)."""
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.apply(_claim_and_exit, ((table.directory, repo, environment, configured,
                                             saved_plan),))


def test_a_pin_held_by_another_checkout_is_refused_naming_it(tmp_path, table):
    other, mine = checkout(tmp_path, "other"), checkout(tmp_path, "mine")
    claim_in_another_process(table, other, "prod", "127.42.5.0/24")
    add_state(other, "prod")          # the other checkout's prod exists
    alloc = SubnetAllocator(mine, table=table)
    with pytest.raises(ConfigError) as refused:
        alloc.subnet_for("prod", "127.42.5.0/24")
    assert f"environment 'prod' of {other.resolve()}" in str(refused.value)
    assert "collide" in refused.value.hint


def test_a_pin_is_taken_over_once_the_other_checkout_is_gone(tmp_path, table):
    other, mine = checkout(tmp_path, "other"), checkout(tmp_path, "mine")
    claim_in_another_process(table, other, "prod", "127.42.5.0/24")
    add_state(other, "prod")
    shutil.rmtree(other)               # the checkout was deleted
    alloc = SubnetAllocator(mine, table=table)
    assert alloc.subnet_for("prod", "127.42.5.0/24") == "127.42.5.0/24"
    assert "its checkout" in alloc.notes[0] and "is gone" in alloc.notes[0]


def test_two_checkouts_sharing_one_state_share_the_environment(tmp_path, table):
    shared = lambda env: (f"s3://bucket/prefix/{env}", None)  # noqa: E731
    first = SubnetAllocator(checkout(tmp_path, "one"), table=table, locate=shared)
    second = SubnetAllocator(checkout(tmp_path, "two"), table=table, locate=shared)
    assert first.subnet_for("prod", "127.42.5.0/24") == "127.42.5.0/24"
    assert second.subnet_for("prod", "127.42.5.0/24") == "127.42.5.0/24"
    assert second.subnet_for("staging") == first.subnet_for("staging")


def test_a_stale_entry_is_reclaimed(tmp_path, table):
    """An environment whose claiming process is gone, with no state and nothing bound."""
    other, mine = checkout(tmp_path, "other"), checkout(tmp_path, "mine")
    assert claim_in_another_process(table, other, "t-aaaaaa") == "127.42.100.0/24"
    alloc = SubnetAllocator(mine, table=table)
    assert alloc.subnet_for("t-bbbbbb") == "127.42.100.0/24"
    assert alloc.notes == [f"reclaimed 127.42.100.0/24 from environment 't-aaaaaa' of "
                           f"{other.resolve()}: environment 't-aaaaaa' of {other.resolve()} has "
                           f"no state and nothing uses its addresses"]
    assert SubnetAllocator(other, table=table).allocations() == {}


def test_a_claim_for_a_saved_plan_holds_while_the_plan_file_exists(tmp_path, table):
    """`doit plan --out FILE` claims the subnet its plan is made on; nothing is deployed yet and
    the planning process is gone, but `doit apply FILE` needs that subnet: the claim holds
    while FILE exists (CI once saw another checkout take it between the two commands)."""
    other, mine = checkout(tmp_path, "other"), checkout(tmp_path, "mine")
    saved = other / "tiny.plan"
    saved.write_text("plan")
    assert claim_in_another_process(table, other, "t-aaaaaa", None, saved) == "127.42.100.0/24"
    # the apply's own claim (another process again) keeps the hold while the file exists
    assert claim_in_another_process(table, other, "t-aaaaaa") == "127.42.100.0/24"
    alloc = SubnetAllocator(mine, table=table)
    assert alloc.subnet_for("t-bbbbbb") == "127.42.101.0/24"          # not taken from it
    assert alloc.notes == []
    saved.unlink()                                                   # the plan is gone
    assert SubnetAllocator(mine, table=table).subnet_for("t-cccccc") == "127.42.100.0/24"
    assert SubnetAllocator(other, table=table).allocations() == {}


def test_an_entry_with_state_or_a_live_holder_or_bound_addresses_is_kept(tmp_path):
    bound: set = set()
    table = SubnetTable(tmp_path / "machine", bound=lambda: set(bound))
    with_state, holding = checkout(tmp_path, "with-state"), checkout(tmp_path, "holding")
    busy, mine = checkout(tmp_path, "busy"), checkout(tmp_path, "mine")
    assert claim_in_another_process(table, with_state, "t-aaaaaa") == "127.42.100.0/24"
    add_state(with_state, "t-aaaaaa")
    SubnetAllocator(holding, table=table).subnet_for("t-bbbbbb")   # this process: alive
    assert claim_in_another_process(table, busy, "t-cccccc") == "127.42.102.0/24"
    bound.add(ipaddress.ip_address("127.42.102.9"))                  # its instance still runs
    assert SubnetAllocator(mine, table=table).subnet_for("t-dddddd") == "127.42.103.0/24"


def test_a_subnet_with_a_bound_address_is_skipped(tmp_path):
    """A real socket on an address of the first candidate: psutil sees it."""
    table = SubnetTable(tmp_path / "machine")   # the real bound-address check
    first_free = next(f"127.42.{n}.0/24" for n in range(100, 200)
                      if not any(a in ipaddress.ip_network(f"127.42.{n}.0/24")
                                 for a in bound_addresses()))
    listener = socket.socket()
    try:
        listener.bind((str(ipaddress.ip_network(first_free)[77]), 0))
        listener.listen()
        assert ipaddress.ip_address(listener.getsockname()[0]) in bound_addresses()
        chosen = SubnetAllocator(checkout(tmp_path), table=table).subnet_for("t-aaaaaa")
    finally:
        listener.close()
    assert chosen != first_free
    assert int(chosen.split(".")[2]) > int(first_free.split(".")[2])


def test_a_udp_socket_counts_as_bound():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(("127.42.254.201", 0))
        assert ipaddress.ip_address("127.42.254.201") in bound_addresses()
    finally:
        sock.close()


def test_a_pin_whose_addresses_are_bound_is_refused_unless_the_environment_exists(tmp_path):
    table = SubnetTable(tmp_path / "machine",
                        bound=lambda: {ipaddress.ip_address("127.42.5.11")})
    repo = checkout(tmp_path)
    with pytest.raises(ConfigError, match=r"addresses in use on this machine: 127\.42\.5\.11"):
        SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.5.0/24")
    add_state(repo, "prod")   # its own instances hold them
    assert SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.5.0/24") \
        == "127.42.5.0/24"


def test_the_per_checkout_table_of_earlier_versions_is_migrated(tmp_path, table):
    repo = checkout(tmp_path)
    (repo / ".infrablocks").mkdir()
    (repo / ".infrablocks" / "subnets.json").write_text(json.dumps(
        {"prod": "127.42.7.0/24", "t-0ld000": "127.42.150.0/24"}))
    add_state(repo, "prod")
    alloc = SubnetAllocator(repo, table=table)
    assert alloc.allocations() == {"prod": "127.42.7.0/24", "t-0ld000": "127.42.150.0/24"}
    assert alloc.subnet_for("prod") == "127.42.7.0/24"
    other = SubnetAllocator(checkout(tmp_path, "other"), table=table)
    assert other.subnet_for("prod") == "127.42.1.0/24"
    # the leftover ephemeral entry has no state, no holder, nothing bound: reclaimable
    assert [other.subnet_for(f"t-{n:06x}") for n in range(51)][-1] == "127.42.150.0/24"


def test_a_moved_checkout_gets_its_subnet_back(tmp_path, table):
    old = checkout(tmp_path, "old")
    SubnetAllocator(old, table=table).subnet_for("staging")
    SubnetAllocator(old, table=table).subnet_for("prod")        # 127.42.2.0/24
    add_state(old, "prod")
    moved = tmp_path / "moved"
    old.rename(moved)
    assert SubnetAllocator(moved, table=table).subnet_for("prod") == "127.42.2.0/24"


def test_the_pool_running_out_is_a_usage_error(tmp_path, table, monkeypatch):
    monkeypatch.setenv("INFRABLOCKS_EPHEMERAL_SUBNETS", "150-151")
    alloc = SubnetAllocator(checkout(tmp_path), table=table)
    assert alloc.subnet_for("t-000001") == "127.42.150.0/24"
    assert alloc.subnet_for("t-000002") == "127.42.151.0/24"
    with pytest.raises(UsageError, match="no free subnet left for environment 't-000003'"):
        alloc.subnet_for("t-000003")


def _allocate(args):
    table_dir, repo, name = args
    return SubnetAllocator(Path(repo), table=SubnetTable(Path(table_dir), bound=nothing_bound)
                           ).subnet_for(name)


def test_concurrent_allocations_never_collide(tmp_path, table):
    repos = [checkout(tmp_path, f"repo{i}") for i in range(3)]
    jobs = [(table.directory, repos[i % 3], f"t-{i:06x}") for i in range(12)]
    with multiprocessing.get_context("fork").Pool(4) as pool:
        subnets = pool.map(_allocate, jobs)
    assert len(set(subnets)) == len(jobs)


def test_the_state_directory_falls_back_when_not_writable(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker / "state"))     # cannot be created
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "runtime"))
    assert machine_state_dir() == tmp_path / "runtime" / "infrablocks"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(blocker / "runtime"))
    fallback = Path(f"/tmp/infrablocks-{os.getuid()}")
    existed = fallback.exists()
    try:
        assert machine_state_dir() == fallback
        assert stat.S_IMODE(fallback.stat().st_mode) == 0o700
    finally:
        if not existed:
            shutil.rmtree(fallback, ignore_errors=True)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert machine_state_dir() == tmp_path / "state" / "infrablocks"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "explicit"))
    assert machine_state_dir() == tmp_path / "explicit"


def test_threads_of_one_process_agree_on_the_state_directory(tmp_path, monkeypatch):
    """Worker threads (a destroy's blocks) ask at once: none may fall back elsewhere."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    for _ in range(20):
        table = SubnetTable()
        with ThreadPoolExecutor(max_workers=8) as pool:
            found = set(pool.map(lambda _: machine_state_dir(), range(16)))
            found |= set(pool.map(lambda _, t=table: t.directory, range(16)))
        assert found == {tmp_path / "state" / "infrablocks"}


# -- an environment with state keeps its subnet (a pin never moves it; read-only looks write
# nothing) -------------------------------------------------------------------------------------

def add_instances(repo: Path, environment: str, *addresses: str, block: str = "base") -> None:
    """A block's state whose instances have ``private_ip`` in ``addresses`` (as the local
    cloud's ``localcloud_instance`` records them)."""
    directory = repo / ".infrablocks" / "state" / environment / block
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "terraform.tfstate").write_text(json.dumps({"version": 4, "resources": [
        {"mode": "managed", "type": "localcloud_instance", "name": f"i{n}",
         "instances": [{"attributes": {"id": f"i-{n}", "private_ip": address}}]}
        for n, address in enumerate(addresses)]}))


def snapshot(repo: Path, table: SubnetTable) -> tuple[bytes | None, bytes | None]:
    """The machine-wide table and the checkout's memory, byte for byte (None: absent)."""
    memory = repo / ".infrablocks" / "subnets.json"
    return (table.path.read_bytes() if table.path.exists() else None,
            memory.read_bytes() if memory.exists() else None)


@pytest.mark.parametrize("claim", [True, False])
def test_a_pin_that_would_move_a_deployed_environment_is_refused_writing_nothing(
        tmp_path, table, claim):
    repo = checkout(tmp_path)
    assert SubnetAllocator(repo, table=table).subnet_for("prod") == "127.42.1.0/24"
    add_instances(repo, "prod", "127.42.1.11", "127.42.1.12")
    before = snapshot(repo, table)
    with pytest.raises(ConfigError) as refused:
        SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.77.0/24", claim=claim)
    message = str(refused.value)
    assert "blocks.toml [environments.prod] subnet" in message
    assert "deployed on 127.42.1.0/24" in message and "'127.42.77.0/24'" in message
    assert 'subnet = "127.42.1.0/24"' in refused.value.hint and "destroy" in refused.value.hint
    assert snapshot(repo, table) == before
    # the pin put back (or removed): the same subnet, nothing moved
    assert SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.1.0/24") \
        == "127.42.1.0/24"
    assert SubnetAllocator(repo, table=table).subnet_for("prod") == "127.42.1.0/24"
    # the refused subnet was never claimed: another environment may have it
    assert SubnetAllocator(repo, table=table).subnet_for("staging", "127.42.77.0/24") \
        == "127.42.77.0/24"


def test_destroy_looks_past_a_pin_that_differs(tmp_path, table):
    repo = checkout(tmp_path)
    SubnetAllocator(repo, table=table).subnet_for("prod")
    add_instances(repo, "prod", "127.42.1.11")
    before = snapshot(repo, table)
    assert SubnetAllocator(repo, table=table).subnet_for(
        "prod", "127.42.77.0/24", claim=False, destroying=True) == "127.42.1.0/24"
    assert snapshot(repo, table) == before


def test_read_only_looks_claim_nothing(tmp_path, table):
    repo = checkout(tmp_path)
    alloc = SubnetAllocator(repo, table=table)
    assert alloc.subnet_for("prod", claim=False) == "127.42.1.0/24"
    assert alloc.subnet_for("staging", "127.42.9.0/24", claim=False) == "127.42.9.0/24"
    assert snapshot(repo, table) == (None, None)
    assert alloc.allocations() == {}


@pytest.mark.parametrize("memory", ['{"prod": 5}', '{"prod": "nonsense"}', "not json", "[1]",
                                    None])
def test_a_deployed_environment_gets_its_subnet_back_from_its_state(tmp_path, table, memory):
    """A fresh machine-wide table (another INFRABLOCKS_STATE_DIR) and a damaged or missing
    memory: the instances in the state tell the subnet; nothing new is handed out."""
    repo = checkout(tmp_path)
    add_instances(repo, "prod", "127.42.12.11", "127.42.12.12")
    if memory is not None:
        (repo / ".infrablocks" / "subnets.json").write_text(memory)
    alloc = SubnetAllocator(repo, table=table)
    assert alloc.subnet_for("prod", claim=False) == "127.42.12.0/24"
    assert alloc.subnet_for("prod") == "127.42.12.0/24"
    assert alloc.allocations() == {"prod": "127.42.12.0/24"}
    assert alloc.subnet_for("staging") == "127.42.1.0/24"
    assert json.loads((repo / ".infrablocks" / "subnets.json").read_text()) == {
        "prod": "127.42.12.0/24", "staging": "127.42.1.0/24"}
    aside = repo / ".infrablocks" / "subnets.json.unreadable"
    assert aside.read_text() == memory if memory in ("not json", "[1]") else not aside.exists()


def test_the_state_wins_over_a_table_entry_that_moved(tmp_path, table):
    """An entry an earlier version moved under a deployed environment is put right."""
    repo = checkout(tmp_path)
    SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.77.0/24")
    add_instances(repo, "prod", "127.42.12.11")
    alloc = SubnetAllocator(repo, table=table)
    assert alloc.subnet_for("prod") == "127.42.12.0/24"
    assert "its state's instances are on 127.42.12.0/24" in alloc.notes[0]
    assert json.loads((repo / ".infrablocks" / "subnets.json").read_text()) \
        == {"prod": "127.42.12.0/24"}


@pytest.mark.parametrize("memory", ['{"prod": 5}', "not json", None])
def test_a_deployed_environment_whose_subnet_is_unknown_is_refused(tmp_path, table, memory):
    repo = checkout(tmp_path)
    add_state(repo, "prod")          # state without instances: it cannot tell
    if memory is not None:
        (repo / ".infrablocks").mkdir(exist_ok=True)
        (repo / ".infrablocks" / "subnets.json").write_text(memory)
    before = snapshot(repo, table)
    for claim in (False, True):
        with pytest.raises(ConfigError) as refused:
            SubnetAllocator(repo, table=table).subnet_for("prod", claim=claim)
        assert "has state, but which subnet" in str(refused.value)
        assert str(repo.resolve() / ".infrablocks" / "subnets.json") in str(refused.value)
        assert "blocks.toml" in refused.value.hint and "destroy" in refused.value.hint
        assert snapshot(repo, table) == before
    # the user's word: a pin says where it is
    assert SubnetAllocator(repo, table=table).subnet_for("prod", "127.42.12.0/24") \
        == "127.42.12.0/24"


def test_subnets_in_state_reads_the_instances_addresses():
    from infrablocks.environments import subnets_in_state

    assert subnets_in_state(None) == set()
    assert subnets_in_state({"version": 4}) == set()
    assert subnets_in_state({"resources": [
        {"instances": [{"attributes": {"private_ip": "127.42.3.11"}},
                       {"attributes": {"private_ip": "10.0.0.1", "id": "x"}},
                       {"attributes": {"private_ip": None}}]},
        {"instances": [{"attributes": {"size_gb": 1}}]}, "junk"]}) == {"127.42.3.0/24"}


def test_forget_environment_removes_unheld_locks_and_keeps_held_ones_and_state(tmp_path):
    from infrablocks.state import new_record
    from infrablocks.state.local import LocalBackend

    backend = LocalBackend(tmp_path / "state")
    lock = backend.acquire_lock("t-aaaaaa", "base", "create")
    lock.release()
    held = backend.acquire_lock("t-aaaaaa", "nomad", "create")
    try:
        backend.forget_environment("t-aaaaaa")
        assert not (tmp_path / "state" / "t-aaaaaa" / "base").exists()
        assert (tmp_path / "state" / "t-aaaaaa" / "nomad" / "infrablocks.lock").exists()
    finally:
        held.release()
    backend.put_record(new_record("t-aaaaaa", "stolon", "1.0.0", outputs=None,
                                  terraform_version="1.15.0"))
    backend.forget_environment("t-aaaaaa")
    assert not (tmp_path / "state" / "t-aaaaaa" / "nomad").exists()
    assert backend.list_blocks("t-aaaaaa") == ["stolon"]
    backend.purge("t-aaaaaa", "stolon")
    backend.forget_environment("t-aaaaaa")
    assert not (tmp_path / "state" / "t-aaaaaa").exists()
