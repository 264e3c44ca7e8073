"""Planning microservice01's closure: one cross-block plan against planning block by block.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python \
        benchmarks/planning/bench_crossplan.py [--repeat 3] [--json out.json]'

A throwaway copy of this monorepo and its own local cloud (environment ``bench`` on
127.42.238.0/24; instances run, so use a network namespace). The images the closure uses are
built first (not timed), so both ways plan against the same registered images.

- **cross-block**: :func:`infrablocks.planning.crossplan.plan_environment` in the empty
  environment (what `doit plan microservice01 --env bench` does, without the printing):
  base, nomad, stolon and microservice01 in one Terraform plan, fresh scratch directory and
  ``terraform init`` each time. Median of ``--repeat`` runs; also `doit plan` end to end.
- **block by block**: what planning the same blocks one at a time takes, where that is
  possible at all — a block can only be planned on its own once its dependencies exist, so
  the baseline plans base, creates it, plans nomad and stolon, creates them, plans
  microservice01 (the pre-issue-13 ``plan_block``: working directory, init, plan, show). Only
  the plans are timed; the creates in between are reported apart (they are what the
  one-by-one way needs before it can show the last block's plan at all).

Everything is destroyed and removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
ENV = "bench"
SUBNET = "127.42.238.0/24"
TARGET = "microservice01"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'


def make_repo(parent: Path) -> Path:
    root = parent / "repo"
    root.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".terraform*")
    for name in ("blocks", "images"):
        shutil.copytree(MAIN_REPO / name, root / name, ignore=ignore)
    (root / "dodo.py").write_text(DODO)
    toml = (MAIN_REPO / "blocks.toml").read_text()
    (root / "blocks.toml").write_text(toml + f'\n[environments.{ENV}]\nsubnet = "{SUBNET}"\n')
    return root


def build_images(workspace: Any, resolution: Any) -> None:
    platform = workspace.platform(ENV)
    for version in resolution.selected.values():
        platform.ensure_images(version.images)


def cross_block(workspace: Any) -> tuple[float, Any]:
    from infrablocks.planning.crossplan import plan_environment

    started = time.perf_counter()
    result = plan_environment(workspace, [TARGET], ENV)
    return time.perf_counter() - started, result


def doit_plan(root: Path) -> float:
    env = dict(os.environ)
    started = time.perf_counter()
    done = subprocess.run([str(DOIT), "plan", TARGET, "--env", ENV, "--json"], cwd=root,
                          env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"doit plan failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def block_by_block(workspace: Any, resolution: Any) -> dict[str, Any]:
    from infrablocks.deploy.block_ops import BlockRun, plan_block
    from infrablocks.deploy.orchestrate import create
    from infrablocks.graph import dependency_graph, levels
    from infrablocks.runner import CancelToken

    subnet = workspace.subnet(ENV)
    plans: dict[str, float] = {}
    counts: dict[str, dict[str, int]] = {}
    creates: dict[str, float] = {}
    for level in levels(dependency_graph(resolution)):
        for name in level:
            run = BlockRun(workspace, ENV, resolution.selected[name], subnet)
            started = time.perf_counter()
            plan = plan_block(run, CancelToken())
            plans[name] = time.perf_counter() - started
            counts[name] = plan.counts()
        started = time.perf_counter()
        _, report = create(workspace, level, ENV)
        if not report.ok:
            raise SystemExit(f"create {level} failed: {report.summary()}")
        creates["+".join(level)] = time.perf_counter() - started
    return {"plans": plans, "counts": counts, "creates": creates}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    parent = Path(tempfile.mkdtemp(prefix="infrablocks-bench-plan-"))
    parent.chmod(0o711)
    os.environ.pop("INFRABLOCKS_EPHEMERAL_SUBNETS", None)
    os.environ["LOCALCLOUD_ROOT"] = str(parent / "cloud")
    root = make_repo(parent)
    sys.path.insert(0, str(MAIN_REPO))
    from infrablocks.deploy.orchestrate import resolve_for_environment, teardown_environment
    from infrablocks.deploy.workspace import open_workspace

    workspace = open_workspace(root)
    try:
        resolution = resolve_for_environment(workspace, [TARGET], ENV)
        build_images(workspace, resolution)
        cross_block(workspace)                                   # warm-up (caches, mirror)
        runs = [cross_block(workspace) for _ in range(args.repeat)]
        seconds = [s for s, _ in runs]
        composed = runs[-1][1]
        doit_seconds = [doit_plan(root) for _ in range(args.repeat)]
        baseline = block_by_block(workspace, resolution)
        cross_counts = {b.block: b.counts() for b in composed.blocks}
        result = {
            "blocks": [b.block for b in composed.blocks],
            "cross_block_seconds": seconds,
            "cross_block_median": statistics.median(seconds),
            "doit_plan_median": statistics.median(doit_seconds),
            "block_by_block_plan_seconds": baseline["plans"],
            "block_by_block_plan_total": sum(baseline["plans"].values()),
            "creates_in_between": baseline["creates"],
            "same_counts": cross_counts == baseline["counts"],
            "counts": cross_counts,
        }
        result["ratio"] = result["cross_block_median"] / result["block_by_block_plan_total"]
        _print(result)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if result["same_counts"] else 1
    finally:
        teardown_environment(workspace, ENV, handle_signals=False)
        shutil.rmtree(parent, ignore_errors=True)


def _print(result: dict[str, Any]) -> None:
    by_block = result["block_by_block_plan_seconds"]
    print(f"blocks: {', '.join(result['blocks'])}; same per-block counts both ways: "
          f"{result['same_counts']} {result['counts']}")
    print(f"cross-block plan (in-process): median {result['cross_block_median']:.2f} s "
          f"of {', '.join(f'{s:.2f}' for s in result['cross_block_seconds'])}")
    print(f"`doit plan {TARGET}` end to end: median {result['doit_plan_median']:.2f} s")
    print("block by block: " + ", ".join(f"{b} {s:.2f} s" for b, s in by_block.items())
          + f" = {result['block_by_block_plan_total']:.2f} s of plans, plus creates "
          + ", ".join(f"{b} {s:.1f} s" for b, s in result["creates_in_between"].items()))
    print(f"ratio cross-block ÷ block-by-block plans: {result['ratio']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
