"""A throwaway copy of this monorepo on its own local cloud, for the environment commands' tests.

``open_deploy_repo(base)`` copies blocks.toml, blocks/ and images/ into ``base/repo``. Its
environments get their subnets like any checkout's, from the machine-wide table (so copies of
the suite running at once, and a user's own environments, never share addresses):
``repo.subnet("staging")`` tells which one. The local cloud lives in a world-traversable
temporary directory (PostgreSQL runs as ``postgres`` and must reach its volumes).

``DeployRepo.doit(...)`` runs the real ``doit`` there in a subprocess. ``DeployRepo.close()``
destroys every environment that has state (Terraform destroy), sweeps the cloud
(``purge_environment``, then every instance and volume), removes the directories and returns
what it had to clean up by force, and gives the checkout's subnets back; ``with
repo.closing():`` (in a test or a fixture) calls it at the end, whatever happens, and fails the
test if it had to clean up by force.

Used by tests/integration/test_deploy_environments.py and tests/reliability/test_environment_*.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'
KILL_GRACE = 3.0


class DeployRepo:
    """A repo copy + its local cloud; see the module docstring."""

    def __init__(self, root: Path, cloud_parent: Path) -> None:
        self.root = root
        self.cloud_parent = cloud_parent
        self.cloud_root = cloud_parent / "cloud"

    # -- running the tool -------------------------------------------------------------------

    @property
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
        env.update({"LOCALCLOUD_ROOT": str(self.cloud_root),
                    "NO_COLOR": "1", "COLUMNS": "160", "TERM": "dumb"})
        return env

    def doit(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), *args], cwd=self.root, env=self.environ, text=True,
                              capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """``doit ARGS`` started in the background (stdout and stderr piped, line-buffered)."""
        return subprocess.Popen([str(DOIT), *args], cwd=self.root, env=self.environ, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, bufsize=1)

    # -- looking at what is there -------------------------------------------------------------

    def cloud(self) -> Any:
        from infrablocks.cloud.local.control import LocalCloud

        return LocalCloud(self.cloud_root)

    def backend(self) -> Any:
        from infrablocks.registry import load_registry
        from infrablocks.state import backend_from_settings

        return backend_from_settings(load_registry(self.root).settings.get("state"), self.root)

    def instances(self, environment: str | None = None) -> list[Any]:
        filters = {"tag:environment": environment} if environment else None
        return [i for i in self.cloud().describe_instances(filters=filters)
                if i.state != "terminated"]

    def volumes(self, environment: str | None = None) -> list[Any]:
        filters = {"tag:environment": environment} if environment else None
        return self.cloud().describe_volumes(filters=filters)

    @contextmanager
    def environment_variables(self) -> Iterator[None]:
        """This process's environment as ``doit`` gets it (for in-process library calls)."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(self.environ)
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def workspace(self) -> Any:
        from infrablocks.deploy.workspace import open_workspace
        from infrablocks.upgrade.engine import roll

        with self.environment_variables():
            return open_workspace(self.root, roller=roll)   # as the commands open it

    def subnet(self, environment: str) -> str:
        """The environment's subnet, as a read-only command sees it (nothing is claimed: for an
        environment without one, the subnet its first create would get)."""
        return self.workspace().subnet(environment)

    def address(self, environment: str, host: int) -> str:
        """Host number ``host`` of the environment's subnet, e.g. ``repo.address("prod", 31)``."""
        import ipaddress

        return str(ipaddress.ip_network(self.subnet(environment))[host])

    # -- cleaning up ----------------------------------------------------------------------------

    @contextmanager
    def closing(self) -> Iterator[DeployRepo]:
        """``close()`` at the end of the block, even after a failure; when the block succeeded,
        assert that nothing had to be cleaned up by force (a failure's own error wins)."""
        try:
            yield self
        finally:
            leftovers = self.close()
        assert not leftovers, "cleanup found:\n" + "\n".join(leftovers)

    def close(self) -> list[str]:
        """Destroy, sweep and remove everything; return what had to be removed by force."""
        from infrablocks.cloud.local.inventory import purge_environment
        from infrablocks.cloud.local.process import is_alive, read_stat
        from infrablocks.deploy.orchestrate import teardown_environment

        problems: list[str] = [f"provider process {pid} outlived its doit command"
                               for pid in provider_processes(self.cloud_root)]
        try:
            if self.cloud_root.exists() and self.root.exists():
                with self.environment_variables():
                    workspace = self.workspace()
                    try:
                        for environment in workspace.backend.list_environments():
                            report, swept = teardown_environment(workspace, environment,
                                                                 handle_signals=False)
                            if not report.ok:
                                problems.append(f"destroy of {environment}: "
                                                f"{report.summary()}")
                            if swept:
                                problems.append(f"swept after destroying {environment}: "
                                                f"{swept}")
                    finally:
                        workspace.close()   # its shared provider process
            if self.root.exists():
                with self.environment_variables():
                    subnets = self.workspace().subnets
                    for environment in subnets.allocations():
                        subnets.release(environment)
            if self.cloud_root.exists():
                cloud = self.cloud()
                environments = {i.tags.get("environment") for i in cloud.describe_instances()}
                environments |= {v.tags.get("environment") for v in cloud.describe_volumes()}
                for environment in sorted(e for e in environments if e):
                    swept = {k: v for k, v in purge_environment(
                        cloud, environment, grace=KILL_GRACE).items() if v}
                    if swept:
                        problems.append(f"left in the cloud ({environment}): {swept}")
                pids = [(i.pid, stat[1]) for i in cloud.describe_instances()
                        if i.pid and (stat := read_stat(i.pid))]
                with ThreadPoolExecutor(max_workers=8) as pool:
                    list(pool.map(lambda i: _quietly(cloud.terminate_instance, i.id,
                                                     grace=KILL_GRACE),
                                  cloud.describe_instances()))
                for volume in cloud.describe_volumes():
                    if volume.attachment is not None:
                        _quietly(cloud.detach_volume, volume.id, volume.attachment.instance_id)
                    _quietly(cloud.delete_volume, volume.id)
                problems += [f"instance process {pid} still runs" for pid, started in pids
                             if is_alive(pid, started)]
        finally:
            shutil.rmtree(self.cloud_parent, ignore_errors=True)
            shutil.rmtree(self.root, ignore_errors=True)
        return problems


def provider_processes(cloud_root: Path) -> list[int]:
    """Pids of the shared local-cloud provider processes (``--serve``) serving ``cloud_root``
    that still run (zombies nobody reaps here do not count)."""
    found = []
    wanted = f"LOCALCLOUD_ROOT={cloud_root}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            if b"--serve" not in cmdline or b"infrablocks.cloud.local.provider" not in cmdline:
                continue
            if wanted not in (proc / "environ").read_bytes().split(b"\0"):
                continue
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                continue
        except OSError:
            continue
        found.append(int(proc.name))
    return found


def _quietly(call: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        call(*args, **kwargs)
    except Exception as exc:  # cleanup goes on; close() reports what stayed
        print(f"cleanup: {call.__name__}{args}: {exc}", file=sys.stderr)


def open_deploy_repo(base: Path, *, extra_toml: str = "", state_toml: str = "") -> DeployRepo:
    """Copy the monorepo into ``base/repo`` (see the module docstring).

    ``extra_toml`` is appended to blocks.toml (more environments, ...); ``state_toml`` is
    inserted as blocks.toml's ``[state]`` table body (e.g. the S3 backend's keys).
    """
    root = base / "repo"
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".terraform*")
    for name in ("blocks", "images"):
        shutil.copytree(MAIN_REPO / name, root / name, ignore=ignore)
    (root / "dodo.py").write_text(DODO)
    toml = (MAIN_REPO / "blocks.toml").read_text()
    assert "subnet =" not in toml, "the example blocks.toml pins a subnet: tests would collide"
    if state_toml:
        toml = f"[state]\n{state_toml.strip()}\n\n{toml}"
    (root / "blocks.toml").write_text(toml + "\n" + extra_toml)
    cloud_parent = Path(tempfile.mkdtemp(prefix="infrablocks-envtest-"))
    cloud_parent.chmod(0o711)
    return DeployRepo(root, cloud_parent)


def break_block(repo: DeployRepo, block: str, version: str, message: str) -> None:
    """Make ``block@version`` fail mid-apply: a resource whose provisioner exits 3 (created
    after the block's other resources have started)."""
    main = repo.root / "blocks" / block / version / "main.tf"
    main.write_text(main.read_text() + f'''
resource "terraform_data" "broken" {{
  provisioner "local-exec" {{
    command = "echo '{message}' >&2; exit 3"
  }}
}}
''')
