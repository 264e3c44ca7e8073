"""Fixed cost of one command: `doit create BLOCK` against bare Terraform, and start-up per command.

    unshare -n sh -c 'ip link set lo up && exec .venv/bin/python \
        benchmarks/bench_command_overhead.py [--repeat 7] [--blocks bench_tiny base] \
        [--compare before=/path/to/older/checkout] [--json out.json]'

(a network namespace of its own, because ``base`` starts etcd members on loopback addresses.)

Runs on a throwaway copy of this monorepo (blocks.toml, blocks/, images/) with its own local
cloud in a temporary directory, plus one extra block, ``bench_tiny`` (two ``terraform_data``
resources: the smallest real block, so the tool's fixed cost is most visible). Everything is
destroyed and removed at the end.

- **create**: ``doit create BLOCK --env bench`` with a fresh working directory each time (so it
  runs ``terraform init`` too) against the bare ``terraform init && terraform apply
  -auto-approve`` of the same module with the same inputs, the same CLI config (the tool's
  ``terraform.rc``: provider mirror and plugin cache), the same environment variables and the
  same local cloud, in a fresh directory. Warm-up runs first (images built, bytecode compiled,
  caches filled, as for anyone who has run a command before); destroys are not timed; the order
  of the variants rotates from one repetition to the next. Only blocks without dependencies.
  Goal (issue 14): doit ÷ bare ≤ 1.2.
- **start-up**: commands that start no Terraform, timed as whole processes: ``doit list``,
  ``doit help create``, ``doit resolve base``, ``doit graph``, ``doit status --no-drift``,
  ``doit outputs bench_tiny``, ``doit cloud``, ``doit images``, and ``doit create bench_tiny``
  when it is already deployed (everything create does before Terraform, with nothing to apply),
  next to ``python -c pass`` (the interpreter's own floor).
- ``--compare LABEL=DIR`` adds another source tree (a checkout of an older commit: its
  ``tooling/`` is put first on ``PYTHONPATH``), measured in the same run, interleaved with the
  current tree, so before and after see the same machine load.

Each run is timed twice: wall seconds, and CPU seconds (user + system) of the whole process tree
(``getrusage`` of the children: doit or Terraform, and the processes they started and waited
for). The machine is shared, so wall times swing with its load; CPU seconds hardly do, and their
ratio is reported next to the wall ratio.

The interpreter may write bytecode (``PYTHONDONTWRITEBYTECODE`` is dropped from the
environment): recompiling every module on each start is not what a user's machine does.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
TERRAFORM = BIN / "terraform"
DOIT_SUBNET = "127.42.187.0/24"
BARE_SUBNET = "127.42.188.0/24"
TINY = "bench_tiny"
TINY_MODULE = """\
variable "environment" { type = string }
variable "subnet_cidr" { type = string }

resource "terraform_data" "first" { input = var.environment }
resource "terraform_data" "second" { input = var.subnet_cidr }

output "first" { value = terraform_data.first.output }
"""
STARTUP_COMMANDS: list[tuple[str, ...]] = [
    ("list",), ("help", "create"), ("resolve", "base"), ("graph",),
    ("status", "--no-drift"), ("outputs", TINY, "--env", "bench"), ("cloud",), ("images",),
    ("create", TINY, "--env", "bench"),
]


class Bench:
    """The throwaway repository, its local cloud, and how each variant runs there."""

    def __init__(self, base: Path, variants: dict[str, Path | None]) -> None:
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
        (self.repo / "blocks" / TINY / "1.0.0").mkdir(parents=True)
        (self.repo / "blocks" / TINY / "1.0.0" / "main.tf").write_text(TINY_MODULE)
        toml = (MAIN_REPO / "blocks.toml").read_text()
        toml = toml.replace("[environments.prod]\n", '[environments.prod]\nsubnet = '
                            '"127.42.181.0/24"\n').replace(
            "[environments.staging]\n", '[environments.staging]\nsubnet = "127.42.182.0/24"\n')
        (self.repo / "blocks.toml").write_text(
            toml + f'\n[environments.bench]\nsubnet = "{DOIT_SUBNET}"\n'
                   f'\n[blocks.{TINY}.versions."1.0.0"]\n')

    def environ(self, variant: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_", "TF_"))
               and k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH", "CHECKPOINT_DISABLE")}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud_root), "NO_COLOR": "1", "TERM": "dumb",
                    "COLUMNS": "160"})
        tree = self.variants.get(variant) if variant else None
        if tree is not None:
            env["PYTHONPATH"] = str(tree / "tooling")
        return env

    def run(self, variant: str, *args: str, check: bool = True) -> tuple[float, float]:
        """Wall and CPU seconds of ``doit ARGS`` under ``variant``."""
        with Clock() as clock:
            result = subprocess.run([str(DOIT), *args], cwd=self.repo,
                                    env=self.environ(variant), text=True, capture_output=True,
                                    check=False, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise SystemExit(f"[{variant}] doit {' '.join(args)} failed ({result.returncode}):"
                             f"\n{result.stdout}\n{result.stderr}")
        return clock.wall, clock.cpu

    def timed(self, argv: list[str], variant: str | None = None) -> tuple[float, float]:
        with Clock() as clock:
            subprocess.run(argv, cwd=self.repo, env=self.environ(variant), check=True,
                           capture_output=True, stdin=subprocess.DEVNULL)
        return clock.wall, clock.cpu

    # -- bare Terraform -------------------------------------------------------------------------

    def terraform_env(self) -> dict[str, str]:
        config = self.repo / ".infrablocks" / "terraform" / "terraform.rc"
        if not config.is_file():
            raise SystemExit(f"{config} missing: the warm-up `doit create` should have made it")
        env = self.environ()
        env.update({"TF_CLI_CONFIG_FILE": str(config), "CHECKPOINT_DISABLE": "1",
                    "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
        return env

    def bare_apply(self, block: str, version: str, run: int) -> tuple[tuple[float, float], Path]:
        workdir = self.base / f"bare-{block}-{run}"
        shutil.copytree(self.repo / "blocks" / block / version, workdir,
                        ignore=shutil.ignore_patterns("tests"))
        (workdir / "inputs.auto.tfvars.json").write_text(json.dumps(
            {"environment": "benchbare", "subnet_cidr": BARE_SUBNET}))
        env = self.terraform_env()
        with Clock() as clock:
            for args in (["init", "-input=false", "-no-color"],
                         ["apply", "-input=false", "-no-color", "-auto-approve"]):
                subprocess.run([str(TERRAFORM), *args], cwd=workdir, env=env, check=True,
                               capture_output=True, stdin=subprocess.DEVNULL)
        return (clock.wall, clock.cpu), workdir

    def bare_destroy(self, workdir: Path) -> None:
        from infrablocks.cloud.local.control import LocalCloud

        cloud = LocalCloud(self.cloud_root)
        for instance in cloud.describe_instances(filters={"tag:environment": "benchbare"}):
            if instance.state not in ("stopped", "terminated"):
                cloud.stop_instance(instance.id, grace=3.0)
        subprocess.run([str(TERRAFORM), "destroy", "-input=false", "-no-color",
                        "-auto-approve"], cwd=workdir, env=self.terraform_env(), check=True,
                       capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(workdir)

    # -- cleanup --------------------------------------------------------------------------------

    def close(self) -> None:
        from infrablocks.cloud.local.control import LocalCloud
        from infrablocks.cloud.local.inventory import purge_every_environment

        try:
            if self.cloud_root.exists():
                cloud = LocalCloud(self.cloud_root)
                purge_every_environment(cloud, grace=3.0)
        finally:
            shutil.rmtree(self.cloud_parent, ignore_errors=True)


class Clock:
    """Wall seconds and CPU seconds of the child processes waited for inside the block."""

    def __enter__(self) -> Clock:
        self._usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = (usage.ru_utime - self._usage.ru_utime) + (usage.ru_stime - self._usage.ru_stime)


def _summary(times: dict[str, list[tuple[float, float]]]) -> dict[str, Any]:
    """Medians, fastest and ratios to ``bare`` (or to the first label), wall and CPU."""
    base = "bare" if "bare" in times else next(iter(times))
    out: dict[str, Any] = {"wall": {}, "cpu": {}}
    for index, kind in enumerate(("wall", "cpu")):
        values = {k: [v[index] for v in runs] for k, runs in times.items()}
        med = {k: statistics.median(v) for k, v in values.items()}
        low = {k: min(v) for k, v in values.items()}
        out[kind] = {"median": {k: round(v, 3) for k, v in med.items()},
                     "fastest": {k: round(v, 3) for k, v in low.items()},
                     "ratio_of_medians": {k: round(med[k] / med[base], 3) for k in med
                                          if k != base},
                     "ratio_of_fastest": {k: round(low[k] / low[base], 3) for k in low
                                          if k != base}}
    return out


def _block_version(bench: Bench, block: str) -> str:
    from infrablocks.registry import load_registry
    from infrablocks.resolve import resolve

    resolution = resolve(load_registry(bench.repo), [block])
    if set(resolution.selected) != {block}:
        raise SystemExit(f"{block} has dependencies; this benchmark takes blocks without any")
    return str(resolution.selected[block].version)


def bench_create(bench: Bench, block: str, repeat: int) -> dict[str, Any]:
    version = _block_version(bench, block)
    labels = list(bench.variants)
    for label in labels:   # warm-up: images, bytecode, caches
        bench.run(label, "create", block, "--env", "bench")
        bench.run(label, "destroy", block, "--env", "bench", "--yes")
    _, workdir = bench.bare_apply(block, version, -1)
    bench.bare_destroy(workdir)
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in ["bare", *labels]}
    order = ["bare", *labels]
    for run in range(repeat):
        shift = run % len(order)
        for which in order[shift:] + order[:shift]:
            if which == "bare":
                measured, workdir = bench.bare_apply(block, version, run)
                bench.bare_destroy(workdir)
            else:
                shutil.rmtree(bench.repo / ".infrablocks" / "work" / "bench",
                              ignore_errors=True)
                measured = bench.run(which, "create", block, "--env", "bench")
                bench.run(which, "destroy", block, "--env", "bench", "--yes")
            times[which].append(measured)
        print(f"  {block} run {run + 1} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
            f"{k} {v[-1][0]:.2f}s (cpu {v[-1][1]:.2f}s)" for k, v in times.items()), flush=True)
    return {"block": f"{block}@{version}", "repeat": repeat,
            "runs": {k: [[round(w, 3), round(c, 3)] for w, c in v] for k, v in times.items()},
            **_summary(times)}


def bench_startup(bench: Bench, repeat: int) -> dict[str, dict[str, Any]]:
    labels = list(bench.variants)
    bench.run(labels[0], "create", TINY, "--env", "bench")   # so outputs / create have it
    for label in labels:
        for args in STARTUP_COMMANDS:
            bench.run(label, *args)   # warm-up
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in range(repeat):
        floor = bench.timed([sys.executable, "-c", "pass"])
        for label in labels:
            results.setdefault("python -c pass", {}).setdefault(label, []).append(floor)
        for args in STARTUP_COMMANDS:
            name = " ".join(args)
            for label in (labels if run % 2 == 0 else labels[::-1]):
                results.setdefault(name, {}).setdefault(label, []).append(
                    bench.run(label, *args))
    bench.run(labels[0], "destroy", TINY, "--env", "bench", "--yes")
    return {name: _summary(by_label) for name, by_label in results.items()}


def _parse_compare(values: list[str]) -> dict[str, Path | None]:
    variants: dict[str, Path | None] = {}
    for value in values:
        label, _, path = value.partition("=")
        tree = Path(path).resolve()
        if not label or not (tree / "tooling" / "infrablocks").is_dir():
            raise SystemExit(f"--compare {value}: expected LABEL=DIR with DIR/tooling/infrablocks")
        variants[label] = tree
    variants["doit"] = None
    return variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", nargs="*", help="create, startup (default: both)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--blocks", nargs="+", default=[TINY, "base"])
    parser.add_argument("--compare", action="append", default=[], metavar="LABEL=DIR")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.what = args.what or ["create", "startup"]
    if unknown := set(args.what) - {"create", "startup"}:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))} (create, startup)")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    document: dict[str, Any] = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="infrablocks-bench-repo-") as tmp:
        bench = Bench(Path(tmp), _parse_compare(args.compare))
        try:
            if "create" in args.what:
                document["create"] = []
                for block in args.blocks:
                    print(f"create: doit create {block} vs terraform init && apply", flush=True)
                    document["create"].append(bench_create(bench, block, args.repeat))
            if "startup" in args.what:
                print("start-up: commands that start no Terraform", flush=True)
                document["startup"] = bench_startup(bench, args.repeat)
        finally:
            bench.close()
    document["load_average_after"] = os.getloadavg()
    _print_tables(document, list(bench.variants))
    if args.json:
        args.json.write_text(json.dumps(document, indent=2) + "\n")


def _print_tables(document: dict[str, Any], labels: list[str]) -> None:
    if "create" in document:
        print("\n| block | | " + " | ".join(f"{label} median / fastest" for label in labels)
              + " | bare median / fastest | "
              + " | ".join(f"{label} ÷ bare (medians / fastest)" for label in labels) + " |")
        print("|---" * (3 + 2 * len(labels)) + "|")
        for entry in document["create"]:
            for kind in ("wall", "cpu"):
                med, fast = entry[kind]["median"], entry[kind]["fastest"]
                ratios_med, ratios_fast = (entry[kind]["ratio_of_medians"],
                                           entry[kind]["ratio_of_fastest"])
                print(f"| {entry['block']} | {kind} s | "
                      + " | ".join(f"{med[k]:.2f} / {fast[k]:.2f}" for k in labels)
                      + f" | {med['bare']:.2f} / {fast['bare']:.2f} | "
                      + " | ".join(f"{ratios_med[k]:.2f} / {ratios_fast[k]:.2f}"
                                   for k in labels) + " |")
    if "startup" in document:
        print("\n| command (no Terraform) | "
              + " | ".join(f"{k} wall median / fastest s | {k} cpu median s" for k in labels)
              + " |")
        print("|---" * (1 + 2 * len(labels)) + "|")
        for name, entry in document["startup"].items():
            print(f"| `{name}` | " + " | ".join(
                f"{entry['wall']['median'][k]:.3f} / {entry['wall']['fastest'][k]:.3f} | "
                f"{entry['cpu']['median'][k]:.3f}" for k in labels) + " |")
    print(f"\nload average before {document['load_average_before']}, "
          f"after {document['load_average_after']}")


if __name__ == "__main__":
    main()
