"""Verifying an image by booting it: an instance on the local cloud (with a scratch volume), or
the entrypoint as a process the way a scheduler job runs it, then the image's own checks
(``checks.toml``, see :mod:`infrablocks.images.acceptance`).

Everything the verification starts (companions, the instance, volumes, processes) is removed
again, whatever happens.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from infrablocks.errors import InfrablocksError
from infrablocks.images.acceptance import BootSpec, CheckSpec, VerifySpec, substitute
from infrablocks.private_files import open_private
from infrablocks.waiting import Deadline, poll

if TYPE_CHECKING:
    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.cloud.local.records import Image

VERIFY_SUBNET_ENV = "INFRABLOCKS_VERIFY_SUBNET"
# Outside the environments' subnets (127.42.1-199.0/24); override with the variable above.
DEFAULT_VERIFY_SUBNET = "127.42.230.0/24"
VERIFY_TAG = "infrablocks:verify"   # tag on everything a verification creates
STOP_GRACE = 15.0                   # an etcd member alone may take a few seconds to stop
CONSOLE_LINES = 30


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str          # what was seen (last attempt)
    seconds: float


@dataclass
class BootVerification:
    """What verifying one image showed."""

    ref: str
    image_id: str
    private_ip: str | None = None
    boot_error: str | None = None        # the image (or a companion) did not come up
    checks: list[CheckResult] = field(default_factory=list)
    console: str = ""                    # the tail of the image's console log
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.boot_error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def problems(self) -> list[str]:
        found = [self.boot_error] if self.boot_error else []
        found += [f"check failed: {c.name}: {c.detail}" for c in self.checks if not c.ok]
        return found


@dataclass
class _Booted:
    ip: str
    instance_dir: str = ""
    volume_dir: str = ""
    image_dir: str = ""
    instance_id: str | None = None
    console: Callable[[], str] = lambda: ""


Progress = Callable[[str], None]


def verify_subnet() -> ipaddress.IPv4Network:
    text = os.environ.get(VERIFY_SUBNET_ENV, DEFAULT_VERIFY_SUBNET)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        network = None
    if network is None or not isinstance(network, ipaddress.IPv4Network) or \
            not network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise InfrablocksError(f"${VERIFY_SUBNET_ENV} = {text!r} is not a loopback network",
                               hint=f"e.g. {DEFAULT_VERIFY_SUBNET}")
    return network


def free_addresses(cloud: LocalCloud, count: int,
                   subnet: ipaddress.IPv4Network | None = None) -> list[str]:
    """``count`` addresses of the verification subnet that no instance of ``cloud`` holds and
    nothing on this machine listens on."""
    subnet = subnet or verify_subnet()
    taken = {i.private_ip for i in cloud.describe_instances()} | _listening_addresses()
    free = [str(ip) for ip in subnet.hosts() if str(ip) not in taken and ip.packed[3] != 0]
    if len(free) < count:
        raise InfrablocksError(f"no free address for an image verification in {subnet}",
                               hint=f"set ${VERIFY_SUBNET_ENV} to another loopback /24")
    return free[:count]


def boot_verify(spec: VerifySpec, image: Image, cloud: LocalCloud,
                companion_images: dict[str, Image], *,
                subnet: ipaddress.IPv4Network | None = None,
                progress: Progress | None = None) -> BootVerification:
    """Boot ``image`` as ``spec`` says (companions first), run its checks, tear it all down.

    ``companion_images`` maps each companion's name to its registered image.
    """
    say = progress or (lambda _text: None)
    started = time.monotonic()
    result = BootVerification(ref=str(spec.ref), image_id=image.id)
    addresses = free_addresses(cloud, 1 + len(spec.companions), subnet)
    values: dict[str, str] = {}
    with ExitStack() as cleanup, tempfile.TemporaryDirectory(prefix="infrablocks-verify-") as tmp:
        main: _Booted | None = None
        try:
            for companion, ip in zip(spec.companions, addresses[1:], strict=True):
                say(f"booting companion {companion.name} ({companion.image}) on {ip}")
                values[f"{companion.name}.ip"] = ip
                _boot(cloud, companion_images[companion.name], companion.boot, ip,
                      f"verify-{spec.ref.name}-{companion.name}", values,
                      Path(tmp) / companion.name, cleanup)
            result.private_ip = addresses[0]
            values.update(ip=addresses[0])
            say(f"booting {spec.ref} on {addresses[0]}")
            main = _boot(cloud, image, spec.boot, addresses[0], f"verify-{spec.ref.name}",
                         values, Path(tmp) / "image", cleanup)
        except InfrablocksError as exc:
            result.boot_error = f"boot failed: {exc.message}"
        except OSError as exc:
            result.boot_error = f"boot failed: {exc}"
        if main is not None:
            values.update(instance_dir=main.instance_dir, volume_dir=main.volume_dir,
                          image_dir=main.image_dir)
            for check in spec.checks:
                say(f"check: {check.name}")
                result.checks.append(_run_check(check, values, main))
            if not result.ok:
                result.console = main.console()
        say("cleaning up")
    result.seconds = time.monotonic() - started
    return result


# -- booting -------------------------------------------------------------------------------------


def _boot(cloud: LocalCloud, image: Image, boot: BootSpec, ip: str, name: str,
          values: dict[str, str], scratch: Path, cleanup: ExitStack) -> _Booted:
    values = {**values, "ip": ip, "image_dir": image.path}
    if boot.kind == "process":
        return _boot_process(image, boot, ip, values, scratch, cleanup)
    return _boot_instance(cloud, image, boot, ip, name, values, cleanup)


def _boot_instance(cloud: LocalCloud, image: Image, boot: BootSpec, ip: str, name: str,
                   values: dict[str, str], cleanup: ExitStack) -> _Booted:
    tags = {VERIFY_TAG: image.ref, "purpose": "image-verify"}
    user_data = {k: substitute(v, values) for k, v in boot.user_data.items()}
    volume = None
    if boot.volume:
        volume = cloud.create_volume(name=f"{name}-data", size_gb=1, tags=tags)
        cleanup.callback(_quietly, cloud.delete_volume, volume.id)
    instance = cloud.run_instance(name=name, image_id=image.id, private_ip=ip,
                                  user_data=user_data, tags=tags)
    cleanup.callback(_quietly, cloud.terminate_instance, instance.id, grace=STOP_GRACE)
    if volume is not None and boot.volume:
        cloud.attach_volume(volume.id, instance.id, boot.volume)
    booted = _Booted(ip=ip, instance_dir=instance.path, volume_dir=volume.path if volume else "",
                     image_dir=image.path, instance_id=instance.id,
                     console=lambda: cloud.console_output(instance.id, CONSOLE_LINES))
    cloud.wait_until_ready(instance.id, timeout=boot.ready_timeout)
    return booted


def _boot_process(image: Image, boot: BootSpec, ip: str, values: dict[str, str], scratch: Path,
                  cleanup: ExitStack) -> _Booted:
    scratch.mkdir(parents=True, exist_ok=True)
    log_path = scratch / "console.log"
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "LOCALCLOUD_IMAGE_DIR": image.path,
           "LOCALCLOUD_PRIVATE_IP": ip,
           **{k: substitute(v, values) for k, v in boot.environment.items()}}
    with open_private(log_path, "w") as log:
        process = subprocess.Popen([str(Path(image.path) / "entrypoint")], cwd=scratch, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    cleanup.callback(_stop_process, process)

    def console() -> str:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-CONSOLE_LINES:])

    time.sleep(0.2)
    if process.poll() is not None:
        raise InfrablocksError(f"the entrypoint exited with code {process.returncode}; "
                               f"console:\n{console()}")
    return _Booted(ip=ip, instance_dir=str(scratch), image_dir=image.path, console=console)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 5.0)):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _quietly(call: Callable[..., object], *args: object, **kwargs: object) -> None:
    """Cleanup goes on after a failure; what could not be removed is said on stderr."""
    try:
        call(*args, **kwargs)
    except InfrablocksError as exc:
        print(f"image verification cleanup: {exc.message}", file=sys.stderr)


# -- checks --------------------------------------------------------------------------------------


def _run_check(check: CheckSpec, values: dict[str, str], booted: _Booted) -> CheckResult:
    deadline = Deadline(check.timeout)
    polled = poll(lambda: _attempt(check, values, booted, max(1.0, deadline.remaining())),
                  lambda outcome: outcome[0], timeout=deadline, interval=0.5)
    ok, detail = polled.value
    return CheckResult(check.name, ok, detail, polled.elapsed)


def _attempt(check: CheckSpec, values: dict[str, str], booted: _Booted,
             remaining: float) -> tuple[bool, str]:
    if check.volume_mounted:
        return _volume_mounted(booted)
    if check.http:
        return _http(check, substitute(check.http, values),
                     substitute(check.body_contains or "", values), min(remaining, 5.0))
    command = [substitute(part, values) for part in check.command]
    try:
        run = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                             timeout=min(remaining, 10.0), check=False)
    except FileNotFoundError:
        return False, f"{command[0]} not found"
    except subprocess.TimeoutExpired:
        return False, f"`{' '.join(command)}` did not finish in {min(remaining, 10.0):.0f}s"
    output = (run.stdout + run.stderr).strip()
    shown = output.splitlines()[-1] if output else "(no output)"
    if run.returncode != 0:
        return False, f"`{' '.join(command)}` exited {run.returncode}: {shown}"
    expected = substitute(check.output_contains or "", values)
    if expected and expected not in output:
        return False, f"output lacks {expected!r}: {shown}"
    return True, shown


def _http(check: CheckSpec, url: str, body_contains: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback)
            status, body = response.status, response.read(65536).decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read(65536).decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        return False, f"GET {url}: {getattr(exc, 'reason', exc)}"
    if status != check.status:
        return False, f"GET {url}: status {status}, expected {check.status}: {body[:200]}"
    if body_contains and body_contains not in body:
        return False, f"GET {url}: body lacks {body_contains!r}: {body[:200]}"
    return True, f"GET {url}: {status}"


def _volume_mounted(booted: _Booted) -> tuple[bool, str]:
    if not booted.volume_dir:
        return False, "no scratch volume (set boot.volume)"
    volume = Path(booted.volume_dir)
    if not (volume / ".formatted").is_file():
        return False, f"{volume}/.formatted missing: the volume was not formatted"
    try:
        mounted = (volume / ".mounted").read_text().strip()
    except FileNotFoundError:
        return False, f"{volume}/.mounted missing: the volume is not mounted"
    if booted.instance_id and booted.instance_id not in mounted:
        return False, f".mounted names {mounted!r}, not the instance {booted.instance_id}"
    return True, f"formatted and mounted by {booted.instance_id}"


def _listening_addresses() -> set[str]:
    """IPv4 addresses some socket of this network namespace is bound to (psutil): a verify
    instance never takes one."""
    import psutil

    return {c.laddr.ip.removeprefix("::ffff:") for c in psutil.net_connections(kind="inet")
            if c.laddr and "." in c.laddr.ip}