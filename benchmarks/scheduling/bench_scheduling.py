"""Scheduling efficiency of the DAG runner: wall time ÷ critical-path time, eager vs level by level.

Every node does nothing but wait a known time, so any wall time beyond the critical path (the
longest chain of node durations) is scheduling loss. Two schedulers run the same graphs:

- eager: ``infrablocks.runner.run_dag`` — a node starts as soon as its dependencies are done;
- level by level: the same runner on one topological generation at a time (each generation
  waits for the slowest node of the previous one), the obvious simpler design.

Two kinds of nodes:

- ``sleep``: the work function sleeps (larger synthetic graphs: wide, deep, layered);
- ``terraform``: each node is a real Terraform root module (``terraform_data`` + ``local-exec``
  sleep) applied with the real driver and a local state backend (the block graph of the example
  monorepo). ``init`` runs before timing; the node time is the whole ``terraform apply``.

The critical path is computed from the *measured* node durations of that very run (so Terraform's
own start-up time counts as node work, not as scheduling loss), and also shown from the nominal
sleeps. With a bounded ``--jobs`` the critical path may be out of reach; the report then also
gives the lower bound max(critical path, total work ÷ jobs).

    .venv/bin/python benchmarks/scheduling/bench_scheduling.py            # all, ~2 min
    .venv/bin/python benchmarks/scheduling/bench_scheduling.py --quick    # smaller, ~30 s
    .venv/bin/python benchmarks/scheduling/bench_scheduling.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from infrablocks.runner import CancelToken, Result, RunReport, run_dag

# -- graphs ---------------------------------------------------------------------------------------


def wide_graph(width: int, depth: int, rng: random.Random, scale: float) -> nx.DiGraph:
    """``width`` independent chains of ``depth`` nodes — wide and shallow."""
    graph = nx.DiGraph()
    for chain in range(width):
        previous = None
        for level in range(depth):
            node = f"w{chain:02d}-{level}"
            graph.add_node(node, seconds=round(rng.uniform(0.1, 1.0) * scale, 3))
            if previous:
                graph.add_edge(previous, node)
            previous = node
    return graph


def deep_graph(chains: int, depth: int, rng: random.Random, scale: float) -> nx.DiGraph:
    """A few long chains with occasional cross links — deep and narrow."""
    graph = nx.DiGraph()
    for chain in range(chains):
        for level in range(depth):
            node = f"d{chain}-{level:02d}"
            graph.add_node(node, seconds=round(rng.uniform(0.05, 0.5) * scale, 3))
            if level:
                graph.add_edge(f"d{chain}-{level - 1:02d}", node)
                if chain and rng.random() < 0.25:
                    graph.add_edge(f"d{chain - 1}-{level - 1:02d}", node)
    return graph


def layered_graph(nodes: int, layers: int, rng: random.Random, scale: float) -> nx.DiGraph:
    """Random layered DAG: each node needs 1–2 nodes of the previous layer (like a registry)."""
    graph = nx.DiGraph()
    per_layer = max(1, nodes // layers)
    previous: list[str] = []
    for layer in range(layers):
        current = [f"l{layer}-{i:02d}" for i in range(per_layer)]
        for node in current:
            graph.add_node(node, seconds=round(rng.uniform(0.1, 1.0) * scale, 3))
            for dependency in rng.sample(previous, min(len(previous), rng.randint(1, 2))):
                graph.add_edge(dependency, node)
        previous = current
    return graph


def monorepo_graph(scale: float) -> nx.DiGraph:
    """The example monorepo's blocks with sleeps in the spirit of their real create times."""
    graph = nx.DiGraph([("base", "nomad"), ("base", "stolon"), ("nomad", "microservice01"),
                        ("stolon", "microservice01"), ("nomad", "microservice02")])
    for node, seconds in {"base": 2.0, "nomad": 1.0, "stolon": 3.0, "microservice01": 1.0,
                          "microservice02": 3.0}.items():
        graph.nodes[node]["seconds"] = seconds * scale
    return graph


# -- measuring ------------------------------------------------------------------------------------


def critical_path(graph: nx.DiGraph, seconds: dict[Hashable, float]) -> float:
    finish: dict[Hashable, float] = {}
    for node in nx.topological_sort(graph):
        finish[node] = seconds[node] + max((finish[p] for p in graph.predecessors(node)),
                                           default=0.0)
    return max(finish.values(), default=0.0)


def run_level_by_level(graph: nx.DiGraph, work: Callable, jobs: int) -> tuple[float, dict]:
    durations: dict[Hashable, float] = {}
    start = time.monotonic()
    for generation in nx.topological_generations(graph):
        level = nx.DiGraph()
        level.add_nodes_from(generation)
        report = run_dag(level, work, jobs=jobs, handle_signals=False)
        _check(report)
        durations.update({n: r.duration or 0.0 for n, r in report.nodes.items()})
    return time.monotonic() - start, durations


def run_eager(graph: nx.DiGraph, work: Callable, jobs: int) -> tuple[float, dict]:
    report = run_dag(graph, work, jobs=jobs, handle_signals=False)
    _check(report)
    return report.wall, {n: r.duration or 0.0 for n, r in report.nodes.items()}


def _check(report: RunReport) -> None:
    if not report.ok:
        failed = {str(n): r.error for n, r in report.nodes.items() if r.error}
        raise SystemExit(f"benchmark run failed: {failed}")


@dataclass
class Row:
    graph: str
    nodes: int
    kind: str
    jobs: int
    scheduler: str
    wall: float
    critical_path: float       # from measured node durations
    nominal_critical_path: float
    lower_bound: float         # max(critical path, total work / jobs)

    @property
    def ratio(self) -> float:
        return self.wall / self.critical_path

    @property
    def ratio_to_bound(self) -> float:
        return self.wall / self.lower_bound

    def to_json(self) -> dict:
        return {**self.__dict__, "wall_over_critical_path": round(self.ratio, 3),
                "wall_over_lower_bound": round(self.ratio_to_bound, 3)}


def measure(name: str, graph: nx.DiGraph, kind: str, work: Callable, jobs: int) -> list[Row]:
    nominal = critical_path(graph, {n: graph.nodes[n]["seconds"] for n in graph})
    rows = []
    for scheduler, runner in (("eager", run_eager), ("level-by-level", run_level_by_level)):
        wall, durations = runner(graph, work, jobs)
        path = critical_path(graph, durations)
        bound = max(path, sum(durations.values()) / jobs)
        rows.append(Row(name, graph.number_of_nodes(), kind, jobs, scheduler, wall, path,
                        nominal, bound))
        print(f"  {name:<22} jobs={jobs:<3} {scheduler:<15} wall {wall:6.2f}s  "
              f"critical path {path:6.2f}s  ratio {wall / path:5.2f}  "
              f"(vs bound {wall / bound:5.2f})", flush=True)
    return rows


def sleep_work(graph: nx.DiGraph) -> Callable:
    def work(node: Hashable, token: CancelToken) -> Result:
        token.wait(graph.nodes[node]["seconds"])  # a sleep that a cancel would cut short
        return Result.success()
    return work


# -- real Terraform -------------------------------------------------------------------------------

MODULE = """
variable "environment" { type = string }
variable "seconds" { type = string }
resource "terraform_data" "work" {
  input = var.seconds
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}
output "done" { value = terraform_data.work.id }
"""


class TerraformNodes:
    """One real Terraform root module per node, initialised up front; work = apply."""

    def __init__(self, graph: nx.DiGraph, root: Path) -> None:
        from infrablocks.state.local import LocalBackend
        from infrablocks.terraform.binary import find_terraform
        from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config
        from infrablocks.terraform.driver import Terraform
        from infrablocks.terraform.workdir import prepare_workdir

        self.graph = graph
        source = root / "blocks" / "sleeper" / "1.0.0"
        source.mkdir(parents=True)
        (source / "main.tf").write_text(MODULE)
        config = write_cli_config(CliConfigPaths.under(root / "terraform"),
                                  populate_mirror=False)
        self.terraform = Terraform(find_terraform(environ={}), config, root / "logs")
        self.backend = LocalBackend(root / "state")
        self.workdirs: dict[Hashable, Path] = {}
        for node in graph:
            workdir = prepare_workdir(root / "work", "bench", str(node), source,
                                      self.backend.terraform_backend("bench", str(node)),
                                      {"environment": "bench",
                                       "seconds": str(graph.nodes[node]["seconds"])})
            self.terraform.for_deployment("bench", str(node)).init(workdir)
            self.workdirs[node] = workdir

    def work(self, node: Hashable, token: CancelToken) -> Result:
        driver = self.terraform.for_deployment("bench", str(node))
        with token.on_cancel(driver.stop):
            driver.apply(self.workdirs[node], replace=["terraform_data.work"])
        return Result.success()


# -- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller graphs, shorter sleeps")
    parser.add_argument("--no-terraform", action="store_true", help="skip the real-Terraform part")
    parser.add_argument("--json", type=Path, help="write the rows as JSON here")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    scale = 0.5 if args.quick else 1.0
    rows: list[Row] = []
    graphs = [
        ("wide: 16 chains × 3", wide_graph(16, 3, rng, scale), [16, 4]),
        ("deep: 4 chains × 12", deep_graph(4, 12, rng, scale), [4, 2]),
        ("layered: 48 in 6", layered_graph(48, 6, rng, scale), [8, 4]),
    ]
    if args.quick:
        graphs = [(n, g, j[:1]) for n, g, j in graphs]
    print("plain sleeps:", flush=True)
    for name, graph, job_counts in graphs:
        for jobs in job_counts:
            rows += measure(name, graph, "sleep", sleep_work(graph), jobs)

    if not args.no_terraform:
        print("real Terraform (terraform_data + local-exec sleep):", flush=True)
        graph = monorepo_graph(0.5 if args.quick else 1.0)
        root = Path(tempfile.mkdtemp(prefix="infrablocks-bench-"))
        try:
            nodes = TerraformNodes(graph, root)
            rows += measure("monorepo (5 blocks)", graph, "terraform", nodes.work, 4)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    if args.json:
        args.json.write_text(json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    print("\n| graph | nodes | work | jobs | scheduler | wall s | critical path s (nominal) | "
          "wall ÷ critical path | wall ÷ max(cp, work/jobs) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.graph} | {r.nodes} | {r.kind} | {r.jobs} | {r.scheduler} | {r.wall:.2f} | "
              f"{r.critical_path:.2f} ({r.nominal_critical_path:.2f}) | {r.ratio:.2f} | "
              f"{r.ratio_to_bound:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
