"""Rolling upgrade of the 3-member base cluster: where the time goes.

    .venv/bin/python benchmarks/upgrade/bench_upgrade.py [--repeat N] [--json out.json]

Runs on a throwaway copy of this monorepo (blocks.toml, blocks/, images/) with its own local
cloud in a temporary directory, environments ``bench0``, ``bench1``, … (one per repeat, each
with a subnet from the machine-wide table: a destroyed environment's addresses stay in
TIME_WAIT for a minute, so a repeat on the same subnet was refused). Each repeat creates
base 1.0.0, upgrades it to 1.1.0 with the real rolling procedure (the library call behind
``doit upgrade``) and destroys it. Reported, medians over the repeats:

- total upgrade time and per unit;
- split: ``terraform`` (init, plans, targeted and final applies), ``gates`` (waiting for the
  service: health, leader move, running, rejoin), ``stop`` (the instance's graceful stop),
  ``images`` (none after the first run), ``tool`` (everything else: the tool's own overhead);
- the service's own restart+rejoin time, as the floor a unit could approach: one member stopped
  and started again on the same instance (no Terraform), until it is ready and rejoined.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[2]
ENV = "bench"
MAX_REPEAT = 50
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'


def make_repo(parent: Path, repeat: int) -> Path:
    root = parent / "repo"
    root.mkdir()
    for name in ("blocks", "images"):
        shutil.copytree(MAIN_REPO / name, root / name)
    (root / "dodo.py").write_text(DODO)
    toml = (MAIN_REPO / "blocks.toml").read_text()
    (root / "blocks.toml").write_text(toml + "".join(f"\n[environments.{ENV}{n}]\n"
                                                     for n in range(repeat)))
    return root


def restart_rejoin_seconds(workspace: Any, environment: str) -> float:
    """One member stopped and started again (same instance, same volume) until rejoined."""
    from infrablocks.health import build_check
    from infrablocks.health.base import CheckContext
    from infrablocks.health.instance import instance_running
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.gates import poll_gate
    from infrablocks.rolling.plan import members_from_state

    version = workspace.registry.block_version("base", "1.1.0")
    declaration = declaration_for(workspace.registry, version)
    members = members_from_state(workspace.backend.read_state(environment, "base"), declaration)
    check = build_check(declaration.check, CheckContext("base", environment))
    ops = workspace.platform(environment).ops
    leader = check.leader(members)
    member = next(m for m in members if m is not leader)
    started = time.monotonic()
    ops.stop_instance(member.instance_id, 30)
    ops.start_instance(member.instance_id, 30)
    for gate in (lambda: instance_running(ops, member),
                 lambda: check.member_healthy(member, members),
                 lambda: check.cluster_health(members)):
        result, _ = poll_gate(gate, 60, 0.05)
        assert result.ok, result
    return time.monotonic() - started


def one_run(root: Path, environment: str) -> dict[str, Any]:
    from infrablocks.deploy.orchestrate import create, teardown_environment
    from infrablocks.deploy.workspace import open_workspace
    from infrablocks.upgrade.engine import roll, upgrade

    workspace = open_workspace(root, roller=roll)   # as the commands open it
    try:
        _, report = create(workspace, ["base@1.0.0"], environment)
        assert report.ok, report.to_json()
        started = time.monotonic()
        outcome = upgrade(workspace, "base", environment)
        wall = time.monotonic() - started
        assert outcome.mode == "rolling", outcome.to_json()
        restart = restart_rejoin_seconds(workspace, environment)
        units = [sum(u["steps"].values()) for u in outcome.units]
        return {"wall": wall, **outcome.timings, "per_unit": statistics.median(units),
                "restart_rejoin": restart}
    finally:
        teardown_environment(workspace, environment)
        workspace.close()   # the run's shared provider process


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, choices=range(1, MAX_REPEAT + 1),
                        metavar="N")
    parser.add_argument("--json", help="write the raw figures here")
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="infrablocks-bench-upgrade-"))
    parent.chmod(0o711)
    runs = []
    try:
        root = make_repo(parent, args.repeat)
        for index in range(args.repeat):
            runs.append(one_run(root, f"{ENV}{index}"))
            print(f"run {index + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items()),
                  file=sys.stderr)
    finally:
        shutil.rmtree(parent, ignore_errors=True)
    keys = list(runs[0])
    medians = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}
    total = medians["total"]
    print(f"base 1.0.0 → 1.1.0, 3 units, median of {len(runs)} runs:")
    print(f"  upgrade total        {total:6.2f} s   (per unit {medians['per_unit']:.2f} s)")
    for key in ("terraform", "gates", "stop", "images", "tool"):
        share = 100 * medians.get(key, 0.0) / total if total else 0
        print(f"  {key:<20} {medians.get(key, 0.0):6.2f} s   {share:5.1f} %")
    print(f"  service restart+rejoin (one member, no Terraform) {medians['restart_rejoin']:.2f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "medians": medians}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
