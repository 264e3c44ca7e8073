"""`doit test-upgrade`: a throwaway environment at the previous version, upgraded for real.

1. choose the versions: ``to`` (default: the newest), ``from`` (default: the newest version below
   ``to`` whose resolution can use the same dependency versions as ``to``'s — so one set of
   dependencies serves both);
2. create the environment with ``from`` and those dependencies;
3. write data: the check's probe (``write_probe``, e.g. an etcd key) where it has one;
4. ``upgrade`` to ``to`` with the real rolling procedure (gates, journal, markers on volumes);
5. run ``to``'s block tests and read the probe back;
6. destroy everything, always (also after a failure or Ctrl-C).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infrablocks.errors import InfrablocksError, UsageError

if TYPE_CHECKING:
    from infrablocks.deploy.blocktests import BlockTestResult
    from infrablocks.deploy.workspace import Workspace
    from infrablocks.health.base import GateResult
    from infrablocks.registry import BlockVersion
    from infrablocks.upgrade.engine import UpgradeOutcome


@dataclass
class TestUpgradeResult:
    __test__ = False  # not a pytest class

    block: str
    environment: str
    from_version: str = ""
    to_version: str = ""
    dependencies: dict[str, str] = field(default_factory=dict)
    created: bool = False
    probe: dict[str, Any] | None = None
    upgrade: UpgradeOutcome | None = None
    tests: list[BlockTestResult] = field(default_factory=list)
    data_check: GateResult | None = None
    destroyed: bool = False
    leftovers: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (self.created and self.upgrade is not None and self.error is None
                and bool(self.tests) and all(t.ok for t in self.tests)
                and (self.data_check is None or self.data_check.ok)
                and self.destroyed and not self.leftovers)

    def lines(self) -> list[str]:
        lines = [f"dependencies: {self.dependencies or 'none'}",
                 f"created at {self.from_version}: {'yes' if self.created else 'no'}"]
        if self.probe is not None:
            lines.append(f"data written: {self.probe}")
        if self.upgrade is not None:
            lines.append(f"upgrade: {self.upgrade.mode}, {len(self.upgrade.order)} "
                         f"unit{'' if len(self.upgrade.order) == 1 else 's'}, "
                         f"timings {self.upgrade.timings}")
        lines += [f"block tests {t.block} {t.version}: {t.summary}" for t in self.tests]
        if self.data_check is not None:
            lines.append(f"data check: {self.data_check.summary}")
        lines.append(f"destroyed: {'yes' if self.destroyed else 'NO'}"
                     + (f", leftovers {self.leftovers}" if self.leftovers else ""))
        if self.error:
            lines.append(f"error: {self.error}")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"block": self.block, "environment": self.environment,
                "from_version": self.from_version, "to_version": self.to_version,
                "dependencies": self.dependencies, "created": self.created,
                "probe": self.probe, "ok": self.ok,
                "upgrade": self.upgrade.to_json() if self.upgrade else None,
                "tests": [{"block": t.block, "version": t.version, "ok": t.ok,
                           "summary": t.summary, "log": str(t.log_path)} for t in self.tests],
                "data_check": None if self.data_check is None else {
                    "ok": self.data_check.ok, "summary": self.data_check.summary},
                "destroyed": self.destroyed, "leftovers": self.leftovers,
                "error": self.error}


def choose_versions(workspace: Workspace, block: str, from_version: str | None,
                    to_version: str | None) -> tuple[BlockVersion, BlockVersion, dict[str, str]]:
    """(from, to, dependency versions both can use)."""
    from infrablocks.resolve import ResolutionError, resolve

    registry = workspace.registry
    versions = list(registry.block(block).versions.values())
    to = registry.block_version(block, to_version) if to_version else versions[-1]
    target = resolve(registry, [f"{block}@{to.version}"])
    pins = {name: bv.version for name, bv in target.selected.items() if name != block}
    if from_version is not None:
        candidates = [registry.block_version(block, from_version)]
        if candidates[0].version >= to.version:
            raise UsageError(f"--from {from_version} is not below the target {to.version}")
    else:
        candidates = [v for v in reversed(versions) if v.version < to.version]
        if not candidates:
            raise UsageError(f"{block} has no version below {to.version} to upgrade from",
                             hint=f"versions: {', '.join(str(v.version) for v in versions)}")
    problems = []
    for candidate in candidates:
        try:
            start = resolve(registry, [f"{block}@{candidate.version}"], pins=pins)
        except ResolutionError as exc:
            problems.append(f"{candidate.label}: {exc.message}")
            continue
        dependencies = {n: str(bv.version) for n, bv in start.selected.items() if n != block}
        return candidate, to, dependencies
    raise InfrablocksError(
        f"no version of {block} below {to.version} can run with the dependencies "
        f"{to.label} resolves to ({', '.join(f'{k} {v}' for k, v in pins.items())})",
        hint="\n".join(problems))


def run_test_upgrade(workspace: Workspace, block: str, *, from_version: str | None = None,
                     to_version: str | None = None, environment: str | None = None,
                     say: Callable[[str], None] | None = None,
                     echo_tests: bool = True) -> TestUpgradeResult:
    from infrablocks.deploy.orchestrate import create, teardown_environment
    from infrablocks.environments import is_ephemeral, new_ephemeral_name
    from infrablocks.upgrade.engine import roll

    say = say or (lambda text: None)
    if workspace.roller is None:   # the create repairs members as `doit create` does
        workspace.roller = roll
    name = environment or new_ephemeral_name()
    if not is_ephemeral(name):
        raise UsageError(f"test-upgrade runs in a throwaway environment; {name!r} does not "
                         "start with t-")
    start, target, dependencies = choose_versions(workspace, block, from_version, to_version)
    result = TestUpgradeResult(block, name, str(start.version), str(target.version),
                               dependencies)
    try:
        say(f"create {start.label} in {name} ({workspace.subnet(name, claim=True)}) with "
            f"{dependencies or 'no dependencies'}")
        targets = [f"{start.block}@{start.version}",
                   *(f"{n}@{v}" for n, v in dependencies.items())]
        _resolution, report = create(workspace, targets, name)
        assert report is not None   # no confirm: always a report
        if not report.ok:
            raise InfrablocksError(f"creating {start.label} in {name} failed: "
                                   + "; ".join(f"{n}: {r.error}" for n, r in
                                               report.nodes.items() if r.error))
        result.created = True
        probe_check = _probe_check(workspace, name, target)
        if probe_check is not None:
            check, members = probe_check
            result.probe = check.write_probe(members)
            say(f"data written: {result.probe}")
        from infrablocks.upgrade.engine import upgrade

        result.upgrade = upgrade(workspace, block, name, to=str(target.version), say=say)
        from infrablocks.deploy.blocktests import run_block_tests

        result.tests.append(run_block_tests(workspace, name, target, echo=echo_tests))
        if probe_check is not None and result.probe is not None:
            check, _ = probe_check
            after = _probe_check(workspace, name, target)   # the members after the upgrade
            members = after[1] if after is not None else []
            result.data_check = check.verify_probe(members, result.probe)
    except InfrablocksError as exc:
        result.error = str(exc)
    except KeyboardInterrupt:
        result.error = "interrupted"
    finally:
        say(f"destroy {name}")
        report, result.leftovers = teardown_environment(workspace, name)
        result.destroyed = report.ok
    return result


def _probe_check(workspace: Workspace, environment: str, version: BlockVersion
                 ) -> tuple[Any, list[Any]] | None:
    """The block's check and members when the check can write and verify a data probe."""
    from infrablocks.health import build_check
    from infrablocks.health.base import CheckContext
    from infrablocks.rolling.declaration import declaration_for
    from infrablocks.rolling.plan import members_from_state

    declaration = declaration_for(workspace.registry, version,
                                  workspace.platform(environment).name,
                                  module=workspace.block_module(environment, version))
    if declaration is None:
        return None
    outputs = workspace.backend.read_outputs(environment, version.block).unmasked()
    check = build_check(declaration.check, CheckContext(
        block=version.block, environment=environment, options=dict(declaration.check_options),
        outputs=outputs, block_dir=str(version.path), ops=workspace.platform(environment).ops))
    if not (hasattr(check, "write_probe") and hasattr(check, "verify_probe")):
        return None
    members = members_from_state(workspace.backend.read_state(environment, version.block),
                                 declaration)
    return check, members
