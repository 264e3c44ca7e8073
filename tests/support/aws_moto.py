"""The AWS flavour of this monorepo against moto server, for the tests marked ``aws``.

- :func:`aws_provider_mirror`: a filesystem mirror holding the hashicorp/aws provider (the tests
  never download it): ``$INFRABLOCKS_TEST_PROVIDER_MIRROR``, the mirrors of the user's Terraform
  CLI configuration, Terraform's implied mirror folders, then ``/opt/tf-plugins`` (where the
  machines of this project keep it). None: the tests skip, saying so.
- :func:`start_moto_server`: ``scripts/moto-server``, the moto server docs/aws.md has users run
  (moto 5.2.5 keeps a terminated instance's network interfaces attached; AWS detaches them, and
  without that Terraform cannot delete an ``aws_network_interface`` whose instance it
  terminated: DetachNetworkInterface of device 0 answers OperationNotPermitted). The tests run
  that same script, in its own process, so they exercise what users get.
- :func:`register_images`: AMIs named and tagged as the packer templates make them (packer's
  ``amazon-ebs`` cannot build against moto: it needs SSH into a real instance), so that the
  blocks run the same ``data "aws_ami"`` lookup as on AWS.
- :class:`AwsRepo`: a copy of the monorepo whose blocks.toml declares the platform ``moto``
  (kind aws, the moto endpoint), the provider mirror, and the moto flavour's gates: ``check =
  "instances"`` in base's AWS rolling declaration (moto runs no services). ``doit`` runs in a
  subprocess with dummy credentials in the environment (the AWS chain's first link).
- :class:`Ec2Poller`: a thread recording every instance's and volume's state changes (the state
  history the rolling-upgrade tests read: each instance stopped before its volume detached).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"
DODO = '"""doit entry point."""\n\nfrom infrablocks.tasks import *  # noqa: F403\n'
AWS_PROVIDER = "registry.terraform.io/hashicorp/aws"
MIRROR_ENV = "INFRABLOCKS_TEST_PROVIDER_MIRROR"
KNOWN_MIRROR = Path("/opt/tf-plugins")
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


# --------------------------------------------------------------------------- the provider

def aws_provider_mirror() -> Path | None:
    """The first filesystem mirror that holds the hashicorp/aws provider (see the docstring)."""
    from infrablocks.terraform.cliconfig import (
        implied_mirror_dirs,
        mirror_providers,
        user_cli_config,
        user_methods,
    )

    candidates: list[Path] = []
    if os.environ.get(MIRROR_ENV):
        candidates.append(Path(os.environ[MIRROR_ENV]))
    config = user_cli_config(os.environ)
    if config is not None:
        candidates += [Path(m.location) for m in user_methods(config) or []
                       if m.kind == "filesystem_mirror"]
    candidates += [*implied_mirror_dirs(os.environ), KNOWN_MIRROR]
    for folder in candidates:
        if folder.is_dir() and AWS_PROVIDER in mirror_providers(folder):
            return folder
    return None


# --------------------------------------------------------------------------- moto

MOTO_SERVER = MAIN_REPO / "scripts" / "moto-server"


def start_moto_server(log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``scripts/moto-server`` on a free loopback port (the server docs/aws.md has users run:
    moto with AWS's terminate behaviour for network interfaces); (process, endpoint) once it
    listens. Its output goes to ``log``."""
    from tests.support.loopback import free_port

    port = free_port()
    with log.open("wb") as handle:
        server = subprocess.Popen([sys.executable, str(MOTO_SERVER), "-H", "127.0.0.1",
                                   "-p", str(port)], stdout=handle, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while "moto server on" not in log.read_text(errors="replace"):
        if server.poll() is not None or time.monotonic() > deadline:
            stop_moto_server(server)
            raise RuntimeError(f"scripts/moto-server did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return server, f"http://127.0.0.1:{port}"


def stop_moto_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=20)


@contextmanager
def dummy_credentials() -> Iterator[None]:
    """moto's dummy credentials in this process's environment (the AWS chain's first link),
    for the platform's boto3 calls made in the test process (never switched while threads
    run: the environment is the process's)."""
    names = {**CREDENTIALS, "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ec2_client(endpoint: str, region: str = REGION) -> Any:
    import boto3

    return boto3.client("ec2", region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])


def register_images(ec2: Any, refs: list[str]) -> dict[str, str]:
    """``{ref: ami id}``: each image registered (once) under the packer templates' name and tags,
    from the root snapshot of one of moto's own AMIs."""
    from infrablocks.cloud.aws.images import find_ami, register_ami
    from infrablocks.images.refs import parse_image_ref

    source = next(i for i in ec2.describe_images(Owners=["amazon"])["Images"]
                  if i.get("RootDeviceType") == "ebs")
    found = {}
    for text in refs:
        ref = parse_image_ref(text)
        existing = find_ami(ec2, ref)
        found[text] = existing["ImageId"] if existing else register_ami(
            ec2, ref, source_image_id=source["ImageId"])
    return found


# --------------------------------------------------------------------------- the repository

class AwsRepo:
    """A copy of the monorepo on platform ``moto`` (see the module docstring)."""

    def __init__(self, root: Path, endpoint: str, mirror: Path, cloud_parent: Path) -> None:
        self.root = root
        self.endpoint = endpoint
        self.mirror = mirror
        self.cloud_parent = cloud_parent
        self.ec2 = ec2_client(endpoint)

    @property
    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("INFRABLOCKS_", "LOCALCLOUD_", "AWS_"))}
        env.update(CREDENTIALS)
        env.update({"AWS_EC2_METADATA_DISABLED": "true",
                    "LOCALCLOUD_ROOT": str(self.cloud_parent / "cloud"),
                    "NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"})
        return env

    def doit(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return subprocess.run([str(DOIT), *args], cwd=self.root, env=self.environ,
                                  text=True, capture_output=True, timeout=timeout, check=False,
                                  stdin=subprocess.DEVNULL)
        finally:   # shown with the test's output (pytest -s, or -rA)
            print(f"doit {' '.join(args)}: {time.monotonic() - started:.1f}s")

    def popen(self, *args: str, log: Path) -> subprocess.Popen[str]:
        """``doit ARGS`` in the background, its output to ``log``, in its own session."""
        with open(log, "w") as handle:   # the child keeps its own copy of the descriptor
            return subprocess.Popen([str(DOIT), *args], cwd=self.root, env=self.environ,
                                    text=True, stdout=handle, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def workspace(self) -> Any:
        """The copy's workspace in this process (its boto3 calls need the dummy credentials in
        this process's environment: :func:`dummy_credentials`)."""
        from infrablocks.deploy.workspace import open_workspace
        from infrablocks.upgrade.engine import roll

        return open_workspace(self.root, roller=roll)   # as the commands open it

    # -- EC2 as the tests see it ------------------------------------------------------------

    def instances(self, environment: str, block: str | None = None) -> list[dict[str, Any]]:
        filters = [{"Name": "tag:environment", "Values": [environment]}]
        if block:
            filters.append({"Name": "tag:block", "Values": [block]})
        return [i for r in self.ec2.describe_instances(Filters=filters)["Reservations"]
                for i in r["Instances"] if i["State"]["Name"] != "terminated"]

    def leftovers(self, environment: str) -> list[str]:
        """What of ``environment`` still exists in moto (empty after a complete destroy)."""
        from infrablocks.cloud.aws.network import ENVIRONMENT_TAG

        tag = [{"Name": "tag:environment", "Values": [environment]}]
        found = [f"instance {i['InstanceId']} ({i['State']['Name']})"
                 for i in self.instances(environment)]
        found += [f"volume {v['VolumeId']}" for v in
                  self.ec2.describe_volumes(Filters=tag)["Volumes"]]
        found += [f"network interface {n['NetworkInterfaceId']}" for n in
                  self.ec2.describe_network_interfaces(Filters=tag)["NetworkInterfaces"]]
        found += [f"security group {g['GroupId']}" for g in
                  self.ec2.describe_security_groups(Filters=tag)["SecurityGroups"]]
        found += [f"subnet {s['SubnetId']}" for s in self.ec2.describe_subnets(
            Filters=[{"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}])["Subnets"]]
        return found

    def close(self, environments: list[str]) -> list[str]:
        """Destroy whatever the environments still have (Terraform destroy, then the
        platform's sweep) and remove the copy; returns what had to be removed that way."""
        from infrablocks.deploy.orchestrate import teardown_environment

        problems: list[str] = []
        try:
            for process in processes_under(self.root):   # a killed run's Terraform, …
                problems.append(f"process left running: {process}")
                pid = int(process.split(":", 1)[0])
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            if self.root.exists():
                workspace = self.workspace()
                for environment in environments:
                    left = self.leftovers(environment)
                    deployed = environment in workspace.backend.list_environments()
                    if not left and not deployed:
                        continue
                    problems.append(f"{environment} was left: {left or 'state'}")
                    teardown_environment(workspace, environment, handle_signals=False)
                    problems += [f"{environment} still has {what} after the teardown"
                                 for what in self.leftovers(environment)]
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            shutil.rmtree(self.cloud_parent, ignore_errors=True)
        return problems


def open_aws_repo(base: Path, endpoint: str, mirror: Path, *, extra_toml: str = "") -> AwsRepo:
    """Copy the monorepo into ``base/repo`` with the moto platform (see the module docstring)."""
    root = base / "repo"
    root.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".terraform*")
    for name in ("blocks", "images"):
        shutil.copytree(MAIN_REPO / name, root / name, ignore=ignore)
    (root / "dodo.py").write_text(DODO)
    toml = (MAIN_REPO / "blocks.toml").read_text()
    # the moto flavour's gates: instance-level only (moto runs no services)
    toml, count = re.subn(r"^(\[blocks\.base\.rolling\.aws\][^\n]*)\n",
                          r'\1\ncheck = "instances"\n', toml, flags=re.M)
    assert count == 1, "blocks.toml has no [blocks.base.rolling.aws]"
    toml += f"""
[terraform]
mirrors = ["{mirror}"]

[platforms.moto]
kind = "aws"
region = "{REGION}"
endpoint = "{endpoint}"
poll_interval = 0.5
{extra_toml}"""
    (root / "blocks.toml").write_text(toml)
    cloud_parent = Path(tempfile.mkdtemp(prefix="infrablocks-awstest-"))
    return AwsRepo(root, endpoint, mirror, cloud_parent)


# --------------------------------------------------------------------------- state history

@dataclass
class Ec2History:
    """What a poller saw: per instance and per volume, the (time, state) changes."""

    instances: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    instance_tags: dict[str, dict[str, str]] = field(default_factory=dict)
    instance_ips: dict[str, str] = field(default_factory=dict)
    instance_images: dict[str, str] = field(default_factory=dict)
    # volume → [(time, instance it is attached to or None, volume state)]
    volumes: dict[str, list[tuple[float, str | None, str]]] = field(default_factory=dict)
    polls: list[tuple[float, dict[str, str]]] = field(default_factory=list)  # member → state

    def first(self, instance: str, state: str) -> float | None:
        return next((t for t, s in self.instances.get(instance, []) if s == state), None)

    def detached_from(self, volume: str, instance: str) -> float | None:
        """When ``volume`` was first seen no longer attached to ``instance`` (after being so)."""
        attached = False
        for when, owner, _ in self.volumes.get(volume, []):
            if owner == instance:
                attached = True
            elif attached:
                return when
        return None


class Ec2Poller:
    """Polls moto every ``interval`` seconds for one environment's instances and volumes."""

    def __init__(self, ec2: Any, environment: str, block: str, interval: float = 0.2) -> None:
        self.ec2 = ec2
        self.environment = environment
        self.block = block
        self.interval = interval
        self.history = Ec2History()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> Ec2Poller:
        self.poll()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception as exc:  # noqa: BLE001 - recorded, the test reports it
                self.errors.append(repr(exc))

    def poll(self) -> None:
        now = time.monotonic()
        tags = [{"Name": "tag:environment", "Values": [self.environment]},
                {"Name": "tag:block", "Values": [self.block]}]
        history = self.history
        members: dict[str, str] = {}
        for reservation in self.ec2.describe_instances(Filters=tags)["Reservations"]:
            for instance in reservation["Instances"]:
                instance_id, state = instance["InstanceId"], instance["State"]["Name"]
                seen = history.instances.setdefault(instance_id, [])
                if not seen or seen[-1][1] != state:
                    seen.append((now, state))
                history.instance_tags[instance_id] = {t["Key"]: t["Value"]
                                                      for t in instance.get("Tags", [])}
                if instance.get("PrivateIpAddress"):
                    history.instance_ips[instance_id] = instance["PrivateIpAddress"]
                history.instance_images[instance_id] = instance.get("ImageId", "")
                member = history.instance_tags[instance_id].get("member", "?")
                if state == "running" or member not in members:
                    members[member] = state
        history.polls.append((now, members))
        for volume in self.ec2.describe_volumes(Filters=tags)["Volumes"]:
            owner = next((a["InstanceId"] for a in volume.get("Attachments", [])
                          if a.get("State") in ("attaching", "attached")), None)
            seen_volume = history.volumes.setdefault(volume["VolumeId"], [])
            entry = (now, owner, volume["State"])
            if not seen_volume or seen_volume[-1][1:] != entry[1:]:
                seen_volume.append(entry)


def members(repo: AwsRepo, environment: str, block: str) -> dict[str, dict[str, str]]:
    """``{member: {"instance", "ip", "volume", "image"}}`` of the block's running instances."""
    found = {}
    for instance in repo.instances(environment, block):
        if instance["State"]["Name"] != "running":
            continue
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
        volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"]
                   for m in instance.get("BlockDeviceMappings", []) if "Ebs" in m}
        found[tags["member"]] = {"instance": instance["InstanceId"],
                                 "ip": instance.get("PrivateIpAddress", ""),
                                 "volume": volumes.get("/dev/xvdf", ""),
                                 "image": instance.get("ImageId", "")}
    return found


def rolling_problems(history: Ec2History, before: dict[str, dict[str, str]],
                     after: dict[str, dict[str, str]], image_id: str) -> list[str]:
    """Everything wrong with a rolling replacement of ``before``'s members, as ``history``
    recorded it: each old instance stopped before its volume detached from it, one member
    down at a time, every member replaced onto ``image_id`` with its volume and IP kept."""
    problems = []
    if sorted(after) != sorted(before):
        problems.append(f"members before {sorted(before)}, after {sorted(after)}")
    stops = []
    for member, old in sorted(before.items()):
        stopped = history.first(old["instance"], "stopped")
        detached = history.detached_from(old["volume"], old["instance"])
        if stopped is None:
            problems.append(f"member {member}: {old['instance']} was never seen stopped "
                            f"({history.instances.get(old['instance'])})")
            continue
        if detached is None:
            problems.append(f"member {member}: volume {old['volume']} was never seen "
                            f"detaching from {old['instance']}")
            continue
        if not stopped < detached:
            problems.append(f"member {member}: {old['instance']} stopped at {stopped:.2f}, its "
                            f"volume detached at {detached:.2f}")
        running_again = [t for t, s in history.instances[old["instance"]]
                         if s == "running" and stopped < t <= detached]
        if running_again:
            problems.append(f"member {member}: {old['instance']} ran again before its volume "
                            "detached")
        stops.append((stopped, member))
        new = after.get(member)
        if new is None:
            continue
        if new["instance"] == old["instance"]:
            problems.append(f"member {member}: not replaced ({old['instance']})")
        if new["volume"] != old["volume"]:
            problems.append(f"member {member}: volume {old['volume']} → {new['volume']}")
        if new["ip"] != old["ip"]:
            problems.append(f"member {member}: IP {old['ip']} → {new['ip']}")
        if new["image"] != image_id:
            problems.append(f"member {member}: runs {new['image']}, not {image_id}")
    down = [(t, sorted(m for m, s in states.items() if s != "running"))
            for t, states in history.polls]
    together = [(t, d) for t, d in down if len(d) > 1]
    if together:
        problems.append(f"more than one member down at once: {together[:3]}")
    order = [member for _, member in sorted(stops)]
    for previous, following in zip(order, order[1:], strict=False):
        back = next((t for t, s in history.instances.get(after.get(previous, {}).get(
            "instance", ""), []) if s == "running"), None)
        next_stop = history.first(before[following]["instance"], "stopped")
        if back is None or next_stop is None or not back < next_stop:
            problems.append(f"member {following} was stopped before member {previous}'s new "
                            "instance ran")
    return problems


def processes_under(folder: Path) -> list[str]:
    """Processes whose working directory is inside ``folder`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            found.append(f"{entry.name}: {command}")
    return found
