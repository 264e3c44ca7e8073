"""`doit create` tells the truth, end to end on the example blocks and the local cloud (issue 9).

- An edited deployed version (base 1.0.0's cluster name changed in place) is reported by
  `doit check` with the file that differs and the hint to cut a new version; `doit status` says
  the drift comes from edited code; `create` refuses to apply it to the persistent environment;
  `doit new-version` cuts the new version instead.
- A block whose members die at boot fails, naming the instance and its console log; its
  dependents are skipped.
- Drift of the infrastructure (nomad's node killed) is repaired by `create`, which says why;
  `status` says the drift comes from the infrastructure.
- A deployed dependent whose version has left blocks.toml still protects its dependency from
  `destroy` (the record says what it was applied with), and is destroyed from the code kept
  with its record; `check` and `status` warn about it.
- A member of base killed with SIGKILL: `doit upgrade` refuses the degraded cluster and names
  `doit create base --env prod`, which brings the member back through the rolling procedure on
  its own volume (a marker file kept, etcd data served), while the other two keep quorum
  (every write acknowledged).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.support.deploy_repo import DeployRepo, open_deploy_repo

pytestmark = [pytest.mark.integration, pytest.mark.slow]
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[DeployRepo]:
    with open_deploy_repo(tmp_path).closing() as deployment:
        yield deployment


def ok(result) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr


def flat(result) -> str:
    """stdout + stderr with the console's line wrapping undone."""
    return " ".join((result.stdout + "\n" + result.stderr).split())


def nodes(report_file: Path) -> dict[str, dict]:
    return {n["node"]: n for n in json.loads(report_file.read_text())["run"]["nodes"]}


def members(repo: DeployRepo, environment: str, block: str = "base") -> dict[str, str]:
    return {i.name: i.id for i in repo.instances(environment) if i.tags.get("block") == block}


def test_an_edited_deployed_version_is_refused_by_check_and_create(repo: DeployRepo) -> None:
    ok(repo.doit("create", "base", "--env", "prod", "--yes"))       # prod pins base 1.0.0
    before = members(repo, "prod")
    assert len(before) == 3
    ok(repo.doit("check"))

    main = repo.root / "blocks" / "base" / "1.0.0" / "main.tf"
    original = main.read_text()
    assert 'cluster_name = "base-${var.environment}"' in original
    main.write_text(original.replace('cluster_name = "base-${var.environment}"',
                                     'cluster_name = "base2-${var.environment}"'))

    checked = repo.doit("check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    text = flat(checked)
    assert "base 1.0.0 (deployed in prod) was edited: main.tf (changed)" in text
    assert "doit new-version base" in text

    status = repo.doit("status", "--env", "prod", "--json")
    ok(status)
    [prod] = json.loads(status.stdout)
    [base] = prod["blocks"]
    assert base["drift"] == "drifted: 6 to replace"
    assert base["cause"] == ["edited code: main.tf (changed)"]
    assert base["code_edited"] == ["main.tf (changed)"]

    refused = repo.doit("create", "base", "--env", "prod", "--yes")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    text = flat(refused)
    assert "refusing to apply edited code to prod" in text
    assert "base 1.0.0 (deployed in prod) was edited: main.tf (changed)" in text
    assert "Traceback" not in refused.stderr
    assert members(repo, "prod") == before                           # nothing replaced

    # The easy path: restore the released version, cut a new one for the change.
    main.write_text(original)
    ok(repo.doit("check"))
    cut = repo.doit("new-version", "base")
    ok(cut)
    assert (repo.root / "blocks" / "base" / "1.2.0" / "main.tf").is_file()
    toml = (repo.root / "blocks.toml").read_text()
    assert '[blocks.base.versions."1.2.0"]\nimages = ["etcd@1.1.0"]\n' in toml
    assert "# the block registry" in toml.lower()                    # comments kept
    ok(repo.doit("check"))
    ok(repo.doit("destroy", "base", "--env", "prod", "--yes"))


def add_base_dying_at_boot(repo: DeployRepo, version: str = "1.9.0") -> None:
    """base VERSION on etcd@VERSION, an image whose members die while booting."""
    image = repo.root / "images" / "etcd" / version
    shutil.copytree(repo.root / "images" / "etcd" / "1.1.0", image)
    shutil.copy(FIXTURES / "etcd-dies-at-boot" / "entrypoint", image / "files" / "entrypoint")
    template = image / "etcd.pkr.hcl"
    template.write_text(template.read_text().replace('"1.1.0"', f'"{version}"'))
    block = repo.root / "blocks" / "base" / version
    shutil.copytree(repo.root / "blocks" / "base" / "1.1.0", block)
    main = block / "main.tf"
    main.write_text(main.read_text().replace('image_version = "1.1.0"',
                                             f'image_version = "{version}"'))
    toml = repo.root / "blocks.toml"
    toml.write_text(toml.read_text().replace(
        '[blocks.nomad]', f'[blocks.base.versions."{version}"]\nimages = ["etcd@{version}"]\n'
        'rolling = { timeouts = { running = 20, healthy = 20 } }\n\n[blocks.nomad]', 1))


def test_members_dying_at_boot_fail_the_block(repo: DeployRepo, tmp_path: Path) -> None:
    add_base_dying_at_boot(repo)
    report = tmp_path / "report.json"
    failed = repo.doit("create", "nomad", "base@1.9.0", "--env", "staging", "--yes",
                       "--report", str(report))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "Traceback" not in failed.stderr
    run = nodes(report)
    assert run["base"]["status"] == "failed"
    assert run["nomad"]["status"] == "skipped" and run["nomad"]["reason"] == "base failed"
    error = run["base"]["error"]
    assert "died while booting" in error
    instance = next(i for i in repo.instances("staging") if i.name in error)
    console_log = Path(instance.path) / "console.log"
    assert f"console log of {instance.name}: {console_log}" in error
    assert "this image dies at boot" in error                        # the console's tail
    assert repo.backend().get_record("staging", "base").status == "failed"
    assert repo.backend().get_record("staging", "nomad") is None


def test_drift_is_repaired_and_a_dependent_out_of_blocks_toml_protects_its_dependency(
        repo: DeployRepo, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    ok(repo.doit("create", "nomad", "--env", "staging", "--yes"))
    [node] = [i for i in repo.instances("staging") if i.tags["block"] == "nomad"]

    # -- drift of the infrastructure: the scheduler node's process is killed ----------------
    os.kill(node.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while repo.cloud().get_instance(node.id).state != "stopped":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    status = repo.doit("status", "--env", "staging", "--json")
    ok(status)
    nomad = {b["block"]: b for b in json.loads(status.stdout)[0]["blocks"]}["nomad"]
    assert nomad["drift"].startswith("drifted: ") and "to create" in nomad["drift"]
    assert nomad["cause"] == ["the infrastructure (the code and inputs are those applied)"]
    ok(repo.doit("create", "nomad", "--env", "staging", "--yes", "--report", str(report)))
    run = nodes(report)
    assert run["base"]["detail"]["action"] == "unchanged"
    assert run["nomad"]["detail"]["action"] == "updated"
    assert run["nomad"]["detail"]["why"] == ["drift: the infrastructure differs from its state"]
    [again] = [i for i in repo.instances("staging") if i.tags["block"] == "nomad"]
    assert again.state == "running" and again.ready and again.id != node.id

    # -- nomad 1.0.0 leaves blocks.toml (a 1.1.0 takes its place) -----------------------------
    shutil.copytree(repo.root / "blocks" / "nomad" / "1.0.0",
                    repo.root / "blocks" / "nomad" / "1.1.0")
    shutil.rmtree(repo.root / "blocks" / "nomad" / "1.0.0")
    toml = repo.root / "blocks.toml"
    toml.write_text(toml.read_text().replace('[blocks.nomad.versions."1.0.0"]',
                                             '[blocks.nomad.versions."1.1.0"]'))
    checked = repo.doit("check")
    ok(checked)
    assert "warning: nomad 1.0.0 in staging is deployed but blocks.toml no longer declares" \
        in flat(checked)
    status = repo.doit("status", "--env", "staging")
    ok(status)
    assert "nomad 1.0.0 in staging: blocks.toml no longer declares this version" in flat(status)

    refused = repo.doit("destroy", "base", "--env", "staging", "--yes")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "a deployed block depends on it: nomad" in flat(refused)
    assert len(members(repo, "staging")) == 3                        # base untouched

    ok(repo.doit("destroy", "nomad", "--env", "staging", "--yes", "--report", str(report)))
    [gone] = nodes(report).values()
    assert gone["detail"]["action"] == "destroyed" and gone["detail"]["version"] == "1.0.0"
    assert any("destroyed from the code kept with its deployment record" in note
               for note in gone["detail"]["notes"])
    assert not [i for i in repo.instances("staging") if i.tags["block"] == "nomad"]
    assert repo.backend().get_record("staging", "nomad") is None
    ok(repo.doit("destroy", "base", "--env", "staging", "--yes"))
    assert repo.instances("staging") == [] and repo.volumes("staging") == []


def etcd(ip: str, path: str, body: dict | None = None, timeout: float = 2.0) -> dict:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{ip}:2379{path}", data=data,
                                     method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def etcd_get(ip: str, key: str) -> str | None:
    import base64

    found = etcd(ip, "/v3/kv/range", {"key": b64(key)}).get("kvs") or []
    return base64.b64decode(found[0]["value"]).decode() if found else None


class Writer:
    """Writes a key every 0.1 s to member 1, else member 3, while the create runs: how many
    writes neither member acknowledged (the cluster lost quorum), and when each acknowledged
    write came back (`time.monotonic()` seconds), to show the writer ran for the whole create.

    How many writes fit in the create depends on the machine (a put can wait up to 2 s per
    member while etcd changes membership), so the test checks coverage, not a count."""

    def __init__(self, ips: list[str]) -> None:
        import threading

        self.ips = ips
        self.acknowledged: list[str] = []
        self.acknowledged_at: list[float] = []
        self.lost: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            key = f"/writer/{n}"
            for ip in self.ips:
                try:
                    etcd(ip, "/v3/kv/put", {"key": b64(key), "value": b64(str(n))})
                    self.acknowledged.append(key)
                    self.acknowledged_at.append(time.monotonic())
                    break
                except OSError:
                    continue
            else:
                self.lost.append(key)
            n += 1
            time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_a_killed_member_is_brought_back_with_its_data_while_the_cluster_keeps_quorum(
        repo: DeployRepo, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    ok(repo.doit("create", "base", "--env", "prod", "--yes"))       # waits until healthy
    ips = [repo.address("prod", 11 + i) for i in range(3)]
    etcd(ips[0], "/v3/kv/put", {"key": b64("/kept"), "value": b64("before")})
    instances = {i.tags["member"]: i for i in repo.instances("prod")}
    volumes = {v.tags["member"]: v for v in repo.volumes("prod")}
    victim = instances["2"]
    marker = Path(volumes["2"].path) / "marker-from-the-test"
    marker.write_text("member 2's data\n")
    os.kill(victim.pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while repo.cloud().get_instance(victim.id).state == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # `doit upgrade` refuses the degraded cluster and names the command that repairs it
    refused = repo.doit("upgrade", "base", "--env", "prod", "--to", "1.1.0", "--yes")
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert "is degraded; nothing was changed" in flat(refused)
    hinted = " ".join(flat(refused).split("`doit create ", 1)[1].split("`", 1)[0].split())
    assert hinted == "base --env prod"

    writer = Writer([ips[0], ips[2]])
    started = time.monotonic()
    try:
        repaired = repo.doit("create", *hinted.split(), "--yes", "--report", str(report))
    finally:
        ended = time.monotonic()
        writer.stop()
    ok(repaired)
    # the preview said so before anything ran: base rolls member index 1, one at a time
    shown = flat(repaired)
    assert "roll (prod-base-2, one at a time)" in shown
    assert ("stateful blocks that roll (the rolling procedure: one member at a time, gates "
            "between): base") in shown
    [node] = nodes(report).values()
    assert node["detail"]["action"] == "rolled"
    assert node["detail"]["down"] == [1]
    # the summary counts what the preview counted: Terraform's resources, not members
    [previewed] = json.loads(report.read_text())["preview"]["blocks"]
    assert previewed["counts"]["add"] >= 1 and previewed["members"] == ["prod-base-2"]
    assert node["detail"]["changes"] == {"create": previewed["counts"]["add"]}
    assert node["detail"]["why"] == ["drift: the infrastructure differs from its state"]
    after = {i.tags["member"]: i for i in repo.instances("prod")}
    assert after["2"].id != victim.id and after["2"].private_ip == victim.private_ip
    assert [after[m].id for m in ("1", "3")] == [instances[m].id for m in ("1", "3")]
    assert {m: v.id for m, v in (
        (v.tags["member"], v) for v in repo.volumes("prod"))} == {
        m: v.id for m, v in volumes.items()}
    assert repo.cloud().describe_volumes(ids=[volumes["2"].id])[0].attachment.instance_id \
        == after["2"].id
    assert marker.read_text() == "member 2's data\n"               # its own volume, its data
    assert etcd_get(ips[1], "/kept") == "before"                    # member 2 serves again
    # no write was lost, and acknowledged writes cover the whole create without a gap longer
    # than one attempt on both members (2 x 2 s timeouts): the writer ran throughout
    assert writer.lost == [], writer.lost
    times = [started, *writer.acknowledged_at, ended]
    assert writer.acknowledged and max(b - a for a, b in pairwise(times)) <= 5, times
    for key in writer.acknowledged[-3:]:
        assert etcd_get(ips[1], key) is not None
    assert len(etcd(ips[0], "/v3/cluster/member/list", {})["members"]) == 3
    status = repo.doit("status", "--env", "prod", "--json")
    ok(status)
    assert json.loads(status.stdout)[0]["blocks"][0]["drift"] == "none"
    journal = repo.backend().get_document("prod", "base", "upgrade-journal")
    assert journal["status"] == "completed" and journal["kind"] == "repair"

    # A member stopped (not crashed): Terraform's plan is empty — the instance is the one it
    # created — yet it does not serve. `create` starts it again through the rolling procedure.
    stopped = after["3"]
    repo.cloud().stop_instance(stopped.id, grace=15)
    ok(repo.doit("create", "base", "--env", "prod", "--yes", "--report", str(report)))
    [node] = nodes(report).values()
    assert node["detail"]["action"] == "rolled" and node["detail"]["down"] == [2]
    assert node["detail"]["why"] == ["members not running: prod-base-3"]
    again = {i.tags["member"]: i for i in repo.instances("prod")}
    assert again["3"].id == stopped.id and again["3"].state == "running"
    assert etcd_get(ips[2], "/kept") == "before"
    assert len(etcd(ips[0], "/v3/cluster/member/list", {})["members"]) == 3
    ok(repo.doit("destroy", "base", "--env", "prod", "--yes"))
