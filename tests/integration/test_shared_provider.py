"""One local-cloud provider process for a whole run, under real Terraform (TF_REATTACH_PROVIDERS).

The driver (``Terraform(..., shared_providers=[...])``) runs real Terraform on a real local
cloud; the provider is the real one, served by ``python -m infrablocks.cloud.local.provider
--serve``. What must hold:

- several Terraform commands at once (the blocks of one run) share one provider process;
- a Ctrl-C of one of them (Terraform's StopProvider) neither stops the provider for the others
  nor cuts the interrupted command's operation short: it finishes and reaches the state;
- two runs at once (each with its own provider process) on one cloud, and on one state: the
  state lock refuses the second, nothing is created twice;
- the provider killed (SIGKILL) mid-apply: the command fails saying so, the state stays valid,
  and the next apply starts a new provider and repairs: the instances whose creation never
  reached the state are taken over, none is made twice, nothing is left over.

(The tool's own commands with a shared provider — `doit env`, Ctrl-C during `doit create`,
two creates at once — are covered by tests/integration/test_deploy_environments.py and
tests/reliability/test_environment_*.py, whose repository copies check that no provider
process outlives a command.)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.mirror import PROVIDER_SOURCE, serve_argv
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import Terraform, TerraformCancelled, TerraformError
from infrablocks.terraform.reattach import SharedProvider
from tests.support.subnets import hold_during_module

pytestmark = [pytest.mark.slow, pytest.mark.integration]
held_subnets = hold_during_module("127.42.215.0/24")

TERRAFORM = Path(sys.executable).parent / "terraform"
WAIT = 60.0

IDLE = "#!/bin/sh\nexec sleep 600\n"
# Ignores SIGTERM: terminating it waits the provider's whole grace (10 s) before SIGKILL.
STUBBORN = "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 0.2; done\n"

MODULE = """
terraform {
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud" }
  }
}
provider "localcloud" {}

variable "prefix" { type = string }
variable "first_host" { type = number }
variable "members" { default = 3 }
variable "image" { default = "idle" }

data "localcloud_image" "this" { name = var.image }

resource "localcloud_volume" "data" {
  count   = var.members
  name    = "${var.prefix}-${count.index}-data"
  size_gb = 1
  tags    = { environment = "t-shared" }
}

resource "localcloud_instance" "member" {
  count      = var.members
  name       = "${var.prefix}-${count.index}"
  image_id   = data.localcloud_image.this.id
  private_ip = "127.42.215.${var.first_host + count.index}"
  tags       = { environment = "t-shared" }
}

resource "localcloud_volume_attachment" "data" {
  count       = var.members
  volume_id   = localcloud_volume.data[count.index].id
  instance_id = localcloud_instance.member[count.index].id
  device_name = "xvdf"
  stop_instance_before_detaching = true
}
"""


@pytest.fixture
def images(local_cloud: LocalCloud, tmp_path: Path) -> None:
    for name, text in (("idle", IDLE), ("stubborn", STUBBORN)):
        artifact = tmp_path / f"artifact-{name}"
        artifact.mkdir()
        (artifact / "entrypoint").write_text(text)
        (artifact / "entrypoint").chmod(0o755)
        local_cloud.register_image(name, "1.0.0", artifact)


@pytest.fixture
def cli_config(tmp_path: Path) -> Path:
    return write_cli_config(CliConfigPaths.under(tmp_path / "terraform"))


@pytest.fixture
def shared(local_cloud: LocalCloud, tmp_path: Path) -> Iterator[SharedProvider]:
    with _shared(local_cloud, tmp_path / "run-1") as provider:
        yield provider


class _shared:  # noqa: N801 - a context manager used like a function
    """A run's provider; stopped at the end, and checked not to outlive it."""

    def __init__(self, cloud: LocalCloud, where: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "LOCALCLOUD_"))}
        env["LOCALCLOUD_ROOT"] = str(cloud.root)
        self.provider = SharedProvider(PROVIDER_SOURCE, serve_argv(), env, where / "logs")

    def __enter__(self) -> SharedProvider:
        return self.provider

    def __exit__(self, *exc: object) -> None:
        pids = [self.provider.pid]
        self.provider.stop()
        assert all(pid is None or not Path(f"/proc/{pid}").exists() or _zombie(pid)
                   for pid in pids)


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _terraform(cloud: LocalCloud, cli_config: Path, where: Path,
               provider: SharedProvider | None) -> Terraform:
    return Terraform(TERRAFORM, cli_config, where / "logs", {"LOCALCLOUD_ROOT": str(cloud.root)},
                     shared_providers=[provider] if provider is not None else [])


def _workdir(tmp_path: Path, name: str, prefix: str, first_host: int, **extra: object) -> Path:
    import json

    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "main.tf").write_text(MODULE)
    (workdir / "inputs.auto.tfvars.json").write_text(
        json.dumps({"prefix": prefix, "first_host": first_host, **extra}))
    return workdir


def _instances_in_state(terraform: Terraform, workdir: Path) -> set[str]:
    state = terraform.show_state(workdir)
    resources = state.get("values", {}).get("root_module", {}).get("resources", [])
    return {r["values"]["id"] for r in resources if r["type"] == "localcloud_instance"}


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _destroy(terraform: Terraform, *workdirs: Path) -> None:
    for workdir in workdirs:
        terraform.destroy(workdir)


def test_concurrent_commands_share_one_provider_process(
        local_cloud: LocalCloud, images: None, cli_config: Path, tmp_path: Path,
        shared: SharedProvider) -> None:
    terraform = _terraform(local_cloud, cli_config, tmp_path, shared)
    workdirs = [_workdir(tmp_path, f"w{n}", f"c{n}", 10 + 10 * n) for n in range(3)]
    for workdir in workdirs:
        terraform.init(workdir)
    errors: list[BaseException] = []

    def apply(workdir: Path) -> None:
        try:
            terraform.apply(workdir)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=apply, args=(w,)) for w in workdirs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert shared.starts == 1
    in_states = set().union(*(_instances_in_state(terraform, w) for w in workdirs))
    assert len(in_states) == 9 and {i.id for i in local_cloud.describe_instances()} == in_states
    for workdir in workdirs:   # the shared provider refreshes exactly what it created
        assert not terraform.plan(workdir).has_changes
    logs = list((tmp_path / "logs").glob("*-apply.log"))
    assert len(logs) == 3 and all(
        f"shared process, pid {shared.pid}" in log.read_text() for log in logs)
    _destroy(terraform, *workdirs)
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_ctrl_c_of_one_command_neither_stops_the_provider_nor_cuts_its_operation_short(
        local_cloud: LocalCloud, images: None, cli_config: Path, tmp_path: Path,
        shared: SharedProvider) -> None:
    interrupted = _terraform(local_cloud, cli_config, tmp_path, shared)
    other = _terraform(local_cloud, cli_config, tmp_path, shared)
    slow = _workdir(tmp_path, "slow", "s", 40, members=1, image="stubborn")
    fast = _workdir(tmp_path, "fast", "f", 50)
    for workdir in (slow, fast):
        interrupted.init(workdir)
    interrupted.apply(slow)
    [stubborn] = local_cloud.describe_instances()
    pid = shared.pid

    outcome: list[BaseException | None] = []

    def destroy() -> None:
        try:
            interrupted.destroy(slow)   # stopping the stubborn instance takes its 10 s grace
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    thread = threading.Thread(target=destroy)
    thread.start()
    _wait_for(lambda: local_cloud.get_instance(stubborn.id).state == "stopping",
              "the detach to stop the instance")
    interrupted.stop()   # one SIGINT: Terraform asks the provider to stop (StopProvider)
    other.apply(fast)    # meanwhile, another command of the run goes on with the same provider
    thread.join(timeout=WAIT)
    assert not thread.is_alive()
    assert shared.pid == pid and shared.starts == 1
    # The interrupted destroy finished the operation in flight and saved its state.
    assert outcome and isinstance(outcome[0], TerraformCancelled), outcome
    assert local_cloud.get_instance(stubborn.id).state == "stopped"
    fresh = _terraform(local_cloud, cli_config, tmp_path, shared)   # the other is cancelled
    assert sorted(fresh.state_list(slow)) == [   # the attachment's destroy went through
        "data.localcloud_image.this", "localcloud_instance.member[0]",
        "localcloud_volume.data[0]"]
    assert len(_instances_in_state(other, fast)) == 3
    _destroy(fresh, slow, fast)
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_two_runs_at_once_each_with_its_own_provider(
        local_cloud: LocalCloud, images: None, cli_config: Path, tmp_path: Path) -> None:
    with _shared(local_cloud, tmp_path / "run-1") as first, \
            _shared(local_cloud, tmp_path / "run-2") as second:
        runs = [_terraform(local_cloud, cli_config, tmp_path / "run-1", first),
                _terraform(local_cloud, cli_config, tmp_path / "run-2", second)]
        apart = [_workdir(tmp_path, f"apart{n}", f"a{n}", 60 + 10 * n) for n in range(2)]
        same = _workdir(tmp_path, "same", "s", 90)
        for workdir in (*apart, same):
            runs[0].init(workdir)
        results: dict[str, BaseException | None] = {}

        def apply(key: str, terraform: Terraform, workdir: Path) -> None:
            try:
                terraform.apply(workdir)
                results[key] = None
            except BaseException as exc:  # noqa: BLE001 - checked below
                results[key] = exc

        threads = [threading.Thread(target=apply, args=(f"apart{n}", runs[n], apart[n]))
                   for n in range(2)]
        threads += [threading.Thread(target=apply, args=(f"same{n}", runs[n], same))
                    for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert results["apart0"] is None and results["apart1"] is None
        assert first.pid != second.pid and first.starts == second.starts == 1
        # One state at once: Terraform's state lock lets one apply in; the other is refused
        # (or, if the first was done already, finds nothing to do). Never two of anything.
        refused = [e for k, e in results.items() if k.startswith("same") and e is not None]
        assert all("state lock" in str(e) for e in refused), refused
        assert len(_instances_in_state(runs[0], same)) == 3
        assert len(local_cloud.describe_instances()) == 9
        assert not runs[1].plan(same).has_changes
        _destroy(runs[0], *apart, same)
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_a_provider_killed_mid_apply_fails_the_command_clearly_and_the_next_apply_repairs(
        local_cloud: LocalCloud, images: None, cli_config: Path, tmp_path: Path,
        shared: SharedProvider) -> None:
    terraform = _terraform(local_cloud, cli_config, tmp_path, shared)
    workdir = _workdir(tmp_path, "w", "k", 100, members=6)
    terraform.init(workdir)
    lease = shared.attach()
    assert lease is not None
    killed: list[int] = []

    def kill_once_creating() -> None:
        # The moment the first instance exists, its create is in flight (each waits 0.2 s
        # to see its process survive): the provider dies with creates under way.
        _wait_for(lambda: local_cloud.describe_instances() != [], "a create in flight")
        os.kill(lease.process.pid, signal.SIGKILL)
        killed.append(lease.process.pid)

    killer = threading.Thread(target=kill_once_creating)
    killer.start()
    with pytest.raises(TerraformError) as failed:
        terraform.apply(workdir)
    killer.join()
    message = str(failed.value)
    assert (f"provider process (pid {killed[0]}) ended during the command (killed by SIGKILL)"
            in message)
    assert "the next command starts a new provider process" in message
    # The state is valid and holds only what exists; the cloud may hold more (the creates the
    # provider made but could not report).
    held = _instances_in_state(terraform, workdir)
    existing = {i.id for i in local_cloud.describe_instances()}
    assert held <= existing and len(existing) > len(held)

    terraform.apply(workdir)   # a new provider process; the orphans are taken over
    assert shared.starts == 2
    held = _instances_in_state(terraform, workdir)
    instances = local_cloud.describe_instances()
    assert len(held) == 6 and {i.id for i in instances} == held
    assert sorted(i.private_ip for i in instances) == [f"127.42.215.{100 + n}" for n in range(6)]
    assert all(i.state == "running" for i in instances)
    assert len(local_cloud.describe_volumes()) == 6
    assert not terraform.plan(workdir).has_changes
    _destroy(terraform, workdir)
    assert local_cloud.describe_instances() == [] and local_cloud.describe_volumes() == []


def test_a_provider_block_naming_another_cloud_is_refused_by_the_shared_provider(
        local_cloud: LocalCloud, images: None, cli_config: Path, tmp_path: Path,
        shared: SharedProvider) -> None:
    # The shared process serves the run's cloud only: its calls do not say which command's
    # configuration they belong to.
    terraform = _terraform(local_cloud, cli_config, tmp_path, shared)
    workdir = _workdir(tmp_path, "w", "r", 120, members=1)
    main = workdir / "main.tf"
    main.write_text(main.read_text().replace(
        'provider "localcloud" {}', f'provider "localcloud" {{ root = "{tmp_path / "other"}" }}'))
    terraform.init(workdir)
    with pytest.raises(TerraformError) as refused:
        terraform.plan(workdir)
    message = " ".join(str(refused.value).split())
    assert f'root = "{tmp_path / "other"}"' in message or str(tmp_path / "other") in message
    assert "is not the local cloud this run uses" in message
    assert local_cloud.describe_instances() == []
    # Its own root, spelled out, is fine.
    main.write_text(main.read_text().replace(str(tmp_path / "other"), str(local_cloud.root)))
    assert terraform.plan(workdir).has_changes
