"""Benchmark: load + validate + resolve + order on synthetic registries, and `doit list`.

    .venv/bin/python benchmarks/bench_resolve.py                          # both shapes
    .venv/bin/python benchmarks/bench_resolve.py --shape wide --sizes 1000 3000 10000
    .venv/bin/python benchmarks/bench_resolve.py --baseline /tmp/old      # side by side

Two shapes of registry (``registry_gen``), generated in a temporary directory:

- ``cone`` (``generate``: 10 versions per block, depth 20, fan-in 3, conflicts that force
  backtracking): a deep block's closure is a cone of ~250 blocks whatever the registry size.
  Default sizes 1,000 and 10,000 blocks.
- ``wide`` (``generate_wide``, issue 14: 5 versions per block, 20 layers, each block requiring
  3 random blocks of the layer below, no conflict): a deep block's closure is most of the
  registry. Default sizes 1,000, 3,000 and 10,000 blocks; reported against the closure size.

For each registry, best of ``--repeat`` runs:

- ``end to end``: a fresh ``python`` process that imports infrablocks, loads and validates
  blocks.toml, resolves the deepest block and computes its run order and levels (what
  ``doit resolve`` does, minus printing). Measured with the parse cache warm (blocks.toml
  unchanged since the last run, the usual case) and, for ``cone``, cold (right after an edit:
  .infrablocks/cache removed);
- ``doit resolve``: the command itself in a fresh process, its output read through a pipe; for
  ``wide`` also every block of the registry at once (``doit resolve`` with all names);
- the same phases in-process (load+validate, resolve, order), which search settled it
  (``newest-first`` or ``resolvelib``), how many candidates resolvelib rejected and how often it
  backtracked.

``--baseline DIR``: DIR holds an older source tree (its ``tooling/``, e.g. from ``git archive
OLD tooling | tar -x -C DIR``); every fresh-process figure is then also measured with it,
alternating with the current tree in the same run, and reported as a ratio. A baseline run that
fails (a ResolutionError, e.g. the old 60 s bound) is reported as such with its time.

Wall-clock minima: the machine is shared, so the minimum is the least disturbed run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from benchmarks.registry_gen import deep_target, generate, generate_wide  # noqa: E402

DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'

END_TO_END = """
import sys, time
started = time.perf_counter()
from pathlib import Path
from infrablocks.registry import load_registry
from infrablocks.resolve import resolve
from infrablocks.graph import dependency_graph, levels, topological_order
registry = load_registry(Path(sys.argv[1]), freeze_gc=True)  # as the doit commands do
resolution = resolve(registry, [sys.argv[2]])
graph = dependency_graph(resolution)
order, generations = topological_order(graph), levels(graph)
print(len(resolution.selected), len(generations), time.perf_counter() - started)
"""


@dataclass
class Run:
    """A fresh-process measurement: best wall seconds, or the failure of every attempt."""

    wall: float
    ok: bool
    cpu: float = 0.0
    stdout: str = ""
    error: str = ""

    def show(self) -> str:
        if self.ok:
            return f"{self.wall:.3f} s ({self.cpu:.3f} s CPU)"
        return f"failed after {self.wall:.1f} s ({self.error})"


def run_process(argv: list[str], *, cwd: Path | None = None, baseline: Path | None = None,
                timeout: float = 600) -> Run:
    env = dict(os.environ)
    env.pop("INFRABLOCKS_REPO", None)
    if baseline is not None:
        env["PYTHONPATH"] = str(baseline / "tooling")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                             timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Run(time.perf_counter() - started, False, error=f"timeout {timeout:g} s")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or [f"exit {out.returncode}"]
        said = next((line for line in lines if line.startswith("error:")), lines[-1])
        return Run(wall, False, cpu, error=said[:200])
    return Run(wall, True, cpu, stdout=out.stdout)


def best_of(runs: list[Run]) -> Run:
    good = [r for r in runs if r.ok]
    return min(good, key=lambda r: r.wall) if good else min(runs, key=lambda r: r.wall)


def side_by_side(argv: list[str], repeat: int, baseline: Path | None, *,
                 cwd: Path | None = None, before_each: object = None,
                 baseline_repeat: int = 1, timeout: float = 600) -> tuple[Run, Run | None]:
    """Best of ``repeat`` runs of the current tree and, alternating, of the baseline."""
    ours: list[Run] = []
    theirs: list[Run] = []
    for index in range(repeat):
        if callable(before_each):
            before_each()
        ours.append(run_process(argv, cwd=cwd, timeout=timeout))
        if baseline is not None and index < baseline_repeat:
            if callable(before_each):
                before_each()
            theirs.append(run_process(argv, cwd=cwd, baseline=baseline, timeout=timeout))
    return best_of(ours), (best_of(theirs) if theirs else None)


def ratio(ours: Run, theirs: Run | None) -> str:
    if theirs is None:
        return ""
    if not theirs.ok:
        return f"; before: {theirs.show()}" + (
            f" (≥ {theirs.wall / ours.wall:.0f}x)" if ours.ok else "")
    return f"; before: {theirs.show()}, ratio before/after {theirs.wall / ours.wall:.2f}"


def measure_phases(root: Path, targets: list[str], repeat: int) -> dict[str, object]:
    from resolvelib import BaseReporter

    from infrablocks.graph import dependency_graph, levels, topological_order
    from infrablocks.registry import load_registry
    from infrablocks.resolve import resolve

    class Counting(BaseReporter):  # type: ignore[misc]
        def __init__(self) -> None:
            self.rejected = 0
            self.backtracks = 0

        def rejecting_candidate(self, criterion, candidate):  # noqa: ANN001
            self.rejected += 1

        def resolving_conflicts(self, causes):  # noqa: ANN001
            self.backtracks += 1

    phases: dict[str, list[float]] = {"load": [], "resolve": [], "order": []}
    result: dict[str, object] = {}
    for _ in range(repeat):
        counting = Counting()
        started = time.perf_counter()
        registry = load_registry(root)
        loaded = time.perf_counter()
        resolution = resolve(registry, targets, reporter=counting)
        resolved = time.perf_counter()
        graph = dependency_graph(resolution)
        topological_order(graph)
        generations = levels(graph)
        ordered = time.perf_counter()
        phases["load"].append(loaded - started)
        phases["resolve"].append(resolved - loaded)
        phases["order"].append(ordered - resolved)
        result.update(rejected=counting.rejected, backtracks=counting.backtracks,
                      search=resolution.search, closure=len(resolution.selected),
                      depth=len(generations))
    result.update({name: min(values) for name, values in phases.items()})
    return result


def bench_cone(tmp: Path, sizes: list[int], repeat: int, baseline: Path | None) -> None:
    print("== cone: closures of ~250 blocks, with conflicts (registry_gen.generate) ==")
    for size in sizes:
        root = tmp / f"cone{size}"
        generate(root, blocks=size)
        target = deep_target(size)
        size_mb = (root / "blocks.toml").stat().st_size / 1e6
        script = [sys.executable, "-c", END_TO_END, str(root), target]

        def cold(root: Path = root) -> None:
            shutil.rmtree(root / ".infrablocks" / "cache", ignore_errors=True)

        cold_run, cold_base = side_by_side(script, repeat, baseline, before_each=cold,
                                           baseline_repeat=repeat)
        warm, warm_base = side_by_side(script, repeat, baseline, baseline_repeat=repeat)
        phases = measure_phases(root, [target], repeat)
        print(f"{size:>6} blocks ({size * 10} versions, blocks.toml {size_mb:.1f} MB), "
              f"target {target}: closure {phases['closure']} blocks in {phases['depth']} "
              f"levels, settled by {phases['search']}")
        print(f"       end to end (fresh process) {warm.show()}{ratio(warm, warm_base)}")
        print(f"       right after an edit of blocks.toml {cold_run.show()}"
              f"{ratio(cold_run, cold_base)}")
        print(f"       in-process: load+validate {phases['load']:.3f} s, resolve "
              f"{phases['resolve']:.3f} s, order {phases['order']:.3f} s; "
              f"{phases['rejected']} candidates rejected, {phases['backtracks']} backjumps")


def bench_wide(tmp: Path, sizes: list[int], repeat: int, baseline: Path | None,
               baseline_repeat: int, timeout: float) -> None:
    print("== wide: closure ≈ registry, no conflict (registry_gen.generate_wide) ==")
    rows = []
    for size in sizes:
        root = tmp / f"wide{size}"
        generate_wide(root, blocks=size)
        (root / "dodo.py").write_text(DODO, encoding="utf-8")
        target = deep_target(size)
        everything = sorted(line[len("[blocks."):-1] for line in
                            (root / "blocks.toml").read_text().splitlines()
                            if line.startswith("[blocks.") and line.count(".") == 1)
        size_mb = (root / "blocks.toml").stat().st_size / 1e6
        run_process([sys.executable, "-c", END_TO_END, str(root), target])  # warm the caches
        script, script_base = side_by_side(
            [sys.executable, "-c", END_TO_END, str(root), target], repeat, baseline,
            baseline_repeat=baseline_repeat, timeout=timeout)
        deep, deep_base = side_by_side([str(DOIT), "resolve", target], repeat, baseline,
                                       cwd=root, baseline_repeat=baseline_repeat,
                                       timeout=timeout)
        whole, whole_base = side_by_side([str(DOIT), "resolve", *everything], repeat, baseline,
                                         cwd=root, baseline_repeat=baseline_repeat,
                                         timeout=timeout)
        phases = measure_phases(root, [target], repeat)
        all_phases = measure_phases(root, everything, repeat)
        rows.append((size, phases["closure"], deep))
        print(f"{size:>6} blocks ({size * 5} versions, blocks.toml {size_mb:.1f} MB), target "
              f"{target}: closure {phases['closure']} blocks in {phases['depth']} levels, "
              f"settled by {phases['search']}")
        print(f"       end to end, resolution only (fresh process) {script.show()}"
              f"{ratio(script, script_base)}")
        print(f"       `doit resolve {target}` {deep.show()}{ratio(deep, deep_base)}")
        print(f"       `doit resolve` of all {size} blocks {whole.show()}"
              f"{ratio(whole, whole_base)}")
        print(f"       in-process, deep target: load+validate {phases['load']:.3f} s, resolve "
              f"{phases['resolve']:.3f} s, order {phases['order']:.3f} s; all blocks: resolve "
              f"{all_phases['resolve']:.3f} s ({all_phases['search']}), order "
              f"{all_phases['order']:.3f} s")
    if len(rows) >= 2:
        (small, c_small, t_small), (large, c_large, t_large) = rows[0], rows[-1]
        if t_small.ok and t_large.ok:
            print(f"       `doit resolve` time ratio {large}/{small} blocks: "
                  f"{t_large.wall / t_small.wall:.1f} for a closure {c_large}/{c_small} = "
                  f"{int(c_large) / int(c_small):.1f}x larger")  # type: ignore[call-overload]


def measure_doit_list(repeat: int) -> float:
    return best_of([run_process([str(DOIT), "list"], cwd=REPO) for _ in range(repeat)]).wall


def main() -> None:
    parser = argparse.ArgumentParser(description="resolution benchmark")
    parser.add_argument("--shape", choices=["cone", "wide", "both"], default="both")
    parser.add_argument("--sizes", type=int, nargs="+",
                        help="registry sizes in blocks (cone: 1000 10000; wide: 1000 3000 "
                             "10000)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline", type=Path,
                        help="an older source tree (with tooling/) to measure side by side")
    parser.add_argument("--baseline-repeat", type=int, default=1,
                        help="runs of the baseline per wide-shape figure (its 10k runs take "
                             "its 60 s bound each); the cone shape uses --repeat")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()
    baseline = args.baseline.resolve() if args.baseline else None
    if baseline is not None and not (baseline / "tooling" / "infrablocks").is_dir():
        parser.error(f"--baseline {baseline}: no tooling/infrablocks there")
    with tempfile.TemporaryDirectory(prefix="infrablocks-bench-") as tmp:
        if args.shape in ("cone", "both"):
            bench_cone(Path(tmp), args.sizes or [1000, 10_000], args.repeat, baseline)
        if args.shape in ("wide", "both"):
            bench_wide(Path(tmp), args.sizes or [1000, 3000, 10_000], args.repeat,
                       baseline, args.baseline_repeat, args.timeout)
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"doit list (example repo): {measure_doit_list(args.repeat):.3f} s")


if __name__ == "__main__":
    main()
