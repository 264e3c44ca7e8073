"""Environment commands: tool overhead per block, and `doit env microservice01` end to end.

    .venv/bin/python benchmarks/environments/bench_environments.py [overhead] [env]
        [--repeat N] [--block base] [--json out.json]

Runs on a throwaway copy of this monorepo (blocks.toml, blocks/, images/) and its own local
cloud in a temporary directory; subnets 127.42.187.0/24 (doit) and 127.42.188.0/24 (bare
Terraform), `doit env` in 127.42.190-199. Everything is destroyed and removed at the end.

- **overhead**: `doit create BLOCK --env bench` (a fresh working directory each time, so it runs
  `terraform init` too) against the bare `terraform init && terraform apply -auto-approve` of
  the same module with the same inputs, provider mirror and local cloud, in a fresh directory.
  Images are registered by a warm-up run first; destroys are not timed. Alternating order,
  medians reported; the goal (issue 4) is doit ÷ bare ≤ 1.2.
- **env**: `doit env microservice01 --report …` wall time, and where it goes: per stage
  (create, block tests, destroy), per block and per phase (from the run report's
  ``detail.phases``).
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
BIN = Path(sys.executable).parent
DOIT = BIN / "doit"
DOIT_SUBNET = "127.42.187.0/24"
BARE_SUBNET = "127.42.188.0/24"


class Bench:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.repo = base / "repo"
        self.cloud_parent = Path(tempfile.mkdtemp(prefix="infrablocks-bench-"))
        self.cloud_parent.chmod(0o711)
        self.cloud_root = self.cloud_parent / "cloud"
        self.repo.mkdir(parents=True)
        ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".terraform*")
        for name in ("blocks", "images"):
            shutil.copytree(MAIN_REPO / name, self.repo / name, ignore=ignore)
        shutil.copy(MAIN_REPO / "dodo.py", self.repo / "dodo.py")
        toml = (MAIN_REPO / "blocks.toml").read_text()
        toml = toml.replace("[environments.prod]\n", '[environments.prod]\nsubnet = '
                            '"127.42.181.0/24"\n').replace(
            "[environments.staging]\n", '[environments.staging]\nsubnet = "127.42.182.0/24"\n')
        (self.repo / "blocks.toml").write_text(
            toml + f'\n[environments.bench]\nsubnet = "{DOIT_SUBNET}"\n')

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud_root), "NO_COLOR": "1", "TERM": "dumb",
                    "INFRABLOCKS_EPHEMERAL_SUBNETS": "190-199", "COLUMNS": "160"})
        return env

    def doit(self, *args: str) -> float:
        started = time.perf_counter()
        result = subprocess.run([str(DOIT), *args], cwd=self.repo, env=self.env, text=True,
                                capture_output=True, check=False)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"doit {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
        return seconds

    # -- bare Terraform ---------------------------------------------------------------------

    def terraform_env(self) -> dict[str, str]:
        from infrablocks.terraform.cliconfig import write_cli_config
        from infrablocks.terraform.toolchain import cli_config_paths

        env = dict(self.env)
        env.update({"TF_CLI_CONFIG_FILE": str(write_cli_config(cli_config_paths(self.repo))),
                    "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
        return env

    def bare_inputs(self, block: str, version: str) -> dict[str, Any]:
        """What doit gives the block in `bench` (dependency objects read from their state),
        with the bare run's own environment name and subnet."""
        from infrablocks.deploy.block_ops import BlockRun
        from infrablocks.deploy.workspace import open_workspace

        saved = dict(os.environ)
        os.environ.update(self.env)
        try:
            workspace = open_workspace(self.repo)
            run = BlockRun(workspace, "bench", workspace.registry.block_version(block, version),
                           DOIT_SUBNET)
            inputs = run.inputs()
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return {**inputs, "environment": "benchbare", "subnet_cidr": BARE_SUBNET}

    def bare_apply(self, block: str, version: str, run: int,
                   inputs: dict[str, Any]) -> tuple[float, Path]:
        workdir = self.base / f"bare-{run}"
        shutil.copytree(self.repo / "blocks" / block / version, workdir,
                        ignore=shutil.ignore_patterns("tests"))
        (workdir / "inputs.auto.tfvars.json").write_text(json.dumps(inputs))
        env = self.terraform_env()
        terraform = str(BIN / "terraform")
        started = time.perf_counter()
        for args in (["init", "-input=false", "-no-color"],
                     ["apply", "-input=false", "-no-color", "-auto-approve"]):
            subprocess.run([terraform, *args], cwd=workdir, env=env, check=True,
                           capture_output=True)
        return time.perf_counter() - started, workdir

    def bare_destroy(self, workdir: Path) -> None:
        from infrablocks.cloud.local.control import LocalCloud

        cloud = LocalCloud(self.cloud_root)
        for instance in cloud.describe_instances(filters={"tag:environment": "benchbare"}):
            if instance.state not in ("stopped", "terminated"):
                cloud.stop_instance(instance.id, grace=3.0)
        subprocess.run([str(BIN / "terraform"), "destroy", "-input=false", "-no-color",
                        "-auto-approve"], cwd=workdir, env=self.terraform_env(), check=True,
                       capture_output=True)
        shutil.rmtree(workdir)

    # -- cleanup ----------------------------------------------------------------------------

    def close(self) -> None:
        from infrablocks.cloud.local.control import LocalCloud
        from infrablocks.cloud.local.inventory import purge_every_environment

        try:
            if self.cloud_root.exists():
                cloud = LocalCloud(self.cloud_root)
                purge_every_environment(cloud, grace=3.0)
        finally:
            shutil.rmtree(self.cloud_parent, ignore_errors=True)


def bench_overhead(bench: Bench, block: str, repeat: int) -> dict[str, Any]:
    from infrablocks.registry import load_registry
    from infrablocks.resolve import resolve

    resolution = resolve(load_registry(bench.repo), [block])
    version = str(resolution.selected[block].version)
    dependencies = sorted(set(resolution.selected) - {block})
    if dependencies:  # deployed once, kept: both runs use them
        bench.doit("create", *dependencies, "--env", "bench", "--yes")
    bench.doit("create", block, "--env", "bench", "--yes")    # warm-up: builds the images
    bench.doit("destroy", block, "--env", "bench", "--yes")
    inputs = bench.bare_inputs(block, version)
    doit_times, bare_times = [], []
    for run in range(repeat):
        for which in (("doit", "bare") if run % 2 == 0 else ("bare", "doit")):
            if which == "doit":
                shutil.rmtree(bench.repo / ".infrablocks" / "work" / "bench",
                              ignore_errors=True)
                doit_times.append(bench.doit("create", block, "--env", "bench", "--yes"))
                bench.doit("destroy", block, "--env", "bench", "--yes")
            else:
                seconds, workdir = bench.bare_apply(block, version, run, inputs)
                bare_times.append(seconds)
                bench.bare_destroy(workdir)
        print(f"  run {run + 1}: doit {doit_times[-1]:.2f}s, bare {bare_times[-1]:.2f}s",
              flush=True)
    doit_median, bare_median = statistics.median(doit_times), statistics.median(bare_times)
    return {"block": f"{block}@{version}", "repeat": repeat,
            "doit_seconds": doit_times, "bare_seconds": bare_times,
            "doit_median": round(doit_median, 3), "bare_median": round(bare_median, 3),
            "ratio": round(doit_median / bare_median, 3),
            "doit_min": round(min(doit_times), 3), "bare_min": round(min(bare_times), 3),
            "ratio_of_minimums": round(min(doit_times) / min(bare_times), 3),
            "dependencies": dependencies}


def bench_env(bench: Bench, repeat: int) -> list[dict[str, Any]]:
    results = []
    for run in range(repeat):
        report_file = bench.base / f"env-{run}.json"
        wall = bench.doit("env", "microservice01", "--report", str(report_file))
        document = json.loads(report_file.read_text())
        entry: dict[str, Any] = {"wall": round(wall, 2), "stages": {}, "blocks": {}}
        for stage in ("create", "destroy"):
            entry["stages"][stage] = document[stage]["wall_seconds"]
            for node in document[stage]["nodes"]:
                entry["blocks"][f"{stage} {node['node']}"] = {
                    "seconds": node["duration_seconds"],
                    "phases": node["detail"].get("phases", {})}
        entry["stages"]["tests"] = sum(t["seconds"] for t in document["tests"])
        results.append(entry)
        print(f"  run {run + 1}: {wall:.1f}s — " + ", ".join(
            f"{k} {v:.1f}s" for k, v in entry["stages"].items()), flush=True)
    return results


def print_env_breakdown(results: list[dict[str, Any]]) -> None:
    best = min(results, key=lambda r: r["wall"])
    print(f"\nfastest doit env microservice01: {best['wall']:.1f}s")
    print("| stage / block | seconds | phases (s) |\n|---|---|---|")
    for name, info in best["blocks"].items():
        phases = ", ".join(f"{p} {s:.2f}" for p, s in sorted(
            info["phases"].items(), key=lambda kv: -kv[1]) if s >= 0.05)
        print(f"| {name} | {info['seconds']:.2f} | {phases} |")
    for stage, seconds in best["stages"].items():
        print(f"| **{stage}** (wall) | {seconds:.2f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", help="overhead, env (default: both)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", default="base")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.what = args.what or ["overhead", "env"]
    if unknown := set(args.what) - {"overhead", "env"}:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (overhead, env)")
    document: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="infrablocks-bench-repo-") as tmp:
        bench = Bench(Path(tmp))
        try:
            if "overhead" in args.what:
                print(f"overhead: doit create {args.block} vs terraform init && apply")
                document["overhead"] = bench_overhead(bench, args.block, args.repeat)
                o = document["overhead"]
                print(f"  median doit {o['doit_median']:.2f}s, bare {o['bare_median']:.2f}s, "
                      f"ratio {o['ratio']:.2f} (goal ≤ 1.2); fastest doit {o['doit_min']:.2f}s, "
                      f"bare {o['bare_min']:.2f}s, ratio {o['ratio_of_minimums']:.2f}")
            if "env" in args.what:
                print("env: doit env microservice01")
                document["env"] = bench_env(bench, args.repeat)
                print_env_breakdown(document["env"])
        finally:
            bench.close()
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
