"""A throwaway copy of the repository with one environment of the base block, for upgrade tests.

``UpgradeRepo()`` copies blocks.toml, blocks/ and images/ into a temporary directory, declares
the environment ``up`` and claims its subnet from the machine-wide table (``repo.subnet``,
``repo.ips`` the three base members), so copies of the suite running at once never share
addresses; its local cloud lives in the copy. ``close()`` destroys the environment, sweeps the
cloud (terminates every instance, deletes every volume), gives the subnets back and removes the
copy; it reports what would not go.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from infrablocks.waiting import poll

MAIN_REPO = Path(__file__).resolve().parents[2]
FIXTURES = MAIN_REPO / "tests" / "fixtures"
DOIT = Path(sys.executable).parent / "doit"
ENV = "up"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'


class UpgradeRepo:
    def __init__(self, extra_toml: str = "") -> None:
        parent = Path(tempfile.mkdtemp(prefix="infrablocks-upgrade-"))
        parent.chmod(0o711)
        self.parent = parent
        self.root = parent / "repo"
        self.root.mkdir()
        shutil.copytree(MAIN_REPO / "blocks", self.root / "blocks")
        shutil.copytree(MAIN_REPO / "images", self.root / "images")
        (self.root / "dodo.py").write_text(DODO)
        toml = (MAIN_REPO / "blocks.toml").read_text()
        toml += f'\n[environments.{ENV}]\n' + extra_toml
        (self.root / "blocks.toml").write_text(toml)
        self.subnet = self.workspace().subnet(ENV)
        network = ipaddress.ip_network(self.subnet)
        self.ips = [str(network[11 + i]) for i in range(3)]

    def address(self, host: int) -> str:
        """Host number ``host`` of the environment's subnet (base .11-.13, nomad .31)."""
        return str(ipaddress.ip_network(self.subnet)[host])

    # -- fixtures of the copy ----------------------------------------------------------------

    def add_broken_base_version(self, version: str = "1.2.0", rejoin_timeout: int = 15) -> None:
        """base VERSION running etcd@VERSION, an image that boots but never joins."""
        image = self.root / "images" / "etcd" / version
        shutil.copytree(self.root / "images" / "etcd" / "1.1.0", image)
        shutil.copy(FIXTURES / "etcd-broken" / "entrypoint", image / "files" / "entrypoint")
        template = image / "etcd.pkr.hcl"
        template.write_text(template.read_text().replace('"1.1.0"', f'"{version}"'))
        block = self.root / "blocks" / "base" / version
        shutil.copytree(self.root / "blocks" / "base" / "1.1.0", block)
        main = block / "main.tf"
        main.write_text(main.read_text().replace('image_version = "1.1.0"',
                                                 f'image_version = "{version}"'))
        with (self.root / "blocks.toml").open("a") as handle:
            handle.write(f'\n[blocks.base.versions."{version}"]\nimages = ["etcd@{version}"]\n'
                         f'rolling = {{ timeouts = {{ rejoin = {rejoin_timeout}, '
                         f'healthy = {rejoin_timeout} }} }}\n')

    # -- the tool ----------------------------------------------------------------------------

    def workspace(self):  # -> Workspace
        from infrablocks.deploy.workspace import open_workspace
        from infrablocks.upgrade.engine import roll

        return open_workspace(self.root, roller=roll)   # as the commands open it

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_"))}
        env.update(NO_COLOR="1", COLUMNS="160", TERM="dumb", **extra)
        return env

    def doit(self, *args: str, timeout: float = 600, **env: str
             ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), *args], cwd=self.root, env=self.environ(**env),
                              text=True, capture_output=True, timeout=timeout, check=False)

    def create(self, version: str = "1.0.0") -> None:
        from infrablocks.deploy.orchestrate import create

        workspace = self.workspace()
        try:
            _, report = create(workspace, [f"base@{version}"], ENV)
        finally:
            workspace.close()   # its shared provider process
        assert report.ok, report.to_json()
        self.wait_healthy()

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until every member serves (create returns once Terraform is done, not etcd)."""
        polled = poll(self.healthy_members, lambda up: sorted(up) == sorted(self.ips),
                      timeout=timeout, interval=0.2)
        assert polled.ok, f"healthy after {timeout}s: {polled.value}"

    def upgrade(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return self.doit("upgrade", "base", "--env", ENV, "--yes", *args, **env)

    # -- looking at the cluster --------------------------------------------------------------

    def cloud(self):  # -> LocalCloud
        return self.workspace().platform(ENV).cloud

    def instances(self) -> dict[str, Any]:
        """Member number ("1".."3") → Instance."""
        return {i.tags["member"]: i for i in self.cloud().describe_instances(
            filters={"tag:environment": ENV, "tag:block": "base"})}

    def volumes(self) -> dict[str, Any]:
        return {v.tags["member"]: v for v in self.cloud().describe_volumes(
            filters={"tag:environment": ENV, "tag:block": "base"})}

    def record_version(self) -> str | None:
        record = self.workspace().backend.get_record(ENV, "base")
        return record.version if record else None

    def journal(self) -> dict[str, Any] | None:
        return self.workspace().backend.get_document(ENV, "base", "upgrade-journal")

    def etcd(self, ip: str, path: str, body: dict[str, Any] | None = None,
             timeout: float = 3.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"http://{ip}:2379{path}", data=data,
                                         method="GET" if body is None else "POST")
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")

    def put(self, key: str, value: str, ip: str | None = None) -> None:
        self.etcd(ip or self.ips[0], "/v3/kv/put", {"key": b64(key), "value": b64(value)})

    def get(self, key: str, ip: str | None = None) -> str | None:
        found = self.etcd(ip or self.ips[0], "/v3/kv/range", {"key": b64(key)})
        kvs = found.get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def healthy_members(self) -> list[str]:
        healthy = []
        for ip in self.ips:
            try:
                if self.etcd(ip, "/health").get("health") == "true":
                    healthy.append(ip)
            except OSError:
                pass
        return healthy

    def member_count(self) -> int:
        for ip in self.ips:
            try:
                return len(self.etcd(ip, "/v3/cluster/member/list", {})["members"])
            except OSError:
                continue
        return 0

    def plan_is_empty(self) -> bool:
        from infrablocks.deploy.block_ops import BlockRun, plan_block
        from infrablocks.runner import CancelToken

        workspace = self.workspace()
        version = workspace.registry.block_version("base", self.record_version())
        run = BlockRun(workspace, ENV, version, workspace.subnet(ENV))
        try:
            return not plan_block(run, CancelToken()).has_changes
        finally:
            workspace.close()

    # -- cleanup -----------------------------------------------------------------------------

    def close(self) -> list[str]:
        problems: list[str] = []
        try:
            from infrablocks.deploy.orchestrate import teardown_environment

            workspace = self.workspace()
            try:
                report, leftovers = teardown_environment(workspace, ENV)
            finally:
                workspace.close()
            if not report.ok:
                problems.append(f"destroy failed: {report.to_json()}")
        except Exception as exc:  # the sweep below still runs
            problems.append(f"destroy raised {exc!r}")
        try:
            cloud = self.cloud()
            instances = cloud.describe_instances()
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(lambda i: cloud.terminate_instance(i.id, grace=10), instances))
            for volume in cloud.describe_volumes():
                if volume.attachment is not None:
                    cloud.detach_volume(volume.id, volume.attachment.instance_id)
                cloud.delete_volume(volume.id)
            if instances:
                problems.append(f"instances left by the destroy: {[i.name for i in instances]}")
        except Exception as exc:
            problems.append(f"sweep raised {exc!r}")
        try:
            subnets = self.workspace().subnets
            for environment in subnets.allocations():
                subnets.release(environment)
        except Exception as exc:
            problems.append(f"giving the subnets back raised {exc!r}")
        shutil.rmtree(self.parent, ignore_errors=True)
        return problems


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
