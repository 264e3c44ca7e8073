"""`doit check`, `doit resolve`, `doit graph`: the block registry's commands.

Thin on purpose: parse arguments, call the library, print. Heavy modules (networkx, resolvelib,
hcl2, rich.tree) are imported inside the functions so `doit list` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from infrablocks.errors import ConfigError, UsageError
from infrablocks.tasks._command import command_task, flag, option, output_file

if TYPE_CHECKING:
    from infrablocks.registry import Environment, Registry

GRAPH_FORMATS = ["tree", "dot", "mermaid", "json", "svg", "png"]
# `doit graph` resolves the whole registry together up to this many blocks.
WHOLE_REGISTRY_RESOLUTION_LIMIT = 300


def task_check() -> dict[str, Any]:
    return command_task(
        "check", _check,
        doc="validate blocks.toml and every block contract (dependency variables vs outputs)")


def task_resolve() -> dict[str, Any]:
    return command_task(
        "resolve", _resolve, positional="targets",
        doc="choose block versions for targets (doit resolve microservice01 [base@1.1.0 ...])",
        params=[option("env", help="environment whose pins apply (default: defaults.environment)"),
                flag("json", help="print the resolution as JSON")])


def task_graph() -> dict[str, Any]:
    return command_task(
        "graph", _graph,
        doc="draw the dependency graph (tree, dot, mermaid, json, svg, png)",
        params=[option("block", help="highlight this block's environment in the whole graph"),
                option("env", help="environment whose pins apply (default: defaults.environment)"),
                option("format", help="tree (default), dot, mermaid, json, svg or png",
                       default="tree", choices=GRAPH_FORMATS),
                output_file("output", help="write to this file instead of the terminal",
                            example="graph.svg")])


def _load() -> Registry:
    from infrablocks.paths import find_repo_root
    from infrablocks.registry import load_registry

    return load_registry(find_repo_root(), freeze_gc=True)  # a short-lived process


def _environment(registry: Registry, env: str | None) -> Environment:
    """The environment, with a note on stderr when it is not declared (no pins apply)."""
    from infrablocks.registry import suggest
    from infrablocks.tasks._console import make_console

    environment = registry.environment(env)
    if environment.name and environment.name not in registry.environments:
        make_console(stderr=True).print(
            f"[yellow]note:[/] environment `{environment.name}` is not declared in blocks.toml: "
            f"no pins apply{suggest(environment.name, registry.environments)}")
    return environment


# check ----------------------------------------------------------------------------------------


def _check() -> int | None:
    from infrablocks.tasks._console import counted, make_console
    from infrablocks.validators import run_validators

    console = make_console()
    registry = _load()
    versions = sum(len(b.versions) for b in registry.blocks.values())
    console.print(f"[green]ok[/] {registry.path.name}: {counted(len(registry.blocks), 'block')}, "
                  f"{counted(versions, 'block version')}, "
                  f"{counted(len(registry.environments), 'environment')}")
    problems: list[str] = []
    for name, outcome in run_validators(registry):
        for line in outcome.info:
            console.print(f"  {line}", markup=False)
        status = "[green]ok[/]" if not outcome.problems else "[red]FAILED[/]"
        console.print(f"{status} {name}" + (f": {counted(len(outcome.problems), 'problem')}"
                                           if outcome.problems else ""))
        problems.extend(f"{name}: {p}" for p in outcome.problems)
    if problems:
        raise ConfigError(f"doit check: {counted(len(problems), 'problem')}", problems=problems)
    console.print("[bold green]all checks passed[/]")
    return None


# resolve --------------------------------------------------------------------------------------


def _resolve(targets: list[str], env: str | None, json: bool) -> int | None:
    import json as json_module

    from infrablocks.graph import dependency_graph, levels, topological_order
    from infrablocks.resolve import resolve
    from infrablocks.tasks._console import make_console

    if not targets:
        raise UsageError("doit resolve: name at least one block, e.g. `doit resolve "
                         "microservice01` or `doit resolve base@1.1.0`")
    registry = _load()
    environment = _environment(registry, env)
    resolution = resolve(registry, targets, environment.pins, environment=environment.name)
    graph = dependency_graph(resolution)
    order, generations = topological_order(graph), levels(graph)
    console = make_console()
    if json:
        document = resolution.to_json()
        document["order"] = order
        document["levels"] = generations
        print(json_module.dumps(document, indent=2))
        return None
    where = [(" in environment ", ""), (environment.name, "bold")] if environment.name else []
    lines = [[("Resolution of ", ""), (", ".join(resolution.targets), "bold"), *where, (":", "")]]
    width = max(len(name) for name in order)
    indent = " " * (width + 5)
    for name in order:
        stateful = [(" ", ""), ("(stateful)", "cyan")] if resolution.stateful.get(name) else []
        lines.append([("  ", ""), (f"{name:<{width}}", "bold"), (" ", ""),
                      (str(resolution.selected[name].version), "green"), *stateful])
        lines.extend([(indent, ""), ("← " + reason, "dim")] for reason in resolution.reasons[name])
    lines.append([("Run order (a block starts as soon as its own dependencies are done):", "")])
    lines.extend([(f"  {index}. " + ", ".join(
        f"{n} {resolution.selected[n].version}" for n in level), "")]
        for index, level in enumerate(generations, 1))
    _print_lines(console, lines)
    return None


def _print_lines(console: Any, lines: list[list[tuple[str, str]]]) -> None:
    """Lines of (text, style) segments: through rich on a terminal, as plain text in one write
    otherwise (rich renders some 10,000 lines a second: seconds for a 10,000-block closure)."""
    import sys

    if console.is_terminal:
        from rich.text import Text

        for segments in lines:
            console.print(Text.assemble(*segments))
        return
    sys.stdout.write("".join("".join(text for text, _ in segments) + "\n" for segments in lines))


# graph ----------------------------------------------------------------------------------------


def _graph(block: str | None, env: str | None, format: str, output: str | None) -> int | None:
    from infrablocks.graph import dependency_graph, highlight, registry_graph, render
    from infrablocks.resolve import ResolutionError, resolve
    from infrablocks.tasks._console import make_console
    from infrablocks.tasks._output_files import write_output_file

    if format not in GRAPH_FORMATS:
        raise UsageError(f"doit graph: unknown format `{format}`: expected one of "
                         f"{', '.join(GRAPH_FORMATS)}")
    registry = _load()
    environment = _environment(registry, env)
    err = make_console(stderr=True)
    if len(registry.blocks) > WHOLE_REGISTRY_RESOLUTION_LIMIT:
        # resolvelib's rounds grow with the square of the blocks: a whole 10,000-block
        # registry would take minutes. Every version is drawn instead (--block still resolves).
        graph = registry_graph(registry)
    else:
        try:
            graph = dependency_graph(resolve(registry, sorted(registry.blocks),
                                             environment.pins, environment=environment.name))
        except ResolutionError as exc:
            err.print(f"[yellow]note:[/] the blocks do not all resolve together "
                      f"({exc.message}); showing every version instead")
            graph = registry_graph(registry)
    title = f"infrablocks ({environment.name})" if environment.name else "infrablocks"
    if env:  # deployed versions and status in that environment
        from infrablocks.deploy.graph_state import annotate_deployments
        from infrablocks.state import backend_from_settings

        annotate_deployments(graph, backend_from_settings(registry.settings.get("state"),
                                                          registry.root), environment.name)
    if block is not None:
        registry.block(block)
        sub = dependency_graph(resolve(registry, [block], environment.pins,
                                       environment=environment.name))
        for name, data in sub.nodes(data=True):  # this environment's versions win
            graph.nodes[name].update(version=data["version"], versions=data["versions"])
        for source, target, data in sub.edges(data=True):
            graph.add_edge(source, target, **data)
        highlight(graph, sub.nodes)
        title = f"{title}: environment of {block}"
    rendered = render(graph, format, title)
    if isinstance(rendered, bytes):
        image = Path(output) if output else _default_image_path(registry.root, format)
        write_output_file(image, rendered)
        make_console().print(f"wrote {image}")
        return None
    if output:
        write_output_file(output, rendered if isinstance(rendered, str)
                          else _plain_text(rendered))
        make_console(stderr=True).print(f"wrote {output}")
        return None
    if isinstance(rendered, str):
        print(rendered, end="")
    else:
        make_console(soft_wrap=False).print(rendered)
    return None


def _default_image_path(root: Path, fmt: str) -> Path:
    from infrablocks.paths import work_dir

    directory = work_dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"graph.{fmt}"


def _plain_text(renderable: Any) -> str:
    import io

    from infrablocks.tasks._console import make_console

    buffer = io.StringIO()  # not a terminal: whole values, however long
    make_console(file=buffer, color_system=None, soft_wrap=False).print(renderable)
    return buffer.getvalue()
