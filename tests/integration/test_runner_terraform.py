"""The runner driving real Terraform: Ctrl-C stops a running apply cleanly, and a second run
completes on the state the first one left."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Hashable

import networkx as nx
import pytest

from infrablocks.runner import NODE_FINISHED, CancelToken, Result, RunEvent, Status, run_dag
from infrablocks.state.local import LocalBackend
from infrablocks.terraform.binary import find_terraform
from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
from infrablocks.terraform.driver import Terraform
from infrablocks.terraform.workdir import prepare_workdir
from tests.support.sleepers import Sleepers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WAIT = 30.0
SLOW = "60"  # seconds the slow provisioner sleeps (it is always stopped long before)

SLEEPERS = Sleepers("runner-terraform")
MODULE = """
variable "environment" { type = string }
variable "slow_seconds" {
  type    = string
  default = ""
}
resource "terraform_data" "first" { input = "${var.environment}-first" }
resource "terraform_data" "slow" {
  count      = var.slow_seconds != "" ? 1 : 0
  input      = "slow"
  depends_on = [terraform_data.first]
  provisioner "local-exec" {
    command = "@SLEEP@"
  }
}
output "first" { value = terraform_data.first.output }
"""
MODULE = MODULE.replace("@SLEEP@", SLEEPERS.command("${var.slow_seconds}"))




@pytest.fixture
def area(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CLI_CONFIG_FILE", str(tmp_path / "missing-user.tfrc"))
    source = tmp_path / "blocks" / "demo" / "1.0.0"
    source.mkdir(parents=True)
    (source / "main.tf").write_text(MODULE)
    config = write_cli_config(CliConfigPaths.under(tmp_path / "terraform"),
                              populate_mirror=False)
    drivers: list[Terraform] = []

    def new_driver() -> Terraform:
        """One per run, as per command: a stopped driver stays stopped (its cancel event)."""
        drivers.append(Terraform(find_terraform(environ={}), config, tmp_path / "logs"))
        return drivers[-1]

    yield tmp_path, source, new_driver
    for driver in drivers:
        driver.stop()
    SLEEPERS.kill_all()
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_ctrl_c_stops_the_running_apply_cleanly_and_a_second_run_completes(area) -> None:
    root, source, new_driver = area
    backend = LocalBackend(root / "state")
    graph = nx.DiGraph([("base", "app")])
    graph.add_node("other")

    def make_work(slow: str):
        terraform = new_driver()

        def work(node: Hashable, token: CancelToken) -> Result:
            inputs = {"environment": "dev", "slow_seconds": slow if node == "base" else ""}
            workdir = prepare_workdir(root / "work", "dev", str(node), source,
                                      backend.terraform_backend("dev", str(node)), inputs)
            driver = terraform.for_deployment("dev", str(node))
            token.phase("init")
            driver.ensure_init(workdir)
            token.phase("apply")
            with token.on_cancel(driver.stop):
                driver.apply(workdir)
            return Result.success(first=backend.read_outputs("dev", str(node))["first"])
        return work

    other_done = threading.Event()

    def on_event(event: RunEvent) -> None:
        if event.kind == NODE_FINISHED and event.node == "other":
            other_done.set()

    def press_ctrl_c_once_base_sleeps() -> None:
        # Once "other" is done, so that only base's apply is running when Ctrl-C comes.
        other_done.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while not SLEEPERS.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c_once_base_sleeps)
    presser.start()
    try:
        report = run_dag(graph, make_work(SLOW), jobs=2, on_event=on_event)
    finally:
        presser.join(WAIT)

    assert report.cancelled and report.cancel_reason == "received SIGINT"
    base = report.nodes["base"]
    assert base.status is Status.CANCELLED and base.phase == "apply"
    assert "interrupt" in (base.error or "").lower() or "cancel" in (base.error or "").lower()
    assert report.nodes["app"].status is Status.SKIPPED
    assert report.nodes["other"].status is Status.SUCCEEDED  # ran alongside, finished
    # Nothing Terraform started is left running (the driver's SIGTERM may take a moment).
    deadline = time.monotonic() + WAIT
    while SLEEPERS.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not SLEEPERS.alive()
    # What base created before the interrupt is in a readable, consistent state.
    state = backend.read_state("dev", "base")
    assert state is not None
    assert {r["name"] for r in state["resources"]} >= {"first"}

    again = run_dag(graph, make_work(""), jobs=2)
    assert again.ok, again.to_json()
    assert again.nodes["app"].detail == {"first": "dev-first"}
