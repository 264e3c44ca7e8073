"""Local cloud speed: control-plane operations and the provider under real Terraform.

Run: ``.venv/bin/python benchmarks/bench_localcloud.py [--instances 10]``. Prints the time of
each phase; everything runs in a temporary cloud that is dismantled at the end. Uses addresses
127.42.209.x.

What to expect on a 2-core machine: run_instance a few ms, stop (SIGTERM honoured) ~10-20 ms,
a Terraform apply of N instances + volumes + attachments ~1-2 s for N=10 (provider start-up
dominates: Terraform starts the provider 3-4 times per command). Measured: apply of 10 ≈ 1.8 s,
plan 0.8 s, destroy 1.3 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.mirror import write_cli_config

TERRAFORM = Path(sys.executable).parent / "terraform"

MAIN_TF = """
terraform {
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud", version = "~> 0.1" }
  }
}
provider "localcloud" {}
variable "n" { default = %d }
data "localcloud_image" "idle" {
  name    = "idle"
  version = "1.0.0"
}
resource "localcloud_volume" "v" {
  count = var.n
  name = "bench-${count.index}"
  size_gb = 1
}
resource "localcloud_instance" "i" {
  count = var.n
  name = "bench-${count.index}"
  image_id = data.localcloud_image.idle.id
  private_ip = "127.42.209.${10 + count.index}"
}
resource "localcloud_volume_attachment" "a" {
  count = var.n
  volume_id = localcloud_volume.v[count.index].id
  instance_id = localcloud_instance.i[count.index].id
  device_name = "xvdf"
  stop_instance_before_detaching = true
}
"""


@contextmanager
def timed(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"{label:<45} {time.perf_counter() - started:8.3f} s")


def each(label: str, items: list, call: Callable) -> None:
    with timed(f"{label} ×{len(items)}"):
        for item in items:
            call(item)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    count = parser.parse_args().instances
    with tempfile.TemporaryDirectory(prefix="bench-localcloud-") as tmp:
        root = Path(tmp)
        cloud = LocalCloud(root / "cloud")
        artifact = root / "artifact"
        artifact.mkdir()
        (artifact / "entrypoint").write_text(
            "#!/bin/sh\ntouch \"$LOCALCLOUD_INSTANCE_DIR/ready\"\nexec sleep 600\n")
        (artifact / "entrypoint").chmod(0o755)
        try:
            with timed("register_image"):
                image = cloud.register_image("idle", "1.0.0", artifact)
            ips = [f"127.42.209.{10 + n}" for n in range(count)]
            started = []
            each("run_instance", ips, lambda ip: started.append(
                cloud.run_instance(name=ip, image_id=image.id, private_ip=ip)))
            each("wait_until_ready", started, lambda i: cloud.wait_until_ready(i.id, 10))
            with timed("describe_instances"):
                cloud.describe_instances()
            each("stop_instance", started, lambda i: cloud.stop_instance(i.id, grace=5))
            each("start_instance", started, lambda i: cloud.start_instance(i.id))
            each("terminate_instance", started, lambda i: cloud.terminate_instance(i.id, 5))

            workdir = root / "tf"
            workdir.mkdir()
            (workdir / "main.tf").write_text(MAIN_TF % count)
            config = write_cli_config(root / "terraform.rc", root / "mirror", root / "cache")
            env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
            env.update(TF_CLI_CONFIG_FILE=str(config), CHECKPOINT_DISABLE="1",
                       TF_IN_AUTOMATION="1", LOCALCLOUD_ROOT=str(cloud.root))

            def terraform(*args: str) -> None:
                proc = subprocess.run([str(TERRAFORM), *args, "-input=false", "-no-color"],
                                      cwd=workdir, env=env, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"terraform {args[0]} failed:\n{proc.stdout}{proc.stderr}")

            with timed("terraform init"):
                terraform("init")
            with timed(f"terraform apply ({count} instances, volumes, attachments)"):
                terraform("apply", "-auto-approve")
            with timed("terraform plan (no changes)"):
                terraform("plan")
            with timed("terraform destroy"):
                terraform("destroy", "-auto-approve")
        finally:
            for instance in cloud.describe_instances():
                cloud.terminate_instance(instance.id, grace=1)


if __name__ == "__main__":
    main()
