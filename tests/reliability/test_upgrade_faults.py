"""Rolling upgrades of base under faults: a degraded cluster, a broken image, kill -9 of the
upgrade at step boundaries, a concurrent upgrade. Each case runs in its own repository copy and
local cloud, destroyed whatever happens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.upgrade_env import ENV, UpgradeRepo

pytestmark = [pytest.mark.slow, pytest.mark.reliability]


@pytest.fixture
def make_repo():
    repos: list[UpgradeRepo] = []

    def make() -> UpgradeRepo:
        repos.append(UpgradeRepo())
        return repos[-1]

    yield make
    problems = [p for repo in repos for p in repo.close()]
    assert not problems, problems


def assert_whole_and_upgraded(repo: UpgradeRepo, version_image: str, keys: dict[str, str]):
    image = repo.cloud().find_image("etcd", version_image).id
    instances = repo.instances()
    assert {n: i.image_id for n, i in instances.items()} == {"1": image, "2": image, "3": image}
    assert sorted(repo.healthy_members()) == sorted(repo.ips)
    assert repo.member_count() == 3
    for key, value in keys.items():
        for ip in repo.ips:
            assert repo.get(key, ip) == value


def test_degraded_cluster_is_refused_before_any_change(make_repo):
    repo = make_repo()
    repo.create("1.0.0")
    before = repo.instances()
    repo.cloud().stop_instance(before["2"].id, grace=15)

    refused = repo.upgrade()
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "degraded; nothing was changed" in refused.stderr
    assert before["2"].name in refused.stderr and "stopped" in refused.stderr
    assert "Traceback" not in refused.stderr
    after = repo.instances()
    assert {n: i.id for n, i in after.items()} == {n: i.id for n, i in before.items()}
    assert {i.image_id for i in after.values()} == {before["1"].image_id}
    assert repo.journal() is None
    assert repo.record_version() == "1.0.0"


def test_a_second_upgrade_of_the_same_block_is_refused_or_waits(make_repo):
    """A held lock: refused at once with `--lock-timeout 0` (naming the holder); with a
    timeout, the upgrade says who holds the lock and goes on once it is released."""
    import threading

    repo = make_repo()
    repo.create("1.0.0")
    backend = repo.workspace().backend
    with backend.acquire_lock(ENV, "base", "upgrade"):
        second = repo.upgrade("--lock-timeout", "0")
    assert second.returncode == 1
    assert "is locked by" in second.stderr and "running `upgrade`" in second.stderr
    assert repo.journal() is None

    held = backend.acquire_lock(ENV, "base", "upgrade")
    releaser = threading.Timer(3.0, held.release)
    releaser.start()
    try:
        waited = repo.upgrade("--to", "1.0.0", "--lock-timeout", "120")
    finally:
        releaser.cancel()
        held.release()
    text = " ".join((waited.stdout + waited.stderr).split())
    assert waited.returncode == 0, text
    assert "waiting up to 120s for the lock of base: held by" in text
    assert "running `upgrade`" in text
    assert repo.journal() is None and repo.record_version() == "1.0.0"


def test_broken_image_halts_after_the_first_unit_and_rollback_restores_it(make_repo):
    repo = make_repo()
    repo.add_broken_base_version("1.2.0", rejoin_timeout=15)
    repo.create("1.1.0")
    repo.put("/kept/a", "before")
    before = repo.instances()

    halted = repo.upgrade("--to", "1.2.0")
    assert halted.returncode == 1, halted.stdout + halted.stderr
    journal = repo.journal()
    failed_index = journal["failure"]["unit"]
    assert journal["status"] == "failed" and journal["failure"]["step"] == "rejoin"
    failed = str(failed_index + 1)
    assert "halted at unit" in halted.stderr and "step rejoin" in halted.stderr
    assert "evidence:" in halted.stderr and "console.log" in halted.stderr
    assert "--rollback-failed" in halted.stderr
    # only the first unit was touched; the other two keep quorum and the data
    after = repo.instances()
    broken_image = repo.cloud().find_image("etcd", "1.2.0").id
    assert after[failed].image_id == broken_image
    untouched = [n for n in ("1", "2", "3") if n != failed]
    assert [after[n].id for n in untouched] == [before[n].id for n in untouched]
    healthy = repo.healthy_members()
    assert len(healthy) == 2 and after[failed].private_ip not in healthy
    repo.put("/kept/b", "during", ip=healthy[0])             # quorum: writes still commit
    assert repo.get("/kept/a", healthy[1]) == "before"
    assert repo.record_version() == "1.1.0"

    again = repo.upgrade("--to", "1.2.0")                    # not over an unfinished one
    assert again.returncode == 1 and "did not finish" in again.stderr

    rolled = repo.upgrade("--rollback-failed")
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert repo.journal()["status"] == "rolled-back"
    restored = repo.instances()
    assert restored[failed].id != after[failed].id
    assert restored[failed].image_id == before[failed].image_id
    assert repo.volumes()[failed].attachment.instance_id == restored[failed].id
    assert_whole_and_upgraded(repo, "1.1.0", {"/kept/a": "before", "/kept/b": "during"})
    assert repo.record_version() == "1.1.0"
    assert repo.plan_is_empty()


# Each boundary: after the stop of a unit, after its targeted apply, between its gates, and
# after the final full apply. Unit indexes are instance indexes (the order puts the leader last).
@pytest.mark.parametrize("fault", ["after:stop:0", "after:apply:1", "after:running:2",
                                   "after:final-apply"])
def test_kill_at_a_step_boundary_then_resume_ends_where_a_clean_run_would(make_repo, fault):
    repo = make_repo()
    repo.create("1.0.0")
    repo.put("/kept/a", "before")
    volumes = {n: v.id for n, v in repo.volumes().items()}

    killed = repo.upgrade(INFRABLOCKS_FAULT=fault)
    assert killed.returncode == 137, killed.stdout + killed.stderr
    assert "INFRABLOCKS_FAULT: dying after" in killed.stderr
    journal = repo.journal()
    assert journal["status"] == "running"
    assert repo.record_version() == "1.0.0"

    plain = repo.upgrade()                                  # not a second, fresh upgrade
    assert plain.returncode == 1 and "--resume" in plain.stderr

    resumed = repo.upgrade("--resume", "--json")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert json.loads(resumed.stdout)["mode"] == "rolling"
    assert repo.journal()["status"] == "completed"
    assert repo.record_version() == "1.1.0"
    assert_whole_and_upgraded(repo, "1.1.0", {"/kept/a": "before"})
    assert {n: v.id for n, v in repo.volumes().items()} == volumes
    for volume in repo.volumes().values():
        assert (Path(volume.path) / ".infrablocks-upgrade-marker").is_file()
    assert repo.plan_is_empty()


def _children_running(pid: int, word: bytes) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z" and word in cmdline.split(b"\0"):
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signal_name, code", [("SIGKILL", -9), ("SIGINT", 130)])
def test_kill_or_ctrl_c_during_a_targeted_apply_then_resume(make_repo, signal_name, code):
    """SIGKILL: that Terraform finishes on its own and the resumed run waits for its state lock.
    SIGINT (Ctrl-C): Terraform is stopped gracefully, possibly half-way through the unit's
    replacement (old instance deleted, new one not created yet); resume completes it."""
    import os
    import signal
    import subprocess
    import time

    from tests.support.upgrade_env import DOIT

    repo = make_repo()
    repo.create("1.0.0")
    repo.put("/kept/a", "before")
    process = subprocess.Popen([str(DOIT), "upgrade", "base", "--env", ENV, "--yes"],
                               cwd=repo.root, env=repo.environ(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _children_running(process.pid, b"apply"):
            assert process.poll() is None, "the upgrade ended before its first apply"
            assert time.monotonic() < deadline, "no targeted apply started"
            time.sleep(0.02)
        time.sleep(0.3)                               # into the apply
        os.kill(process.pid, getattr(signal, signal_name))
        assert process.wait(timeout=120) == code
    finally:
        process.kill()
        process.wait(timeout=30)
    journal = repo.journal()
    assert journal["status"] == "running"
    assert "apply" not in journal["units"][str(journal["order"][0])]["steps"]

    resumed = repo.upgrade("--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert repo.journal()["status"] == "completed"
    assert_whole_and_upgraded(repo, "1.1.0", {"/kept/a": "before"})
    assert repo.plan_is_empty()
