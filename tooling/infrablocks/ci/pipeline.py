"""``doit ci-pipeline``: a GitHub Actions workflow that tests what a change affects, spread over
many runners.

Jobs (each on its own runner, with its own local cloud and throwaway environment):

- ``image-NAME-VERSION`` for each changed image: ``doit image NAME@VERSION`` (build, boot, run
  the image's checks);
- ``create-BLOCK-VERSION`` for each affected block version: ``doit test-create BLOCK@VERSION``
  (an ephemeral environment with its resolution, the block tests, destroyed always);
- ``upgrade-BLOCK-VERSION`` where the block has a previous version: ``doit test-upgrade BLOCK
  --from PREVIOUS --to VERSION`` (the real rolling upgrade, data kept);
- optionally ``deploy-ENV`` for persistent environments, after every test passed.

``needs:`` follows the dependency graph: a block version's jobs wait for the image jobs of the
images it uses and for the create jobs of the affected versions it depends on (no point testing
microservice01 on a base version that fails its own tests); an upgrade waits for the create job
of the same version. Jobs that touch a persistent environment share one concurrency group per
environment, so two pipelines never change it at once (the S3 state lock would refuse the
second run anyway; the group makes it wait instead of fail).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from infrablocks.ci import workflow_yaml
from infrablocks.ci.affected import Affected, RegistrySnapshot, VersionEntry

DEFAULT_RUNNER = "ubuntu-latest"
# Jobs run in Debian 12 (its etcd, PostgreSQL + Patroni, supervisor, packer, Python 3.11).
CONTAINER = "debian:12"
CHECKOUT = "actions/checkout@v4"
CACHE = "actions/cache@v4"
UPLOAD = "actions/upload-artifact@v4"
DOIT = ".venv/bin/doit"


@dataclass
class PipelineOptions:
    name: str = "infrablocks: affected blocks"
    runs_on: str = DEFAULT_RUNNER
    container: str | None = CONTAINER
    triggers: dict[str, Any] = field(default_factory=lambda: {
        "pull_request": {"paths-ignore": ["docs/**", "**.md"]}, "workflow_dispatch": {}})
    deploy_environments: tuple[str, ...] = ()   # persistent environments to deploy to
    timeout_minutes: int = 60


@dataclass(frozen=True)
class Job:
    id: str
    name: str
    commands: tuple[str, ...]
    needs: tuple[str, ...] = ()
    environment: str | None = None    # a persistent environment (deploy jobs)


def job_id(kind: str, ref: str) -> str:
    """``create-base-1-1-0`` from ("create", "base@1.1.0"): GitHub's job id syntax."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", f"{kind}-{ref.replace('@', '-')}")


def previous_version(registry: RegistrySnapshot, entry: VersionEntry) -> VersionEntry | None:
    """The newest version of the same block below ``entry`` (what test-upgrade starts from)."""
    from infrablocks.images.refs import version_key

    older = [e for e in registry.versions_of(entry.block)
             if version_key(e.version) < version_key(entry.version)]
    return older[-1] if older else None


def plan_jobs(affected: Affected, options: PipelineOptions | None = None) -> list[Job]:
    """The jobs for ``affected``, in an order where every job comes after the jobs it needs."""
    from infrablocks.versions import (
        ConstraintSyntaxError,
        VersionSyntaxError,
        parse_constraint,
        parse_version,
    )

    options = options or PipelineOptions()
    registry = affected.registry
    jobs: list[Job] = []
    image_jobs = {}
    for image in affected.images:
        image_jobs[image] = job_id("image", image)
        jobs.append(Job(image_jobs[image], f"image {image}: build, boot, checks",
                        (f"{DOIT} image {image}",)))

    def allows(constraint: str, version: str) -> bool:
        try:
            return parse_constraint(constraint).allows(parse_version(version))
        except (ConstraintSyntaxError, VersionSyntaxError):
            return False

    test_jobs: list[str] = []
    for key in _dependency_order(affected):
        entry = registry.versions[key]
        needs = [image_jobs[i] for i in entry.images if i in image_jobs]
        for dep, constraint in entry.requires.items():
            needs += [job_id("create", other.key) for other in affected.versions.values()
                      if other.block == dep and allows(constraint, other.version)]
        create = job_id("create", key)
        jobs.append(Job(create, f"test-create {key}", (f"{DOIT} test-create {key}",),
                        tuple(dict.fromkeys(needs))))
        test_jobs.append(create)
        previous = previous_version(registry, entry)
        if previous is not None:
            upgrade = job_id("upgrade", key)
            jobs.append(Job(upgrade, f"test-upgrade {entry.block} {previous.version} → "
                                     f"{entry.version}",
                            (f"{DOIT} test-upgrade {entry.block} --from {previous.version} "
                             f"--to {entry.version}",), (create,)))
            test_jobs.append(upgrade)
    newest = _newest_affected(affected)
    for env in options.deploy_environments:
        if not newest:
            break
        commands = tuple(
            f"{DOIT} upgrade {block} --env {env} --to {version} --yes" if stateful
            else f"{DOIT} create {block}@{version} --env {env} --yes"
            for block, version, stateful in newest)
        jobs.append(Job(job_id("deploy", env), f"deploy to {env}", commands,
                        tuple(test_jobs + list(image_jobs.values())), environment=env))
    return jobs


def workflow(affected: Affected, options: PipelineOptions | None = None) -> dict[str, Any]:
    """The workflow document (a dict ready for :func:`render`)."""
    options = options or PipelineOptions()
    jobs = plan_jobs(affected, options)
    base = affected.base[:12]
    head = (affected.head or "working tree")[:12]
    document: dict[str, Any] = {
        "name": options.name,
        "on": options.triggers,
        "permissions": {"contents": "read"},
        "concurrency": {"group": "infrablocks-affected-${{ github.ref }}",
                        "cancel-in-progress": True},
        "env": {"CHECKPOINT_DISABLE": "1"},
        "jobs": {},
    }
    if not jobs:
        document["jobs"]["nothing-affected"] = {
            "name": "no block or image is affected",
            "runs-on": options.runs_on,
            "steps": [{"run": f"echo 'No block version or image is affected by {base}..{head}.'"}],
        }
        return document
    for job in jobs:
        document["jobs"][job.id] = _job(job, options)
    return document


def render(affected: Affected, options: PipelineOptions | None = None) -> str:
    header = (f"# Generated by `doit ci-pipeline` (infrablocks): jobs for "
              f"{len(affected.versions)} affected block version"
              f"{'' if len(affected.versions) == 1 else 's'} and "
              f"{len(affected.images)} changed image{'' if len(affected.images) == 1 else 's'}.\n"
              "# Do not edit: regenerate it. See docs/ci.md.\n")
    return header + workflow_yaml.dump(workflow(affected, options))


def matrix(affected: Affected) -> dict[str, list[dict[str, str]]]:
    """The same jobs as strategy matrices, by stage (image → create → upgrade), for a static
    workflow that runs them without committing a generated file (ci/workflows/)."""
    jobs = plan_jobs(affected)
    stages: dict[str, list[dict[str, str]]] = {"image": [], "create": [], "upgrade": []}
    for key in affected.images:
        stages["image"].append({"ref": key})
    for key in _dependency_order(affected):
        stages["create"].append({"ref": key})
        entry = affected.registry.versions[key]
        previous = previous_version(affected.registry, entry)
        if previous is not None and any(j.id == job_id("upgrade", key) for j in jobs):
            stages["upgrade"].append({"block": entry.block, "from": previous.version,
                                      "to": entry.version})
    return stages


def setup_steps(container: str | None = CONTAINER) -> list[dict[str, Any]]:
    """Checkout, the venv cache (keyed on what decides its content), bootstrap."""
    git: list[dict[str, Any]] = [
        {"name": "git for the checkout", "run": "apt-get update -qq && apt-get install -y -qq "
                                                "git ca-certificates >/dev/null"}
    ] if container else []
    return [
        *git,
        {"uses": CHECKOUT, "with": {"fetch-depth": 0}},
        {"name": "cache the venv", "uses": CACHE,
         "with": {"path": ".venv",
                  "key": f"venv-{container or '${{ runner.os }}'}-"
                         "${{ hashFiles('pyproject.toml', 'scripts/bootstrap') }}"}},
        {"name": "bootstrap (Debian packages; the venv when the cache missed)",
         "run": "scripts/bootstrap"},
    ]


def _job(job: Job, options: PipelineOptions) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": job.name, "runs-on": options.runs_on,
                            "timeout-minutes": options.timeout_minutes}
    if options.container:
        spec["container"] = options.container
    if job.needs:
        spec["needs"] = list(job.needs)
    if job.environment:
        spec["environment"] = job.environment
        spec["concurrency"] = {"group": f"infrablocks-env-{job.environment}",
                               "cancel-in-progress": False}
    steps = [step for step in setup_steps(options.container) if step]
    steps.append({"name": job.name, "run": "\n".join(job.commands)})
    steps.append({"name": "keep the logs", "if": "always()", "uses": UPLOAD,
                  "with": {"name": f"logs-{job.id}", "path": ".infrablocks/logs/",
                           "if-no-files-found": "ignore"}})
    spec["steps"] = steps
    return spec


def _dependency_order(affected: Affected) -> list[str]:
    """Affected versions, dependencies before dependents (block level), then by name."""
    registry = affected.registry
    blocks = {a.block for a in affected.versions.values()}
    depth: dict[str, int] = {}

    def level(block: str, seen: frozenset[str] = frozenset()) -> int:
        if block in depth:
            return depth[block]
        if block in seen:
            return 0
        deps = {d for e in registry.versions_of(block) for d in e.requires}
        depth[block] = 1 + max((level(d, seen | {block}) for d in deps), default=-1)
        return depth[block]

    for block in blocks:
        level(block)
    from infrablocks.images.refs import version_key

    return sorted((a.key for a in affected.versions.values()),
                  key=lambda k: (depth[k.partition("@")[0]], k.partition("@")[0],
                                 version_key(k.partition("@")[2])))


def _newest_affected(affected: Affected) -> list[tuple[str, str, bool]]:
    """(block, newest affected version, stateful) per affected block, dependencies first."""
    registry = affected.registry
    newest: dict[str, str] = {}
    for key in _dependency_order(affected):
        block, _, version = key.partition("@")
        newest[block] = version
    return [(block, version, bool(registry.block_settings.get(block, {}).get("stateful")))
            for block, version in newest.items()]
