"""Shared fixtures of the integration tests: a real local cloud, real images, real Terraform.

- ``local_cloud``: a LocalCloud on a fresh directory; its finalizer terminates every instance,
  deletes every volume, checks that no instance process is left and removes the directory.
- ``image_builder``: ``image_builder("etcd@1.0.0") -> Image`` builds the image with packer (once
  per test session: artifacts are cached in a session directory) and registers it in
  ``local_cloud``.
- ``deploy_block``: ``deploy_block(block, version, inputs=None, environment=..., subnet_cidr=...)
  -> DeployedBlock`` (a dict of the block's outputs, plus ``apply``/``plan``/``run_block_tests``)
  builds the block's images (blocks.toml ``images``), applies the block with real Terraform on
  ``local_cloud`` and, whatever happens in the test, stops the block's instances and destroys it.
  The subnet is claimed in the machine-wide subnet table for the test (``tests.support.subnets``):
  a copy of the suite running at the same time waits for it rather than collide.
- ``moto_endpoint``: the URL of one moto server (S3, EC2, ...) on a free loopback port, shared by
  the whole session. moto keeps its backends in the test process whatever the server's scope:
  each test removes the buckets, instances and volumes it creates.

Tests that use them are slow: mark them ``@pytest.mark.slow`` and ``@pytest.mark.integration``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.process import is_alive, read_stat
from infrablocks.cloud.local.records import Image
from infrablocks.images import BuiltArtifact, ImageRef, build_artifact, parse_image_ref
from infrablocks.images import register_artifact as _register

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_GRACE = 15.0   # an etcd member that lost quorum takes ~7 s to shut down


# --------------------------------------------------------------------------- the local cloud

def dismantle_cloud(cloud: LocalCloud) -> list[str]:
    """Terminate every instance and delete every volume of ``cloud``; return what stayed."""
    instances = cloud.describe_instances()
    pids = [(i.pid, stat[1]) for i in instances if i.pid and (stat := read_stat(i.pid))]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: _quietly(cloud.terminate_instance, i.id, grace=STOP_GRACE),
                      instances))
    for volume in cloud.describe_volumes():
        if volume.attachment is not None:
            _quietly(cloud.detach_volume, volume.id, volume.attachment.instance_id)
        _quietly(cloud.delete_volume, volume.id)
    problems = [f"instance {i.id} ({i.name}) still exists" for i in cloud.describe_instances()]
    problems += [f"volume {v.id} ({v.name}) still exists" for v in cloud.describe_volumes()]
    problems += [f"instance process {pid} still runs" for pid, started in pids
                 if is_alive(pid, started)]
    return problems


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except Exception as exc:  # cleanup goes on; what stays is reported by dismantle_cloud
        print(f"cleanup: {call.__name__}{args}: {exc}", file=sys.stderr)


@pytest.fixture
def local_cloud() -> Iterator[LocalCloud]:
    """A fresh local cloud, torn down completely after the test.

    Its directory is not under pytest's tmp_path (mode 700): services that run as their own
    user (PostgreSQL as ``postgres``) must be able to reach their volumes.
    """
    parent = Path(tempfile.mkdtemp(prefix="infrablocks-it-cloud-"))
    parent.chmod(0o711)
    cloud = LocalCloud(parent / "cloud")
    try:
        yield cloud
    finally:
        problems = dismantle_cloud(cloud)
        shutil.rmtree(parent, ignore_errors=True)
    assert not problems, "the local cloud was not left clean:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- moto (AWS)

@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto server on a free loopback port for the whole session: ``http://127.0.0.1:PORT``.

    The one docs/aws.md tells users to run, ``scripts/moto-server`` (moto with AWS's terminate
    behaviour for network interfaces), in its own process."""
    from tests.support.aws_moto import start_moto_server, stop_moto_server

    server, endpoint = start_moto_server(tmp_path_factory.mktemp("moto") / "server.log")
    try:
        yield endpoint
    finally:
        stop_moto_server(server)


# --------------------------------------------------------------------------- images

class ImageCache:
    """Image artifacts built once per test session (packer runs once per name@version)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._built: dict[ImageRef, BuiltArtifact] = {}
        self._lock = threading.Lock()

    def artifact(self, ref: ImageRef) -> BuiltArtifact:
        with self._lock:
            if ref not in self._built:
                self._built[ref] = build_artifact(REPO_ROOT, ref, self.root / str(ref),
                                                  log_dir=self.root / "logs")
            return self._built[ref]


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageCache]:
    root = tmp_path_factory.mktemp("image-cache")
    yield ImageCache(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def image_builder(local_cloud: LocalCloud, image_cache: ImageCache) -> Callable[..., Image]:
    """``image_builder("etcd@1.0.0", tags=()) -> Image`` registered in ``local_cloud``."""

    def build(ref: str, tags: Sequence[str] = ()) -> Image:
        return _register(local_cloud, image_cache.artifact(parse_image_ref(ref)), tags)

    return build


def block_images(block: str, version: str) -> list[str]:
    """The images blocks.toml lists for ``block`` at ``version``."""
    registry = tomllib.loads((REPO_ROOT / "blocks.toml").read_text())
    entry = registry.get("blocks", {}).get(block, {}).get("versions", {}).get(version)
    if entry is None:
        raise LookupError(f"blocks.toml has no block {block} version {version}")
    return list(entry.get("images", []))


# --------------------------------------------------------------------------- Terraform

class TerraformSetup:
    """One CLI config + provider mirror + plugin cache for the whole session."""

    def __init__(self, root: Path) -> None:
        from infrablocks.terraform.binary import find_terraform
        from infrablocks.terraform.cliconfig import CliConfigPaths, write_cli_config

        self.root = root
        self.binary = find_terraform()
        self.cli_config = write_cli_config(CliConfigPaths.under(root / "terraform"))


@pytest.fixture(scope="session")
def terraform_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TerraformSetup]:
    root = tmp_path_factory.mktemp("terraform")
    yield TerraformSetup(root)
    shutil.rmtree(root, ignore_errors=True)


class DeployedBlock(dict):
    """A block applied in an environment of the test's local cloud: the dict holds its outputs
    (plain values, sensitive ones included); the methods change or check the deployment."""

    def __init__(self, *, block: str, version: str, environment: str, subnet_cidr: str,
                 inputs: Mapping[str, Any], cloud: LocalCloud, setup: TerraformSetup,
                 work_root: Path, image_builder: Callable[..., Image]) -> None:
        super().__init__()
        from infrablocks.terraform.driver import Terraform

        self.block, self.version = block, version
        self.environment, self.subnet_cidr = environment, subnet_cidr
        self.inputs = dict(inputs)
        self.cloud = cloud
        self.image_builder = image_builder
        self.work_root = work_root
        self.state_path = work_root / "state" / environment / f"{block}.tfstate"
        self.terraform = Terraform(setup.binary, setup.cli_config, work_root / "logs",
                                   {"LOCALCLOUD_ROOT": str(cloud.root)}, block=block,
                                   environment=environment, timeout=600)
        self.workdir: Path | None = None

    def prepare(self, version: str | None = None) -> Path:
        """Build the version's images, copy ``blocks/BLOCK/VERSION`` into the working
        directory and init it."""
        from infrablocks.terraform.workdir import BackendSpec, prepare_workdir

        if version is not None:
            self.version = version
        for ref in block_images(self.block, self.version):
            self.image_builder(ref)
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        inputs = {"environment": self.environment, "subnet_cidr": self.subnet_cidr,
                  **self.inputs}
        self.workdir = prepare_workdir(
            self.work_root / "work", self.environment, self.block,
            REPO_ROOT / "blocks" / self.block / self.version,
            BackendSpec("local", {"path": str(self.state_path)}), inputs)
        self.terraform.ensure_init(self.workdir)
        return self.workdir

    def apply(self, version: str | None = None, targets: Sequence[str] = ()) -> DeployedBlock:
        """(Targeted) apply of ``version`` (default: the current one); refreshes the outputs."""
        workdir = self.prepare(version)
        self.terraform.apply(workdir, targets=targets)
        self.refresh_outputs()
        return self

    def plan(self, version: str | None = None):  # -> infrablocks.terraform.plan.Plan
        return self.terraform.plan(self.prepare(version))

    def refresh_outputs(self) -> None:
        assert self.workdir is not None
        raw = self.terraform.output(self.workdir)
        self.clear()
        self.update({name: entry["value"] for name, entry in raw.items()})

    def state_addresses(self) -> list[str]:
        assert self.workdir is not None
        return self.terraform.state_list(self.workdir)

    def instances(self) -> list[Any]:
        return self.cloud.describe_instances(
            filters={"tag:environment": self.environment, "tag:block": self.block})

    def volumes(self) -> list[Any]:
        return self.cloud.describe_volumes(
            filters={"tag:environment": self.environment, "tag:block": self.block})

    def stop_instances(self) -> None:
        """Stop the block's instances (all at once): attachments refuse to detach otherwise."""
        running = [i for i in self.instances() if i.state != "stopped"]
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            list(pool.map(lambda i: self.cloud.stop_instance(i.id, grace=STOP_GRACE), running))

    def destroy(self) -> None:
        if self.workdir is None:
            return
        self.stop_instances()
        self.terraform.destroy(self.workdir)
        self.clear()

    def run_block_tests(self, dependency_outputs: Mapping[str, Any] | None = None,
                        extra_args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """Run ``blocks/BLOCK/VERSION/tests`` against this deployment, as infrablocks does."""
        files = self.work_root / "block-tests" / self.environment / self.block
        files.mkdir(parents=True, exist_ok=True)
        outputs_file = files / "outputs.json"
        outputs_file.write_text(json.dumps(dict(self)))
        env = {**os.environ, "INFRABLOCKS_BLOCK_OUTPUTS": str(outputs_file)}
        if dependency_outputs is not None:
            dependencies_file = files / "dependency_outputs.json"
            dependencies_file.write_text(json.dumps(dependency_outputs))
            env["INFRABLOCKS_DEPENDENCY_OUTPUTS"] = str(dependencies_file)
        tests = REPO_ROOT / "blocks" / self.block / self.version / "tests"
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "infrablocks.blocktests", "-q",
             "-p", "no:cacheprovider", "--rootdir", str(tests), str(tests), *extra_args],
            cwd=files, env=env, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def deploy_block(local_cloud: LocalCloud, image_builder: Callable[..., Image],
                 terraform_setup: TerraformSetup, tmp_path: Path
                 ) -> Iterator[Callable[..., DeployedBlock]]:
    """``deploy_block(block, version, inputs=None, environment="t-it", subnet_cidr=...)``.

    Builds and registers the images blocks.toml lists for the version, applies the block and
    returns a DeployedBlock (the outputs). Every deployment is destroyed at teardown, newest
    first, after stopping its instances; the local cloud's own finalizer then removes anything
    a failed destroy left behind (and the test fails on it).
    """
    from tests.support.subnets import hold_subnet

    deployed: list[DeployedBlock] = []
    held: dict[tuple[str, str], Any] = {}

    def deploy(block: str, version: str, inputs: Mapping[str, Any] | None = None,
               environment: str = "t-it", subnet_cidr: str = "127.42.210.0/24") -> DeployedBlock:
        if (environment, subnet_cidr) not in held:  # another copy of the suite waits for it
            held[environment, subnet_cidr] = hold_subnet(subnet_cidr, tmp_path / "subnets",
                                                         environment)
        deployment = DeployedBlock(block=block, version=version, environment=environment,
                                   subnet_cidr=subnet_cidr, inputs=inputs or {},
                                   cloud=local_cloud, setup=terraform_setup,
                                   work_root=tmp_path / "deployments",
                                   image_builder=image_builder)
        deployed.append(deployment)
        return deployment.apply()

    yield deploy

    failures = []
    for deployment in reversed(deployed):
        try:
            deployment.destroy()
        except Exception as exc:
            failures.append(f"{deployment.block}@{deployment.version} in "
                            f"{deployment.environment}: {exc}")
    for (environment, _), allocator in held.items():
        allocator.release(environment)
    assert not failures, "destroy failed:\n" + "\n".join(failures)
