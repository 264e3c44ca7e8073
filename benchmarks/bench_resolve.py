"""Benchmark: load + validate + resolve + order on synthetic registries, and `doit list`.

    .venv/bin/python benchmarks/bench_resolve.py              # 1,000 and 10,000 blocks
    .venv/bin/python benchmarks/bench_resolve.py --sizes 1000 --repeat 3

For each size it generates a registry (``registry_gen.generate``: 10 versions per block, depth
20, fan-in 3, conflicts that force backtracking) in a temporary directory and measures, best of
``--repeat`` runs:

- ``end to end``: a fresh ``python`` process that imports infrablocks, loads and validates
  blocks.toml, resolves the deepest block and computes its run order and levels (what
  ``doit resolve`` does, minus printing): the figure the targets are about. Measured with
  the parse cache warm (blocks.toml unchanged since the last run, the usual case) and cold
  (right after an edit: .infrablocks/cache removed, the TOML parsed and the block
  directories listed again);
- the same phases in-process (load+validate, resolve, order), to see where time goes;
- how many candidates the resolver rejected and how often it backtracked.

and `doit list` start-up in the example repository. Wall-clock minima: the machine is shared, so
the minimum is the least disturbed run. Targets: 10,000 blocks < 1 s end to end, 10k/1k ≤ 12,
`doit list` < 0.5 s.
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from registry_gen import deep_target, generate  # noqa: E402

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


def best(values: list[float]) -> float:
    return min(values)


def measure_end_to_end(root: Path, target: str, repeat: int,
                       cold: bool = False) -> tuple[float, float, float, int, int]:
    """Best (wall seconds of the whole process, in-script seconds, CPU seconds), closure size
    and number of levels.

    ``cold``: remove the parse cache (.infrablocks/cache) before each run, as after an edit
    of blocks.toml.
    """
    walls, inner, cpu = [], [], []
    closure = depth = 0
    for _ in range(repeat):
        if cold:
            shutil.rmtree(root / ".infrablocks" / "cache", ignore_errors=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", END_TO_END, str(root), target],
                             capture_output=True, text=True, check=True)
        walls.append(time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        closure_s, depth_s, seconds = out.stdout.split()
        closure, depth = int(closure_s), int(depth_s)
        inner.append(float(seconds))
    return best(walls), best(inner), best(cpu), closure, depth


def measure_phases(root: Path, target: str, repeat: int) -> dict[str, float | int]:
    from resolvelib import BaseReporter

    import infrablocks.resolve as resolve_module
    from infrablocks.graph import dependency_graph, levels, topological_order
    from infrablocks.registry import load_registry

    class Counting(BaseReporter):
        def __init__(self) -> None:
            self.rejected = 0
            self.backtracks = 0

        def rejecting_candidate(self, criterion, candidate):  # noqa: ANN001
            self.rejected += 1

        def resolving_conflicts(self, causes):  # noqa: ANN001
            self.backtracks += 1

    counting = Counting()
    phases: dict[str, list[float]] = {"load": [], "resolve": [], "order": []}
    for _ in range(repeat):
        started = time.perf_counter()
        registry = load_registry(root)
        loaded = time.perf_counter()
        resolution = resolve_module.resolve(registry, [target], reporter=counting)
        resolved = time.perf_counter()
        graph = dependency_graph(resolution)
        topological_order(graph)
        levels(graph)
        ordered = time.perf_counter()
        phases["load"].append(loaded - started)
        phases["resolve"].append(resolved - loaded)
        phases["order"].append(ordered - resolved)
    result: dict[str, float | int] = {name: best(values) for name, values in phases.items()}
    result["rejected"] = counting.rejected // repeat
    result["backtracks"] = counting.backtracks // repeat
    return result


def measure_doit_list(repeat: int) -> float:
    doit = REPO / ".venv" / "bin" / "doit"
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([str(doit), "list"], cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return best(times)


def main() -> None:
    parser = argparse.ArgumentParser(description="resolution benchmark")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="infrablocks-bench-") as tmp:
        for size in args.sizes:
            root = Path(tmp) / f"r{size}"
            generate(root, blocks=size)
            target = deep_target(size)
            size_mb = (root / "blocks.toml").stat().st_size / 1e6
            cold, _, _, _, _ = measure_end_to_end(root, target, args.repeat, cold=True)
            wall, inner, cpu, closure, depth = measure_end_to_end(root, target, args.repeat)
            phases = measure_phases(root, target, args.repeat)
            rows.append((size, wall))
            print(f"{size:>6} blocks ({size * 10} versions, blocks.toml {size_mb:.1f} MB), "
                  f"target {target}: closure {closure} blocks in {depth} levels")
            print(f"       end to end (fresh process) {wall:.3f} s wall, {cpu:.3f} s CPU "
                  f"(in-script {inner:.3f} s); right after an edit of blocks.toml "
                  f"{cold:.3f} s")
            print(f"       in-process: load+validate {phases['load']:.3f} s, "
                  f"resolve {phases['resolve']:.3f} s, order {phases['order']:.3f} s; "
                  f"{phases['rejected']} candidates rejected, "
                  f"{phases['backtracks']} backjumps")
    print(f"load average during the run: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if len(rows) >= 2:
        (small, t_small), (large, t_large) = rows[0], rows[-1]
        print(f"ratio {large}/{small}: {t_large / t_small:.1f}")
    print(f"doit list (example repo): {measure_doit_list(args.repeat):.3f} s")


if __name__ == "__main__":
    main()
