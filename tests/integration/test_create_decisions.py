"""What `doit create` decides, on small `terraform_data` monorepos (real Terraform, no cloud).

- Stale outputs: `doit create net@1.1.0` changes net's outputs; its deployed dependents app
  (reads net) and web (reads app) are re-applied in the same run, transitively, and say why.
  A block with an empty plan is `unchanged`; one outside the run whose inputs did not change is
  `untouched` (no plan).
- The record of each deployment keeps what it was made from: the code digest, the input
  digests, the dependencies' versions, and a copy of the code.
- A persistent environment asks before applying: without a terminal and without `--yes` the
  create is refused (exit 2) after showing what would change; nothing is applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.support.tfdata_repo import ENV, TfDataRepo, ok

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NET = '''
resource "terraform_data" "net" {{
  input = "{cidr}"
}}

output "cidr" {{
  value = terraform_data.net.output
}}
'''
APP = '''
resource "terraform_data" "app" {
  input = "http://${var.net.cidr}/app"
}

output "url" {
  value = terraform_data.app.output
}
'''
APP_VARIABLES = '''
variable "net" {
  type = object({ cidr = string })
}
'''
WEB = '''
resource "terraform_data" "web" {
  input = "web in front of ${var.app.url}"
}

output "seen" {
  value = terraform_data.web.output
}
'''
WEB_VARIABLES = '''
variable "app" {
  type = object({ url = string })
}
'''


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[TfDataRepo]:
    repo = TfDataRepo(tmp_path)
    repo.add("net", "1.0.0", NET.format(cidr="10.0.0.0/16"))
    repo.add("net", "1.1.0", NET.format(cidr="10.1.0.0/16"))
    repo.add("app", "1.0.0", APP, requires={"net": "~> 1.0"}, variables=APP_VARIABLES)
    repo.add("web", "1.0.0", WEB, requires={"app": "~> 1.0"}, variables=WEB_VARIABLES)
    try:
        yield repo
    finally:
        repo.close()


def nodes(report_file: Path) -> dict[str, dict]:
    return {n["node"]: n for n in json.loads(report_file.read_text())["run"]["nodes"]}


def test_changed_outputs_reapply_deployed_dependents_transitively(repo: TfDataRepo,
                                                                 tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    ok(repo.doit("create", "web", "net@1.0.0", "--env", ENV, "--yes"))
    assert repo.outputs("web")["seen"] == "web in front of http://10.0.0.0/16/app"
    before = {b: repo.record(b) for b in ("net", "app", "web")}
    assert before["app"].applied_requires == {"net": "1.0.0"}
    assert set(before["app"].input_digests) == {"environment", "subnet_cidr", "net"}
    assert before["web"].code_digest["files"].keys() >= {"main.tf", "variables.tf"}
    assert repo.backend().get_document(ENV, "web", "source")["files"].keys() >= {"main.tf"}

    ok(repo.doit("create", "net@1.1.0", "--env", ENV, "--yes", "--report", str(report)))
    run = nodes(report)
    assert list(run) == ["net", "app", "web"]          # the dependents joined the run
    assert {n: run[n]["detail"]["action"] for n in run} == {
        "net": "updated", "app": "updated", "web": "updated"}
    assert "version 1.0.0 → 1.1.0" in run["net"]["detail"]["why"]
    # one plan per deployed block: the one shown before the run is the one applied
    assert "plan" not in run["net"]["detail"]["phases"]
    assert {"plan", "apply"} <= set(run["app"]["detail"]["phases"])   # re-planned: new inputs
    assert run["app"]["detail"]["why"] == ["inputs changed: net"]
    assert run["web"]["detail"]["why"] == ["inputs changed: app"]
    assert run["app"]["started_at"] >= run["net"]["ended_at"]
    assert repo.outputs("web")["seen"] == "web in front of http://10.1.0.0/16/app"
    assert repo.record("app").applied_requires == {"net": "1.1.0"}
    assert repo.record("app").version == "1.0.0"       # re-applied at its deployed version

    # Everything converged: an empty plan is `unchanged`; nothing outside the run moves.
    ok(repo.doit("create", "web", "--env", ENV, "--yes", "--report", str(report)))
    assert {n: e["detail"]["action"] for n, e in nodes(report).items()} == {
        "net": "unchanged", "app": "unchanged", "web": "unchanged"}
    ok(repo.doit("create", "net", "--env", ENV, "--yes", "--report", str(report)))
    run = nodes(report)
    assert run["net"]["detail"]["action"] == "unchanged"
    assert {run[n]["detail"]["action"] for n in ("app", "web")} == {"untouched"}
    assert "plan" not in run["app"]["detail"]["phases"]   # decided from digests, no plan
    status = json.loads(ok(repo.doit("status", "--env", ENV, "--json")).stdout)
    assert {b["block"]: b["drift"] for b in status[0]["blocks"]} == {
        "net": "none", "app": "none", "web": "none"}

    # A run that applied app but failed after (its readiness, say) left the record `failed`;
    # Terraform has nothing left to do: the re-run says so rather than a bare `unchanged`,
    # and the record is `deployed` again.
    repo.backend().put_record(replace(repo.record("app"), status="failed"))
    ok(repo.doit("create", "web", "--env", ENV, "--yes", "--report", str(report)))
    run = nodes(report)
    assert run["app"]["detail"]["action"] == "unchanged"
    assert run["app"]["detail"]["why"] == [
        "the last operation did not finish (record `failed`)",
        "nothing left for Terraform to do: recorded `deployed` once ready"]
    assert run["web"]["detail"]["why"] == []
    assert repo.record("app").status == "deployed"


def test_persistent_environment_asks_and_refuses_without_a_terminal(repo: TfDataRepo,
                                                                    tmp_path: Path) -> None:
    ok(repo.doit("create", "web", "net@1.0.0", "--env", ENV, "--yes"))
    refused = repo.doit("create", "net@1.1.0", "--env", ENV)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to create without confirmation" in refused.stderr
    assert "--yes" in refused.stderr and "Traceback" not in refused.stderr
    # the plan summary was shown first: per block what would change, and why
    table = refused.stdout
    assert "what would change" in table
    net_row = next(line for line in table.splitlines() if line.startswith("│ net "))
    assert "apply" in net_row and "version 1.0.0 → 1.1.0" in net_row
    assert "│ 1 " in net_row                                   # 1 to replace
    assert repo.record("net").version == "1.0.0"                 # nothing applied
    assert repo.outputs("web")["seen"].endswith("10.0.0.0/16/app")

    # nothing to change: nothing to confirm
    unchanged = repo.doit("create", "web", "--env", ENV)
    ok(unchanged)

    # a refused create of an environment with nothing deployed leaves nothing behind, not even
    # the subnet claim made for its preview
    from infrablocks.environments import SubnetAllocator

    (repo.root / "blocks.toml").write_text((repo.root / "blocks.toml").read_text()
                                           + "\n[environments.other]\n")
    fresh = repo.doit("create", "web", "--env", "other")
    assert fresh.returncode == 2 and "refusing to create" in fresh.stderr, fresh.stderr
    assert "other" not in SubnetAllocator(repo.root).allocations()
    assert ENV in SubnetAllocator(repo.root).allocations()        # a deployed one keeps its own

    # an ephemeral environment never asks
    ok(repo.doit("env", "web"))


def test_a_version_released_in_the_lock_file_is_frozen(repo: TfDataRepo) -> None:
    released = ok(repo.doit("release", "net@1.1.0"))
    assert "net 1.1.0: released" in released.stdout
    lock = (repo.root / "blocks.lock").read_text()
    assert '[net."1.1.0"]' in lock and '"main.tf" = ' in lock
    ok(repo.doit("check"))
    again = ok(repo.doit("release", "net@1.1.0"))
    assert "already released, same code" in again.stdout

    main = repo.root / "blocks" / "net" / "1.1.0" / "main.tf"
    main.write_text(main.read_text().replace("10.1.0.0/16", "10.9.0.0/16"))
    (main.parent / "extra.tf").write_text('locals {\n  extra = 1\n}\n')
    checked = repo.doit("check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    text = " ".join(checked.stderr.split())
    assert ("net 1.1.0 (released in blocks.lock) was edited: extra.tf (added), "
            "main.tf (changed)") in text
    refused = repo.doit("release", "net@1.1.0")
    assert refused.returncode == 1 and "was released with other code" in refused.stderr

    created = repo.doit("create", "net@1.1.0", "--env", ENV, "--yes")
    assert created.returncode == 1, created.stdout + created.stderr
    assert "refusing to apply edited code to stage" in " ".join(created.stderr.split())
    assert repo.record("net") is None                                 # nothing applied
    ok(repo.doit("env", "net@1.1.0"))          # an ephemeral environment may run edited code


DB = '''
resource "terraform_data" "member" {{
  count = 3
  input = "db member ${{count.index}} {tag}"
}}

output "members" {{
  value = terraform_data.member[*].output
}}
'''


def test_every_command_that_applies_refuses_an_edited_released_version_and_waits_for_locks(
        repo: TfDataRepo, tmp_path: Path) -> None:
    """`doit upgrade` and `doit apply` refuse an edited released version as `create` does, and
    wait for a held lock as `create` does (`--lock-timeout 0`: refused at once)."""
    import threading

    repo.add("db", "1.0.0", DB.format(tag="one"), stateful=True)
    repo.add("db", "1.1.0", DB.format(tag="two"), stateful=True)
    repo.toml_blocks.append('[blocks.db.rolling]\ninstances = "terraform_data.member"\n'
                            'check = "etcd"\n')
    repo._write_toml()
    ok(repo.doit("check"))
    ok(repo.doit("create", "db@1.0.0", "net@1.0.0", "--env", ENV, "--yes"))

    # -- `doit apply` of a reviewed plan: a held lock ---------------------------------------
    reviewed = tmp_path / "net.plan"
    ok(repo.doit("plan", "net@1.1.0", "--env", ENV, "--out", str(reviewed)))
    backend = repo.backend()
    with backend.acquire_lock(ENV, "net", "upgrade"):
        refused = repo.doit("apply", str(reviewed), "--lock-timeout", "0",
                            "--report", str(tmp_path / "refused.json"))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stderr
    [node] = json.loads((tmp_path / "refused.json").read_text())["run"]["nodes"]
    assert "block 'net' in environment 'stage' is locked by" in node["error"]
    assert "running `upgrade`" in node["error"]
    assert repo.record("net").version == "1.0.0"

    held = backend.acquire_lock(ENV, "net", "upgrade")
    releaser = threading.Timer(3.0, held.release)
    releaser.start()
    try:
        waited = repo.doit("apply", str(reviewed), "--lock-timeout", "120")
    finally:
        releaser.cancel()
        held.release()
    ok(waited)
    assert "waiting up to 120s for the lock of net: held by" in " ".join(waited.stderr.split())
    assert repo.record("net").version == "1.1.0"

    # -- released, then edited: refused by upgrade and apply, nothing applied -----------------
    ok(repo.doit("release", "db@1.1.0"))
    ok(repo.doit("release", "net@1.0.0"))
    for block, version, old, new in (("db", "1.1.0", "} two", "} three"),
                                     ("net", "1.0.0", "10.0.0.0/16", "10.7.0.0/16")):
        main = repo.root / "blocks" / block / version / "main.tf"
        main.write_text(main.read_text().replace(old, new))

    upgraded = repo.doit("upgrade", "db", "--env", ENV, "--to", "1.1.0", "--yes")
    assert upgraded.returncode == 1, upgraded.stdout + upgraded.stderr
    text = " ".join(upgraded.stderr.split())
    assert "refusing to apply edited code to stage" in text and "Traceback" not in text
    assert "db 1.1.0 (released in blocks.lock) was edited: main.tf (changed)" in text
    assert "doit new-version db" in text
    assert repo.record("db").version == "1.0.0"
    assert repo.backend().get_document(ENV, "db", "upgrade-journal") is None

    edited = tmp_path / "edited.plan"
    ok(repo.doit("plan", "net@1.0.0", "--env", ENV, "--out", str(edited)))
    applied = repo.doit("apply", str(edited))
    assert applied.returncode == 1, applied.stdout + applied.stderr
    text = " ".join(applied.stderr.split())
    assert "refusing to apply edited code to stage" in text and "Traceback" not in text
    assert "net 1.0.0 (released in blocks.lock) was edited: main.tf (changed)" in text
    assert repo.record("net").version == "1.1.0"
    assert repo.outputs("net")["cidr"] == "10.1.0.0/16"
