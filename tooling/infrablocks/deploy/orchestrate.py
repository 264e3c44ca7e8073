"""Environment-level operations: create, destroy, and the throwaway test environment (the plan
of an environment is :func:`infrablocks.planning.crossplan.plan_environment`).

Each resolves what the environment needs, turns it into a dependency DAG and hands the DAG to
the runner with the per-block work functions of :mod:`infrablocks.deploy.block_ops`.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.deploy.block_ops import BlockRun, apply_block, destroy_block
from infrablocks.environments import is_ephemeral
from infrablocks.errors import ConfigError, InfrablocksError, UsageError
from infrablocks.runner import CancelToken, Dag, Result, RunEvent, RunReport, run_dag
from infrablocks.state.locks import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    import networkx as nx

    from infrablocks.deploy.blocktests import BlockTestResult
    from infrablocks.deploy.preview import CreatePreview
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.registry import BlockVersion
    from infrablocks.resolve import Resolution

EventSink = Callable[[RunEvent], None]


def resolve_for_environment(workspace: Workspace, targets: list[str],
                            environment: str) -> Resolution:
    """Resolve ``targets`` with the environment's pins, preferring what is already deployed.

    A conflict (e.g. a pin that no longer fits a requirement) is a blocks.toml problem the user
    fixes, so it is a :class:`ConfigError` (exit 2) here.
    """
    from infrablocks.resolve import ResolutionError, resolve

    try:
        resolution = resolve(workspace.registry, targets, workspace.pins(environment),
                             prefer=workspace.deployed_versions(environment),
                             environment=environment)
    except ResolutionError as exc:
        raise ConfigError(exc.message, hint=exc.hint) from None
    check_rolling_declarations(workspace, environment, resolution.selected.values())
    return resolution


def check_rolling_declarations(workspace: Workspace, environment: str,
                               versions: Iterable[BlockVersion]) -> None:
    """Before create or plan: each stateful version's rolling declaration on the environment's
    platform is valid and names resources of its module there; ConfigError with file, line and
    key otherwise — the message ``doit check`` and ``doit upgrade`` give
    (``rolling.declaration.declaration_for``)."""
    from infrablocks.rolling.declaration import declaration_for

    registry = workspace.registry
    for version in versions:
        if registry.blocks[version.block].stateful:
            declaration_for(registry, version, workspace.platform(environment).name,
                            module=workspace.block_module(environment, version))


def check_auto_create(workspace: Workspace, resolution: Resolution, environment: str) -> None:
    """UsageError when an environment with ``auto_create = false`` lacks a dependency."""
    declared = workspace.registry.environments.get(environment)
    if declared is None or declared.extra.get("auto_create", True):
        return
    deployed = workspace.deployed_versions(environment)
    missing = [name for name in resolution.selected
               if name not in resolution.targets and name not in deployed]
    if missing:
        raise UsageError(
            f"environment {environment} has auto_create = false and these dependencies are not "
            f"deployed there: {', '.join(missing)}",
            hint=f"create them explicitly: doit create {' '.join(missing)} --env {environment}")


def create(workspace: Workspace, targets: list[str], environment: str, *, jobs: int = 4,
           keep_going: bool = False, on_event: EventSink | None = None,
           token: CancelToken | None = None,
           confirm: Callable[[CreatePreview], bool] | None = None,
           lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> tuple[Resolution, RunReport | None]:
    """Converge everything ``targets`` need in ``environment``, dependencies first.

    Each block is decided from what Terraform would do (``block_ops.apply_block``). The
    deployed dependents of the blocks in the run (from the deployment records) join the run:
    each is re-applied at its deployed version when its inputs changed, so that a change of
    outputs reaches them in the same run, transitively.

    A persistent environment's edited released or deployed versions are refused before
    anything runs (``release.frozen.refuse_edited``). ``confirm`` is shown the plan of every
    deployed block first (``deploy.preview``; the plans are reused by the run) and may refuse:
    the run report is None then.
    """
    from infrablocks.release.frozen import refuse_edited

    resolution = resolve_for_environment(workspace, targets, environment)
    check_auto_create(workspace, resolution, environment)
    refuse_edited(workspace.registry, workspace.backend, environment,
                  resolution.selected.values())
    refuse_sensitive_leaks(workspace, resolution)
    # images an apply would not make (AWS: AMIs): named before anything is made
    workspace.platform(environment).check_images(sorted(
        {image for version in resolution.selected.values() for image in version.images}))
    # a refused create leaves nothing behind, not even the subnet claim it made for the preview
    untouched = confirm is not None and not workspace.backend.list_blocks(environment) \
        and environment not in workspace.subnets.allocations()
    graph, runs, outside = create_graph(workspace, resolution, environment)
    planned: dict[str, Any] = {}
    if confirm is not None:
        from infrablocks.deploy.preview import preview_create

        preview = preview_create(workspace, environment, graph, runs, outside,
                                 jobs=jobs, lock_timeout=lock_timeout, token=token)
        planned = preview.planned
        accepted = False
        try:   # refused: by an answer, or by an error (no terminal to ask on)
            accepted = confirm(preview)
        finally:
            if not accepted and untouched:
                _forget_environment(workspace, environment)
        if not accepted:
            return resolution, None
    changed: set[str] = set()
    changed_lock = threading.Lock()

    def work(node: Any, tok: CancelToken) -> Result:
        with changed_lock:
            upstream = frozenset(changed)
        result = apply_block(runs[node], tok, lock_timeout=lock_timeout,
                             planned=planned.get(node), only_if_stale=node in outside,
                             changed_upstream=upstream)
        if result.detail.get("outputs_changed"):
            with changed_lock:
                changed.add(node)
        return result

    report = run_dag(graph, work, jobs=jobs, keep_going=keep_going, on_event=on_event,
                     token=token)
    return resolution, report


def create_graph(workspace: Workspace, resolution: Resolution, environment: str
                 ) -> tuple[Dag, dict[str, BlockRun], set[str]]:
    """The DAG `create` runs: the resolution, plus the deployed dependents of its blocks that
    are not in it (``outside``: re-applied only when their inputs changed), with edges from
    blocks.toml and from the deployment records. Each node's ``BlockRun``. (The runner's own
    ``Dag``: networkx is not worth its import here.)"""
    from infrablocks.deploy.sources import version_for_record

    subnet = workspace.subnet(environment, claim=True)
    dependencies: dict[str, set[str]] = {name: set(version.requires)
                                         for name, version in resolution.selected.items()}
    runs = {name: BlockRun(workspace, environment, version, subnet)
            for name, version in resolution.selected.items()}
    deployed = deployed_dependencies(workspace, environment)
    dependents: dict[str, set[str]] = {}
    for block, deps in deployed.items():
        for dependency in deps:
            dependents.setdefault(dependency, set()).add(block)
    outside: set[str] = set()
    frontier = [name for name in resolution.selected if name in deployed]
    while frontier:                      # every deployed descendant of a block in the run
        for dependent in dependents.get(frontier.pop(), ()):
            if dependent not in outside and dependent not in runs:
                outside.add(dependent)
                frontier.append(dependent)
    for name in sorted(outside):
        record = workspace.backend.get_record(environment, name)
        if record is None:   # state without a record: nothing to re-apply it with
            continue
        version, _ = version_for_record(workspace, environment, record)
        runs[name] = BlockRun(workspace, environment, version, subnet)
    outside &= set(runs)
    for name in outside:
        dependencies[name] = {d for d in deployed[name] if d in runs}
    return Dag({name: sorted(dependencies[name]) for name in runs}), runs, outside


def refuse_sensitive_leaks(workspace: Workspace, resolution: Resolution) -> None:
    """Before anything is applied: no variable may receive a sensitive output without being
    sensitive (from the declarations; ``BlockRun.inputs`` checks the state again per block)."""
    from infrablocks.contracts import refuse_sensitive_leaks as refuse
    from infrablocks.contracts import resolution_pairs
    from infrablocks.paths import work_dir

    refuse(resolution_pairs(resolution), work_dir(workspace.repo_root) / "cache" / "modules")


def deployed_dependencies(workspace: Workspace, environment: str) -> dict[str, set[str]]:
    """Each block deployed in ``environment`` (a record or a state) → the deployed blocks it
    depends on: those its record says it was applied with, together with those blocks.toml
    declares for its version (when it still does). A deployed dependent whose version has left
    blocks.toml still protects what it was applied against."""
    from infrablocks.deploy.sources import SOURCE_DOCUMENT

    backend = workspace.backend
    records = {r.block: r for r in backend.list_records(environment)}
    blocks = sorted(set(records) | set(backend.list_blocks(environment)))
    found: dict[str, set[str]] = {block: set() for block in blocks}
    for block, record in records.items():
        requires = set(record.applied_requires or {})
        try:
            requires |= set(workspace.registry.block_version(block, record.version).requires)
        except UsageError:   # a version removed from blocks.toml: the code kept with it
            if record.applied_requires is None:
                source = backend.get_document(environment, block, SOURCE_DOCUMENT) or {}
                requires |= set(source.get("requires") or {})
        found[block] = {d for d in requires if d in found and d != block}
    return found


def deployed_graph(workspace: Workspace, environment: str) -> nx.DiGraph[str]:
    """Dependency DAG of what is deployed in ``environment`` (edge dependency → dependent),
    from :func:`deployed_dependencies`."""
    import networkx as nx

    graph: nx.DiGraph[str] = nx.DiGraph()
    dependencies = deployed_dependencies(workspace, environment)
    graph.add_nodes_from(dependencies)
    for block, deps in dependencies.items():
        graph.add_edges_from((dependency, block) for dependency in deps)
    return graph


def destroy(workspace: Workspace, targets: list[str], environment: str, *,
            with_dependents: bool = False, jobs: int = 4, keep_going: bool = False,
            on_event: EventSink | None = None, token: CancelToken | None = None,
            confirm: Callable[[list[str]], bool] | None = None,
            lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> RunReport | None:
    """Destroy ``targets`` (and, with ``with_dependents``, what depends on them), dependents first.

    ``confirm`` is shown the blocks that will go and may refuse (returns None then).
    """
    import networkx as nx

    graph = deployed_graph(workspace, environment)
    for target in targets:
        if target not in graph:
            workspace.registry.block(target)  # an unknown block gets its own error
            raise UsageError(f"{target} is not deployed in environment {environment}",
                             hint=f"deployed there: {', '.join(sorted(graph)) or '(nothing)'}")
    doomed = set(targets)
    dependents = set().union(*(nx.descendants(graph, t) for t in targets)) - doomed
    if dependents and not with_dependents:
        raise UsageError(
            f"cannot destroy {', '.join(targets)} in {environment}: "
            + ("a deployed block depends" if len(dependents) == 1 else "deployed blocks depend")
            + f" on {'it' if len(targets) == 1 else 'them'}: {', '.join(sorted(dependents))}",
            hint="destroy those first, or pass --with-dependents")
    doomed |= dependents
    order = [n for n in reversed(list(nx.lexicographical_topological_sort(graph, key=str)))
             if n in doomed]
    if confirm is not None and not confirm(order):
        return None
    report = _destroy_nodes(workspace, environment, graph.subgraph(doomed).copy(), jobs=jobs,
                            keep_going=keep_going, on_event=on_event, token=token,
                            lock_timeout=lock_timeout)
    if report.ok and not workspace.backend.list_blocks(environment):
        kept: list[str] = []
        if is_ephemeral(environment):
            # a kept `doit env`, now gone entirely: what the platform holds for it goes too
            # (AWS: the environment's subnet)
            kept += workspace.platform(environment).sweep_environment(environment)["kept"]
        kept += _forget_environment(workspace, environment)   # its last block: subnet back
        report.warnings += [f"kept in the cloud: {reason}"
                            for reason in dict.fromkeys(kept)]   # each reason once
    return report


def _forget_environment(workspace: Workspace, environment: str) -> list[str]:
    """Give back the subnet and remove the working directories of an environment that is gone;
    why the platform kept its subnet, if it did (AWS: ``subnet-… (10.0.5.0/24):
    DependencyViolation: …`` while something else still uses it)."""
    from infrablocks.terraform.workdir import private_root_for

    workspace.subnets.release(environment)
    reason = workspace.platform(environment).release_environment_subnet(environment)
    workspace.backend.forget_environment(environment)
    shutil.rmtree(workspace.work_root / environment, ignore_errors=True)
    shutil.rmtree(private_root_for(workspace.work_root) / environment, ignore_errors=True)
    return [reason] if reason else []


def destroy_environment(workspace: Workspace, environment: str, *, jobs: int = 4,
                        on_event: EventSink | None = None,
                        token: CancelToken | None = None,
                        handle_signals: bool = True) -> RunReport:
    """Destroy everything deployed in ``environment`` (keep-going: take down all that can go)."""
    graph = deployed_graph(workspace, environment)
    return _destroy_nodes(workspace, environment, graph, jobs=jobs, keep_going=True,
                          on_event=on_event, token=token, handle_signals=handle_signals)


def _destroy_nodes(workspace: Workspace, environment: str, graph: nx.DiGraph[str], *, jobs: int,
                   keep_going: bool, on_event: EventSink | None,
                   token: CancelToken | None, handle_signals: bool = True,
                   lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> RunReport:
    def work(node: Any, tok: CancelToken) -> Result:
        return destroy_block(workspace, environment, node, tok, lock_timeout=lock_timeout)

    return run_dag(graph, work, jobs=jobs, keep_going=keep_going, reverse=True,
                   on_event=on_event, token=token, handle_signals=handle_signals)


@dataclass
class TestEnvironmentOutcome:
    environment: str
    resolution: Resolution | None = None
    create_report: RunReport | None = None
    tests: list[BlockTestResult] = field(default_factory=list)
    destroy_report: RunReport | None = None
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    kept: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        created = self.create_report is not None and self.create_report.ok
        tests_ok = all(t.ok or t.skipped for t in self.tests) and bool(self.tests)
        destroyed = self.kept or (self.destroy_report is not None and self.destroy_report.ok)
        return created and tests_ok and destroyed and self.error is None


def run_test_environment(workspace: Workspace, targets: list[str], *, keep: bool = False,
                         jobs: int = 4, keep_going: bool = False,
                         on_event: Callable[[str], EventSink | None] | None = None,
                         announce: Callable[[str, str], None] | None = None,
                         environment: str | None = None) -> TestEnvironmentOutcome:
    """Create the targets' minimal environment under a throwaway name, test, destroy.

    Destroy always happens (also after a failed create, failed tests or Ctrl-C) unless ``keep``.
    ``on_event(stage)`` gives the progress sink for the stage ("create" / "destroy");
    ``announce(stage, text)`` reports milestones (stage "notice": a remark within a stage).
    """
    from infrablocks.deploy.blocktests import run_block_tests
    from infrablocks.environments import new_ephemeral_name

    say = announce or (lambda stage, text: None)
    sink = on_event or (lambda stage: None)
    name = environment or new_ephemeral_name()
    outcome = TestEnvironmentOutcome(environment=name)
    try:
        say("create", f"environment {name} ({workspace.subnet(name, claim=True)})")
        outcome.resolution, outcome.create_report = create(
            workspace, targets, name, jobs=jobs, keep_going=keep_going, on_event=sink("create"))
        assert outcome.create_report is not None   # no confirm: always a report
        if outcome.create_report.ok:
            for target in outcome.resolution.targets:
                version = outcome.resolution.selected[target]
                say("test", f"block tests of {version.label}")
                outcome.tests.append(run_block_tests(workspace, name, version))
    except InfrablocksError as exc:
        outcome.error = str(exc)
    except KeyboardInterrupt:
        outcome.error = "interrupted"
    finally:
        if keep:
            outcome.kept = True
        else:
            say("destroy", f"environment {name}")
            with _interrupts_deferred(lambda: say(
                    "notice", "interrupt ignored: the environment is being destroyed "
                              "(this always completes)")):
                outcome.destroy_report, outcome.leftovers = teardown_environment(
                    workspace, name, jobs=jobs, on_event=sink("destroy"), handle_signals=False)
    return outcome


@contextlib.contextmanager
def _interrupts_deferred(notice: Callable[[], None]) -> Iterator[None]:
    """While the body runs, SIGINT/SIGTERM only call ``notice`` (main thread only).

    `doit env` promises to destroy what it created also after a Ctrl-C: a second Ctrl-C during
    the teardown must not leave the environment half destroyed. (Terraform runs in its own
    session, so the terminal's Ctrl-C never reaches it directly.)
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda *_: notice())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def teardown_environment(workspace: Workspace, environment: str, *, jobs: int = 4,
                         on_event: EventSink | None = None, handle_signals: bool = True
                         ) -> tuple[RunReport, dict[str, list[str]]]:
    """Destroy an environment completely: Terraform destroy, then anything left in the cloud.

    The platform's sweep catches what a failed Terraform run could not record in state (an instance
    started by an apply that was interrupted before its state write). It also forgets the
    environment's subnet and working directories.
    """
    report = destroy_environment(workspace, environment, jobs=jobs, on_event=on_event,
                                 token=CancelToken(), handle_signals=handle_signals)
    leftovers = workspace.platform(environment).sweep_environment(environment)
    if report.ok:
        for block in workspace.backend.list_blocks(environment):
            workspace.backend.purge(environment, block)
        kept = leftovers.setdefault("kept", [])
        kept += [r for r in _forget_environment(workspace, environment) if r not in kept]
    return report, {k: v for k, v in leftovers.items() if v}
