"""`doit upgrade stolon` for real: stolon 1.0.0 → 1.1.0 on the local cloud, in a repo copy.
(And its CI form, `doit test-upgrade stolon`, with the Patroni check's data probe.)

The environment is created with stolon pinned to 1.0.0 (base resolves to its newest version),
a table is written on the primary, the pin moves to 1.1.0 (as an operator would) and the real
`doit upgrade stolon --yes --json` rolls the Patroni cluster: the replicas first, a Patroni
switchover, the old primary last. Afterwards every member runs the 1.1.0 image on its old volume,
the data written before is read on every member, 1.1.0's PostgreSQL settings are live, the
record says 1.1.0 and a plan of the environment is empty.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENVIRONMENT = "dbup"
PSQL = "/usr/bin/psql"
ENVIRONMENT_TOML = f"""
[environments.{ENVIRONMENT}]
pins = {{ stolon = "1.0.0" }}
"""
TEST_UPGRADE_ENVIRONMENT = "t-dbtest"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    deployment = open_deploy_repo(tmp_path, extra_toml=ENVIRONMENT_TOML)
    try:
        yield deployment
    finally:
        leftovers = deployment.close()
    assert not leftovers, "cleanup found:\n" + "\n".join(leftovers)


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def psql(password: str, host: str, sql: str) -> str:
    result = subprocess.run(
        [PSQL, f"host={host} port=5432 user=postgres dbname=postgres connect_timeout=5",
         "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PGPASSWORD": password})
    assert result.returncode == 0, f"psql on {host}: {result.stderr.strip()}"
    return result.stdout.strip()


def member_ips(repo: DeployRepo) -> list[str]:
    """stolon's members: .21-.23 of the environment's subnet."""
    return [repo.address(ENVIRONMENT, 21 + i) for i in range(3)]


def roles(ips: list[str]) -> dict[str, str]:
    """host → Patroni role, from the first member that answers /cluster."""
    for ip in ips:
        try:
            with urllib.request.urlopen(f"http://{ip}:8008/cluster", timeout=5) as response:
                return {m["host"]: m["role"] for m in json.load(response)["members"]}
        except OSError:
            continue
    raise AssertionError("no Patroni member answers /cluster")


def leader_ip_now(ips: list[str]) -> str:
    return next(host for host, role in roles(ips).items() if role == "leader")


class Writer:
    """A client inserting numbered rows into ``writes`` on whichever member is the primary
    (libpq's ``target_session_attrs=read-write`` over all three hosts) until stopped."""

    def __init__(self, password: str, ips: list[str]) -> None:
        self.password = password
        self.ips = ips
        self.acknowledged: list[int] = []
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stolon-writer", daemon=True)
        self._started = 0.0

    def __enter__(self) -> Writer:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        dsn = (f"host={','.join(self.ips)} port=5432 user=postgres dbname=postgres "
               "connect_timeout=2 target_session_attrs=read-write")
        n = 0
        while not self._stop.is_set():
            n += 1
            result = subprocess.run(
                [PSQL, dsn, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c",
                 f"INSERT INTO writes VALUES ({n})"],
                capture_output=True, text=True, timeout=30, check=False,
                env={**os.environ, "PGPASSWORD": self.password})
            if result.returncode == 0:
                self.acknowledged.append(n)
            else:
                self.failures.append((time.monotonic() - self._started,
                                      result.stderr.strip().splitlines()[-1:][0]
                                      if result.stderr.strip() else "?"))
            self._stop.wait(0.2)

    def failure_summary(self) -> str:
        if not self.failures:
            return "none"
        first, last = self.failures[0][0], self.failures[-1][0]
        return f"between {first:.1f}s and {last:.1f}s into the upgrade: {self.failures[0][1]}"


def stolon_instances(repo: DeployRepo) -> dict[str, object]:
    """member number → instance (not terminated)."""
    return {i.tags["member"]: i for i in repo.instances(ENVIRONMENT)
            if i.tags.get("block") == "stolon"}


def test_stolon_rolls_replicas_first_switchover_old_primary_last(repo: DeployRepo) -> None:
    ok(repo.doit("create", "stolon", "--env", ENVIRONMENT, "--yes"))
    backend = repo.backend()
    assert backend.get_record(ENVIRONMENT, "stolon").version == "1.0.0"
    password = backend.read_outputs(ENVIRONMENT, "stolon").unmasked()["superuser_password"]
    cloud = repo.cloud()
    before = stolon_instances(repo)
    for instance in before.values():
        cloud.wait_until_ready(instance.id, timeout=180)
    old_image = cloud.find_image("patroni", "1.0.0").id
    assert {i.image_id for i in before.values()} == {old_image}
    volumes = {v.tags["member"]: v.id for v in repo.volumes(ENVIRONMENT)
               if v.tags.get("block") == "stolon"}

    # data written on the primary before the upgrade
    ips = member_ips(repo)
    old_roles = roles(ips)
    leader_ip = next(host for host, role in old_roles.items() if role == "leader")
    psql(password, leader_ip, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before')")
    leader_index = ips.index(leader_ip)

    # the operator moves the pin, then upgrades
    toml = repo.root / "blocks.toml"
    text, count = re.subn(r'pins = \{ stolon = "1\.0\.0" \}', 'pins = { stolon = "1.1.0" }',
                          toml.read_text())
    assert count == 1
    toml.write_text(text)
    dry = json.loads(ok(repo.doit("upgrade", "stolon", "--env", ENVIRONMENT, "--dry-run",
                                  "--json")).stdout)
    assert dry["mode"] == "dry-run" and dry["order"][-1] == leader_index
    assert dry["pre_health"].startswith("healthy: ")
    psql(password, leader_ip, "CREATE TABLE writes (n integer PRIMARY KEY)")
    started = time.monotonic()
    with Writer(password, ips) as writer:     # a client writing throughout the upgrade
        upgraded = ok(repo.doit("upgrade", "stolon", "--env", ENVIRONMENT, "--yes", "--json",
                                timeout=1200))
    seconds = time.monotonic() - started
    outcome = json.loads(upgraded.stdout)

    # replicas first, the old primary last, its leadership moved off before it was stopped
    assert outcome["mode"] == "rolling"
    assert (outcome["from_version"], outcome["to_version"]) == ("1.0.0", "1.1.0")
    assert sorted(outcome["order"]) == [0, 1, 2] and outcome["order"][-1] == leader_index
    units = {unit["index"]: unit for unit in outcome["units"]}
    assert units[leader_index].get("leader_moved") is True, outcome
    for unit in units.values():
        assert {"stop", "apply", "running", "volume", "rejoin", "healthy"} <= \
            set(unit["steps"]), unit
    print(f"stolon upgrade took {seconds:.0f}s: {outcome['timings']}")

    # every member replaced by the 1.1.0 image, on its old volume
    new_image = cloud.find_image("patroni", "1.1.0").id
    after = stolon_instances(repo)
    assert sorted(after) == ["1", "2", "3"]
    for number, instance in after.items():
        assert instance.id != before[number].id and instance.image_id == new_image
        assert instance.private_ip == ips[int(number) - 1]
        volume = cloud.get_volume(volumes[number])
        assert volume.attachment.instance_id == instance.id
        assert (Path(volume.path) / ".mounted").read_text().strip() == instance.id

    # the cluster: a new leader (the old primary went last, as a replica), data on every member
    new_roles = roles(ips)
    assert sorted(new_roles.values()) == ["leader", "replica", "replica"]
    assert new_roles[leader_ip] == "replica"
    for host in ips:
        deadline = time.monotonic() + 30
        while psql(password, host, "SELECT v FROM kept") != "before":
            assert time.monotonic() < deadline, f"{host} lost the data written before"
            time.sleep(0.5)
        assert psql(password, host, "SHOW work_mem") == "16MB"    # 1.1.0's settings

    # every write the primary acknowledged during the upgrade is there
    present = {int(n) for n in psql(password, leader_ip_now(ips), "SELECT n FROM writes")
               .split()}
    assert writer.acknowledged, "no write succeeded during the upgrade"
    assert set(writer.acknowledged) <= present, sorted(set(writer.acknowledged) - present)
    print(f"writes during the upgrade: {len(writer.acknowledged)} acknowledged, "
          f"{len(writer.failures)} failed ({writer.failure_summary()})")

    # the record moved, and nothing is left to change
    assert backend.get_record(ENVIRONMENT, "stolon").version == "1.1.0"
    plan = json.loads(ok(repo.doit("plan", "stolon", "--env", ENVIRONMENT, "--json")).stdout)
    assert {(b["block"], b["deployed"], b["has_changes"]) for b in plan["blocks"]} == {
        ("base", "1.1.0", False), ("stolon", "1.1.0", False)}
    again = json.loads(ok(repo.doit("upgrade", "stolon", "--env", ENVIRONMENT, "--yes",
                                    "--json")).stdout)
    assert again["mode"] == "up-to-date"


def test_doit_test_upgrade_stolon_passes_with_the_patroni_data_probe(repo: DeployRepo) -> None:
    result = repo.doit("test-upgrade", "stolon", "--env", TEST_UPGRADE_ENVIRONMENT, "--json",
                       timeout=1200)
    report = json.loads(result.stdout)
    assert result.returncode == 0, f"{json.dumps(report, indent=2)}\n{result.stderr}"
    assert report["ok"] and report["error"] is None
    assert (report["from_version"], report["to_version"]) == ("1.0.0", "1.1.0")
    assert report["probe"]["table"] == "infrablocks_upgrade_probe"
    assert report["data_check"] == {"ok": True, "summary": f"probe row {report['probe']['key']} "
                                                          "read back from every member"}
    assert report["upgrade"]["mode"] == "rolling" and len(report["upgrade"]["order"]) == 3
    assert [t["ok"] for t in report["tests"]] == [True]
    assert report["destroyed"] and report["leftovers"] == {}
    assert repo.instances(TEST_UPGRADE_ENVIRONMENT) == []
