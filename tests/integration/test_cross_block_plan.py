"""`doit plan` across blocks and `doit apply FILE`, with real Terraform on small fixture repos.

The fixture blocks hold only ``terraform_data`` resources, whose ``output`` is known only after
apply when they are created or replaced — the same "known after apply" as an instance id:

- ``net`` (no dependencies): outputs ``name`` (unknown until created) and ``cidr`` (known);
- ``db`` (stateful, rolling over ``terraform_data.member``) reads ``net.name``: planned with
  unknown inputs in an empty environment; its members are replaced when the name changes;
- ``app`` reads ``net.cidr`` and ``db.password`` (both known at plan time): planned with known
  inputs, so it gets a saved Terraform plan although its dependencies do not exist yet;
- ``web`` reads ``net.name`` (stateless);
- ``fleet``'s ``count`` depends on ``net.name``: Terraform cannot plan it before net exists;
  ``edge`` reads fleet.

net 1.1.0 changes ``name``; net 1.2.0 replaces its resource but ends with the same ``name``
(unknown in the plan, unchanged after apply: a dependent's reviewed update does not happen).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'
ENV = "dev"

BLOCKS_TOML = """
[defaults]
environment = "dev"

[blocks.net]
[blocks.net.versions."1.0.0"]
[blocks.net.versions."1.1.0"]
[blocks.net.versions."1.2.0"]

[blocks.db]
stateful = true
[blocks.db.rolling]
instances = "terraform_data.member"
check = "etcd"
[blocks.db.versions."1.0.0"]
requires = { net = ">= 1.0" }

[blocks.app]
[blocks.app.versions."1.0.0"]
requires = { net = ">= 1.0", db = ">= 1.0" }

[blocks.web]
[blocks.web.versions."1.0.0"]
requires = { net = ">= 1.0" }

[blocks.fleet]
[blocks.fleet.versions."1.0.0"]
requires = { net = ">= 1.0" }

[blocks.edge]
[blocks.edge.versions."1.0.0"]
requires = { fleet = ">= 1.0" }

[environments.dev]
pins = { net = "1.0.0" }
"""

COMMON = """
variable "environment" { type = string }
variable "subnet_cidr" { type = string }
"""


def _net(name: str, replace_marker: str = "") -> str:
    marker = f'\n  triggers_replace = "{replace_marker}"' if replace_marker else ""
    return COMMON + f"""
resource "terraform_data" "net" {{
  input = "{name}-${{var.environment}}"{marker}
}}
output "name" {{ value = terraform_data.net.output }}
output "cidr" {{ value = var.subnet_cidr }}
"""


FILES = {
    "blocks/net/1.0.0/main.tf": _net("net"),
    "blocks/net/1.1.0/main.tf": _net("net2"),
    "blocks/net/1.2.0/main.tf": _net("net", replace_marker="v2"),
    "blocks/db/1.0.0/main.tf": COMMON + """
variable "net" { type = object({ name = string }) }
resource "terraform_data" "member" {
  count            = 2
  input            = "member-${count.index}"
  triggers_replace = var.net.name
}
output "members" { value = terraform_data.member[*].output }
output "password" {
  value     = "secret-${var.environment}-0a1b2c"
  sensitive = true
}
""",
    "blocks/app/1.0.0/main.tf": COMMON + """
variable "net" { type = object({ cidr = string }) }
variable "db" {
  type      = object({ password = string })
  sensitive = true
}
resource "terraform_data" "app" { input = "${var.net.cidr}|${sha256(var.db.password)}" }
output "url" { value = "http://${cidrhost(var.net.cidr, 40)}" }
""",
    "blocks/web/1.0.0/main.tf": COMMON + """
variable "net" { type = object({ name = string }) }
resource "terraform_data" "web" { input = var.net.name }
output "net_name" { value = terraform_data.web.output }
""",
    "blocks/fleet/1.0.0/main.tf": COMMON + """
variable "net" { type = object({ name = string }) }
resource "terraform_data" "node" {
  count = length(var.net.name) > 5 ? 2 : 1
  input = var.net.name
}
output "nodes" { value = terraform_data.node[*].output }
""",
    "blocks/edge/1.0.0/main.tf": COMMON + """
variable "fleet" { type = object({ nodes = list(string) }) }
resource "terraform_data" "edge" { input = join(",", var.fleet.nodes) }
""",
}
PASSWORD = "secret-dev-0a1b2c"


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cloud = root.parent / "cloud"

    def doit(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud), "NO_COLOR": "1", "COLUMNS": "200",
                    "TERM": "dumb"})
        return subprocess.run([str(DOIT), *args], cwd=self.root, env=env, text=True,
                              capture_output=True, timeout=300, check=False,
                              stdin=subprocess.DEVNULL)

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.doit(*args)
        assert result.returncode == 0, f"doit {' '.join(args)}: exit {result.returncode}\n" \
                                       f"{result.stdout}\n{result.stderr}"
        return result

    def plan(self, *args: str) -> dict:
        return json.loads(self.ok("plan", *args, "--env", ENV, "--json").stdout)

    def pin(self, version: str) -> None:
        toml = self.root / "blocks.toml"
        text = toml.read_text()
        start = text.index("pins = { net = ")
        end = text.index("}", start) + 1
        toml.write_text(text[:start] + f'pins = {{ net = "{version}" }}' + text[end:])

    def workspace(self):  # -> Workspace
        from infrablocks.deploy.workspace import open_workspace
        from infrablocks.upgrade.engine import roll

        os.environ["LOCALCLOUD_ROOT"] = str(self.cloud)
        return open_workspace(self.root, roller=roll)   # as the commands open it

    @property
    def state_dir(self) -> Path:
        return self.root / ".infrablocks" / "state"

    def stored(self) -> dict[str, bytes]:
        """Every file of the state backend (states, records, locks) with its content."""
        if not self.state_dir.exists():
            return {}
        return {str(p.relative_to(self.state_dir)): p.read_bytes()
                for p in sorted(self.state_dir.rglob("*")) if p.is_file()}

    def records(self) -> dict[str, tuple[str, str]]:
        backend = self.workspace().backend
        return {r.block: (r.version, r.status) for r in backend.list_records(ENV)}


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Repo]:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "dodo.py").write_text(DODO)
    (root / "blocks.toml").write_text(textwrap.dedent(BLOCKS_TOML))
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    monkeypatch.setenv("LOCALCLOUD_ROOT", str(tmp_path / "cloud"))
    yield Repo(root)
    subnets = Repo(root).workspace().subnets       # machine-wide table: give them back
    for environment in subnets.allocations():
        subnets.release(environment)


def _blocks(report: dict) -> dict[str, dict]:
    return {b["block"]: b for b in report["blocks"]}


def _actions(entry: dict) -> list[tuple[str, str]]:
    return [(c["address"], c["action"]) for c in entry["changes"]]


def test_empty_environment_is_planned_whole_and_nothing_is_left_behind(repo: Repo) -> None:
    out = repo.root.parent / "reviewed.plan"
    report = json.loads(repo.ok("plan", "app", "web", "--env", ENV, "--json", "--out",
                                str(out)).stdout)
    blocks = _blocks(report)
    assert [b["block"] for b in report["blocks"]] == ["net", "db", "app", "web"]
    assert _actions(blocks["net"]) == [("terraform_data.net", "create")]
    assert _actions(blocks["db"]) == [("terraform_data.member[0]", "create"),
                                      ("terraform_data.member[1]", "create")]
    assert _actions(blocks["app"]) == [("terraform_data.app", "create")]
    assert blocks["db"]["unknown_inputs"] == ["net.name"]
    assert blocks["web"]["unknown_inputs"] == ["net.name"]
    assert blocks["app"]["unknown_inputs"] == []           # net.cidr and db.password are known
    assert {n: b["apply"] for n, b in blocks.items()} == {
        "net": "saved", "db": "replan", "app": "saved", "web": "replan"}
    assert all(b["deployed"] is None and b["has_changes"] for b in blocks.values())
    assert PASSWORD not in json.dumps(report)

    # nothing stored, locked or left in the working area; the saved file is private
    assert repo.stored() == {}
    work = repo.root / ".infrablocks" / "work"
    assert not work.exists() or sorted(p.name for p in work.iterdir()) == []
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert PASSWORD.encode() not in b"".join(p.read_bytes() for p in (
        repo.root / ".infrablocks" / "logs").rglob("*") if p.is_file())

    # `doit apply` applies it in order: saved plans for net and app, plan-again for db and web;
    # a saved plan others may read (it holds secrets) is said so
    out.chmod(0o644)
    applied = repo.ok("apply", str(out), "--report", str(repo.root.parent / "run.json"))
    assert "app (saved plan)" in applied.stderr and "db (plan again, compare, apply)" in \
        applied.stderr
    assert "may be read by other users; it holds secrets" in applied.stderr
    run = json.loads((repo.root.parent / "run.json").read_text())["run"]
    nodes = {n["node"]: n for n in run["nodes"]}
    assert {n: v["detail"]["changes"] for n, v in nodes.items()} == {
        "net": {"create": 1}, "db": {"create": 2}, "app": {"create": 1}, "web": {"create": 1}}
    assert nodes["net"]["ended_at"] <= nodes["db"]["started_at"] <= nodes["app"]["started_at"]
    assert repo.records() == {b: ("1.0.0", "deployed") for b in ("net", "db", "app", "web")}
    backend = repo.workspace().backend
    assert backend.read_outputs(ENV, "web")["net_name"] == "net-dev"
    again = _blocks(repo.plan("app", "web"))
    assert not any(b["has_changes"] for b in again.values()), again

    # applied once, the file is spent: the environment moved since it was written
    refused = repo.doit("apply", str(out))
    assert refused.returncode == 1
    assert "is stale" in refused.stderr
    assert "net: its state appeared, its deployment record appeared" in refused.stderr
    flat = " ".join(refused.stderr.split())
    assert "applied since the plan was saved: net at" in flat and "(a saved plan applies once)" \
        in flat, refused.stderr
    assert "doit plan app web --env dev --out FILE" in refused.stderr


def test_dependency_change_shows_dependents_update_and_stateful_replacement_is_refused(
        repo: Repo) -> None:
    repo.ok("create", "app", "web", "--env", ENV, "--yes")
    repo.pin("1.1.0")
    out = repo.root.parent / "upgrade.plan"
    deployed = repo.stored()
    report = json.loads(repo.ok("plan", "app", "web", "--env", ENV, "--json", "--out",
                                str(out)).stdout)
    assert repo.stored() == deployed        # planning a deployed environment changes nothing
    blocks = _blocks(report)
    assert blocks["net"]["deployed"] == "1.0.0" and blocks["net"]["target"] == "1.1.0"
    assert _actions(blocks["net"]) == [("terraform_data.net", "update")]
    assert _actions(blocks["web"]) == [("terraform_data.web", "update")]   # same plan
    assert blocks["web"]["unknown_inputs"] == ["net.name"]
    assert _actions(blocks["db"]) == [("terraform_data.member[0]", "replace"),
                                      ("terraform_data.member[1]", "replace")]
    assert "terraform_data.member[0]" in blocks["db"]["refusal"]
    assert not blocks["app"]["has_changes"] and blocks["app"]["apply"] == "unchanged"

    before = repo.stored()
    refused = repo.doit("apply", str(out))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "db is stateful and this plan replaces terraform_data.member[0]" in refused.stderr
    assert "doit upgrade db --env dev" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert repo.stored() == before                         # nothing applied, nothing locked

    # without the stateful block in the closure the plan applies
    web_plan = repo.root.parent / "web.plan"
    repo.ok("plan", "web", "--env", ENV, "--out", str(web_plan))
    repo.ok("apply", str(web_plan))
    assert repo.workspace().backend.read_outputs(ENV, "web")["net_name"] == "net2-dev"
    assert repo.records()["net"] == ("1.1.0", "deployed")


def test_a_stale_plan_is_refused(repo: Repo) -> None:
    repo.ok("create", "web", "--env", ENV, "--yes")
    repo.pin("1.1.0")
    out = repo.root.parent / "stale.plan"
    repo.ok("plan", "web", "--env", ENV, "--out", str(out))
    repo.ok("destroy", "web", "--env", ENV, "--yes")       # the environment moves on
    before = repo.stored()
    refused = repo.doit("apply", str(out))
    assert refused.returncode == 1
    assert "is stale" in refused.stderr
    assert "web: its state is gone, its deployment record is gone" in refused.stderr
    assert repo.stored() == before
    # a block whose code changed since is refused as well
    repo.ok("create", "web", "--env", ENV, "--yes")
    fresh = repo.root.parent / "fresh.plan"
    repo.ok("plan", "web", "--env", ENV, "--out", str(fresh))
    main = repo.root / "blocks" / "web" / "1.0.0" / "main.tf"
    main.write_text(main.read_text() + "\n# edited\n")
    edited = repo.doit("apply", str(fresh))
    assert edited.returncode == 1 and "web 1.0.0: its code changed" in edited.stderr


def test_terraform_refusing_a_stale_saved_plan_is_reported_as_such(repo: Repo) -> None:
    """A state written between infrablocks' own check and the apply (a race): Terraform
    itself refuses the saved plan ("Saved plan is stale"), and that is what the user sees."""
    from infrablocks.planning.apply import ReviewedPlan, apply_block_entry
    from infrablocks.planning.planfile import StalePlan, environment_fingerprint, read_plan_file
    from infrablocks.runner import CancelToken

    repo.ok("create", "net", "--env", ENV, "--yes")
    repo.pin("1.1.0")
    out = repo.root.parent / "race.plan"
    repo.ok("plan", "net", "--env", ENV, "--out", str(out))
    repo.pin("1.2.0")
    repo.ok("create", "net", "--env", ENV, "--yes")          # net 1.0.0 is stateless: updated
    workspace = repo.workspace()
    extract = repo.root.parent / "extract"
    extract.mkdir(mode=0o700)
    manifest, plans = read_plan_file(out, extract)
    manifest["fingerprint"] = environment_fingerprint(workspace, ENV, ["net"])  # the race
    reviewed = ReviewedPlan(out, manifest, plans)
    entry = next(b for b in manifest["blocks"] if b["block"] == "net")
    with pytest.raises(StalePlan, match="Saved plan is stale") as raised:
        apply_block_entry(workspace, reviewed, entry, CancelToken())
    assert "Terraform refused the saved plan of net" in raised.value.message
    assert workspace.backend.read_outputs(ENV, "net")["name"] == "net-dev"   # 1.2.0 kept


def test_a_diverging_plan_stops_and_shows_the_difference(repo: Repo) -> None:
    repo.ok("create", "web", "--env", ENV, "--yes")
    repo.pin("1.2.0")                     # replaces net's resource; its name comes back equal
    out = repo.root.parent / "diverge.plan"
    blocks = _blocks(json.loads(repo.ok("plan", "web", "--env", ENV, "--json", "--out",
                                        str(out)).stdout))
    assert _actions(blocks["net"]) == [("terraform_data.net", "replace")]
    assert _actions(blocks["web"]) == [("terraform_data.web", "update")]   # reviewed
    assert blocks["web"]["apply"] == "replan"
    web_state = repo.workspace().backend.read_state(ENV, "web")

    result = repo.doit("apply", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "web: its plan now differs from the reviewed one; not applied" in result.stdout + \
        result.stderr
    assert "terraform_data.web: update → no change" in result.stdout + result.stderr
    assert repo.records()["net"] == ("1.2.0", "deployed")   # net was applied first
    assert repo.records()["web"] == ("1.0.0", "deployed")   # web untouched
    assert repo.workspace().backend.read_state(ENV, "web")["serial"] == web_state["serial"]


def test_a_count_known_only_after_apply_leaves_its_blocks_out_of_the_plan(repo: Repo) -> None:
    out = repo.root.parent / "fleet.plan"
    report = json.loads(repo.ok("plan", "edge", "--env", ENV, "--json", "--out",
                                str(out)).stdout)
    blocks = _blocks(report)
    assert _actions(blocks["net"]) == [("terraform_data.net", "create")]
    assert blocks["fleet"]["apply"] == blocks["edge"]["apply"] == "not planned"
    assert "a count or for_each in fleet depends on a value known only after apply" in \
        blocks["fleet"]["note"]
    assert "it depends on fleet" in blocks["edge"]["note"]
    assert blocks["fleet"]["has_changes"] is None and blocks["fleet"]["changes"] == []
    shown = repo.ok("plan", "edge", "--env", ENV).stdout
    assert "not planned: a count or for_each in fleet" in shown

    applied = repo.ok("apply", str(out))
    assert "not in the reviewed plan, not applied: fleet, edge" in applied.stderr
    assert repo.records() == {"net": ("1.0.0", "deployed")}
    now = _blocks(repo.plan("edge"))
    assert _actions(now["fleet"]) == [("terraform_data.node[0]", "create"),
                                      ("terraform_data.node[1]", "create")]
    assert now["edge"]["unknown_inputs"] == ["fleet.nodes"]


def test_s3_state_planned_saved_and_applied_without_leaving_locks(repo: Repo,
                                                                   moto_endpoint: str) -> None:
    """The same with the state in S3 (moto): the saved plans carry the S3 backend settings,
    planning leaves no object (no lock, no state), `doit apply` writes the states there."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    bucket = "xplan-state"
    s3.create_bucket(Bucket=bucket)
    toml = repo.root / "blocks.toml"
    toml.write_text(f'''[state]
backend = "s3"
bucket = "{bucket}"
prefix = "xplan"
endpoint = "{moto_endpoint}"
access_key = "test"
secret_key = "test"
''' + toml.read_text())

    def keys() -> list[str]:
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", []))

    try:
        repo.ok("create", "net", "--env", ENV, "--yes")
        before = {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys()}
        out = repo.root.parent / "s3.plan"
        blocks = _blocks(json.loads(repo.ok("plan", "app", "web", "--env", ENV, "--json",
                                            "--out", str(out)).stdout))
        assert {n: b["apply"] for n, b in blocks.items()} == {
            "net": "unchanged", "db": "saved", "app": "saved", "web": "saved"}
        assert {k: s3.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys()} == \
            before
        repo.ok("apply", str(out))
        assert {f"xplan/{ENV}/{b}/terraform.tfstate" for b in ("net", "db", "app", "web")} <= \
            set(keys())
        assert not [k for k in keys() if k.endswith((".tflock", "infrablocks.lock"))]
        assert repo.records() == {b: ("1.0.0", "deployed") for b in ("net", "db", "app", "web")}
        assert not (repo.root / ".infrablocks" / "state").exists()
    finally:
        for key in keys():
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
