"""Terraform's share (issue 14 part 3): a rolling upgrade of base, and `doit env microservice01`.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python \
        benchmarks/bench_terraform_share.py [upgrade] [env] [--repeat 3] \
        [--compare before=/path/to/older/checkout] [--json out.json]'

(a network namespace of its own: the blocks start etcd, Patroni and nomad on loopback
addresses.)

Runs on a throwaway copy of this monorepo (blocks.toml, blocks/, images/) with its own local
cloud in a temporary directory; everything is destroyed and removed at the end. Images are
built by a warm-up run first (not timed).

- **upgrade**: base 1.0.0 created, then upgraded to 1.1.0 by the real rolling procedure (the
  library call behind ``doit upgrade``: 3 units, leader last, every gate), then destroyed; only
  the upgrade is timed. Its time is split by the engine's own clock (``terraform``, ``gates``,
  ``stop``, ``images``, ``tool``); every Terraform command of the upgrade is listed from its
  log (command and seconds). Each run uses an environment of its own (its own subnet: the
  addresses of a destroyed environment linger in TIME_WAIT for a minute). Goal: Terraform
  under 40 % of the upgrade.
- **env**: ``doit env microservice01 --report FILE`` (create base → nomad ∥ stolon →
  microservice01, the block tests, destroy): wall seconds of the whole command and of its
  create stage, and per block the Terraform phases from the report. Goal: the create stage
  (and the whole command) at least 25 % faster.
- ``--compare LABEL=DIR`` adds another source tree (a checkout of an older commit, e.g. made
  with ``git archive COMMIT tooling | tar -x -C DIR``: its ``tooling/`` is put first on
  ``PYTHONPATH``, for the tool and for the provider processes Terraform starts), measured in
  the same run, interleaved with the current tree (the order rotates every repetition), so
  before and after see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DOIT = BIN / "doit"
CURRENT = "after"
_EXIT_LINE = re.compile(r"^# exit code (-?\d+) after ([0-9.]+)s", re.MULTILINE)


class Bench:
    """The throwaway repository, its local cloud, and how each variant runs there."""

    def __init__(self, base: Path, variants: dict[str, Path | None], environments: int) -> None:
        self.base = base
        self.variants = variants   # label → source tree (None: this checkout)
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
        # Subnets come from the machine-wide table (none pinned: no clash with other work).
        toml += "".join(f"\n[environments.up{n}]\n" for n in range(environments))
        (self.repo / "blocks.toml").write_text(toml)

    def environ(self, variant: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_", "TF_"))
               and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "CHECKPOINT_DISABLE")}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud_root), "NO_COLOR": "1", "TERM": "dumb",
                    "COLUMNS": "160"})
        tree = self.variants.get(variant)
        if tree is not None:
            env["PYTHONPATH"] = str(tree / "tooling")
        return env

    def doit(self, variant: str, *args: str) -> float:
        started = time.perf_counter()
        result = subprocess.run([str(DOIT), *args], cwd=self.repo, env=self.environ(variant),
                                text=True, capture_output=True, check=False,
                                stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"[{variant}] doit {' '.join(args)} failed ({result.returncode}):"
                             f"\n{result.stdout}\n{result.stderr}")
        return seconds

    def child(self, variant: str, *args: str) -> dict[str, Any]:
        """This script's ``--child`` mode under ``variant``'s source tree: its JSON line."""
        result = subprocess.run([sys.executable, __file__, "--child", str(self.repo), *args],
                                env=self.environ(variant), text=True, capture_output=True,
                                check=False, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise SystemExit(f"[{variant}] child {' '.join(args)} failed "
                             f"({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def close(self) -> None:
        from infrablocks.cloud.local.control import LocalCloud
        from infrablocks.cloud.local.inventory import purge_every_environment

        try:
            if self.cloud_root.exists():
                cloud = LocalCloud(self.cloud_root)
                purge_every_environment(cloud, grace=3.0)
        finally:
            shutil.rmtree(self.cloud_parent, ignore_errors=True)


# -- the child: one measurement, in the source tree on PYTHONPATH ------------------------------

def child_upgrade(repo: Path, environment: str) -> dict[str, Any]:
    from infrablocks.deploy.orchestrate import create, teardown_environment
    from infrablocks.deploy.workspace import open_workspace
    from infrablocks.terraform.toolchain import terraform_log_dir
    from infrablocks.upgrade.engine import roll, upgrade

    logs = terraform_log_dir(repo)
    workspace = open_workspace(repo, roller=roll)   # as the commands open it
    try:
        _, report = create(workspace, ["base@1.0.0"], environment)
        assert report.ok, report.to_json()
        before = set(logs.glob("*.log"))
        started = time.monotonic()
        outcome = upgrade(workspace, "base", environment)
        wall = time.monotonic() - started
        assert outcome.mode == "rolling", outcome.to_json()
        commands = terraform_commands(sorted(set(logs.glob("*.log")) - before))
        return {"wall": wall, "timings": outcome.timings, "commands": commands}
    finally:
        teardown_environment(open_workspace(repo), environment)
        _stop_shared()


def _stop_shared() -> None:
    reattach = sys.modules.get("infrablocks.terraform.reattach")
    if reattach is not None:
        reattach.stop_all()


def terraform_commands(paths: list[Path]) -> list[tuple[str, float]]:
    """(command, seconds) of each Terraform log, in order (``provider`` logs left out)."""
    found = []
    for path in paths:
        match = _EXIT_LINE.search(path.read_text(errors="replace"))
        if match is None:
            continue
        command = path.stem.split("-base-", 1)[-1]
        found.append((command, float(match.group(2))))
    return found


# -- the parent ----------------------------------------------------------------------------------

def bench_upgrade(bench: Bench, repeat: int) -> dict[str, list[dict[str, Any]]]:
    labels = list(bench.variants)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    environment = 0
    for index in range(repeat):
        order = labels[index % len(labels):] + labels[:index % len(labels)]
        for label in order:
            result = bench.child(label, "upgrade", f"up{environment}")
            environment += 1
            runs[label].append(result)
            timings = result["timings"]
            share = 100 * timings.get("terraform", 0) / timings["total"]
            print(f"  run {index + 1} {label}: upgrade {timings['total']:.2f}s, terraform "
                  f"{timings.get('terraform', 0):.2f}s ({share:.0f} %), gates "
                  f"{timings.get('gates', 0):.2f}s", flush=True)
    return runs


def bench_env(bench: Bench, repeat: int) -> dict[str, list[dict[str, Any]]]:
    labels = list(bench.variants)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in labels}
    for index in range(repeat):
        order = labels[index % len(labels):] + labels[:index % len(labels)]
        for label in order:
            report_file = bench.base / f"env-{label}-{index}.json"
            wall = bench.doit(label, "env", "microservice01", "--report", str(report_file))
            document = json.loads(report_file.read_text())
            entry: dict[str, Any] = {"wall": wall, "stages": {}, "blocks": {}}
            for stage in ("create", "destroy"):
                entry["stages"][stage] = document[stage]["wall_seconds"]
                for node in document[stage]["nodes"]:
                    entry["blocks"][f"{stage} {node['node']}"] = {
                        "seconds": node["duration_seconds"],
                        "phases": node["detail"].get("phases", {})}
            entry["stages"]["tests"] = sum(t["seconds"] for t in document["tests"])
            runs[label].append(entry)
            print(f"  run {index + 1} {label}: {wall:.2f}s — " + ", ".join(
                f"{k} {v:.2f}s" for k, v in entry["stages"].items()), flush=True)
    return runs


def summarize_upgrade(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for label, results in runs.items():
        keys = sorted({k for r in results for k in r["timings"]})
        medians = {k: statistics.median(r["timings"].get(k, 0.0) for r in results)
                   for k in keys}
        shares = [r["timings"].get("terraform", 0) / r["timings"]["total"] for r in results]
        counts = [len(r["commands"]) for r in results]
        summary[label] = {"median": medians, "terraform_share_median": statistics.median(shares),
                          "terraform_share_range": [min(shares), max(shares)],
                          "terraform_commands": statistics.median(counts)}
    return summary


def summarize_env(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for label, results in runs.items():
        summary[label] = {
            "wall_median": statistics.median(r["wall"] for r in results),
            "wall_min": min(r["wall"] for r in results),
            "create_median": statistics.median(r["stages"]["create"] for r in results),
            "create_min": min(r["stages"]["create"] for r in results),
            "destroy_median": statistics.median(r["stages"]["destroy"] for r in results),
        }
    return summary


def print_upgrade(summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
    print("\nupgrade of base 1.0.0 → 1.1.0 (medians):")
    print("| | " + " | ".join(summary) + " |\n|---|" + "---|" * len(summary))
    for key in ("total", "terraform", "gates", "stop", "tool", "images"):
        print(f"| {key} s | " + " | ".join(f"{s['median'].get(key, 0.0):.2f}"
                                            for s in summary.values()) + " |")
    print("| terraform share | " + " | ".join(
        f"{100 * s['terraform_share_median']:.0f} % ({100 * s['terraform_share_range'][0]:.0f}"
        f"–{100 * s['terraform_share_range'][1]:.0f})" for s in summary.values()) + " |")
    print("| Terraform commands | " + " | ".join(f"{s['terraform_commands']:.0f}"
                                               for s in summary.values()) + " |")
    for label, results in runs.items():
        fastest = min(results, key=lambda r: r["timings"]["total"])
        print(f"  {label}, fastest run's Terraform commands: " + ", ".join(
            f"{command} {seconds:.2f}" for command, seconds in fastest["commands"]))


def print_env(summary: dict[str, Any], runs: dict[str, list[dict[str, Any]]]) -> None:
    print("\ndoit env microservice01:")
    print("| | " + " | ".join(summary) + " |\n|---|" + "---|" * len(summary))
    for key, title in (("wall_median", "whole command, median s"),
                       ("wall_min", "whole command, fastest s"),
                       ("create_median", "create stage, median s"),
                       ("create_min", "create stage, fastest s"),
                       ("destroy_median", "destroy stage, median s")):
        print(f"| {title} | " + " | ".join(f"{s[key]:.2f}" for s in summary.values()) + " |")
    for label, results in runs.items():
        fastest = min(results, key=lambda r: r["stages"]["create"])
        print(f"  {label}, fastest create: " + "; ".join(
            f"{name} {info['seconds']:.2f} (" + ", ".join(
                f"{p} {s:.2f}" for p, s in sorted(info["phases"].items(), key=lambda kv: -kv[1])
                if s >= 0.05) + ")"
            for name, info in fastest["blocks"].items() if name.startswith("create")))


def _parse_compare(values: list[str]) -> dict[str, Path | None]:
    variants: dict[str, Path | None] = {}
    for value in values:
        label, sep, directory = value.partition("=")
        if not sep or not (Path(directory) / "tooling" / "infrablocks").is_dir():
            raise SystemExit(f"--compare {value}: expected LABEL=DIR with DIR/tooling/infrablocks")
        variants[label] = Path(directory).resolve()
    variants[CURRENT] = None
    return variants


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        repo, what, *rest = sys.argv[2:]
        if what == "upgrade":
            print(json.dumps(child_upgrade(Path(repo), rest[0])))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", help="upgrade, env (default: both)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.what = args.what or ["upgrade", "env"]
    if unknown := set(args.what) - {"upgrade", "env"}:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (upgrade, env)")
    variants = _parse_compare(args.compare)
    document: dict[str, Any] = {"variants": {k: str(v) if v else "this checkout"
                                             for k, v in variants.items()}}
    with tempfile.TemporaryDirectory(prefix="infrablocks-bench-repo-") as tmp:
        bench = Bench(Path(tmp), variants, environments=args.repeat * len(variants))
        try:
            print("warm-up: images, bytecode", flush=True)
            for label in variants:
                bench.doit(label, "env", "microservice01")
            if "upgrade" in args.what:
                print("upgrade: base 1.0.0 → 1.1.0", flush=True)
                runs = bench_upgrade(bench, args.repeat)
                document["upgrade"] = {"runs": runs, "summary": summarize_upgrade(runs)}
                print_upgrade(document["upgrade"]["summary"], runs)
            if "env" in args.what:
                print("env: doit env microservice01", flush=True)
                runs = bench_env(bench, args.repeat)
                document["env"] = {"runs": runs, "summary": summarize_env(runs)}
                print_env(document["env"]["summary"], runs)
        finally:
            bench.close()
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
