"""Checks of a live base deployment: the etcd cluster is quorate, and a write is readable from
every member. Run by infrablocks with ``-p infrablocks.blocktests`` (fixture ``outputs``)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

ETCDCTL = "/usr/bin/etcdctl"


def etcdctl(endpoints: list[str], *args: str, timeout: float = 20.0) -> str:
    result = subprocess.run(
        [ETCDCTL, f"--endpoints={','.join(endpoints)}", "--command-timeout=5s", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert result.returncode == 0, f"etcdctl {' '.join(args)}: {result.stderr or result.stdout}"
    return result.stdout


def test_outputs_name_three_members(outputs):
    assert len(outputs["member_ips"]) == 3
    assert outputs["endpoints"] == [f"http://{ip}:2379" for ip in outputs["member_ips"]]
    assert outputs["cluster_name"]


def test_cluster_is_quorate_and_every_member_healthy(outputs):
    # Terraform returns once the instances run, as on EC2; the members may still be joining.
    # `--cluster` lists only members that have published their client URLs, so wait (bounded)
    # until all of them have, and are healthy.
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run(
            [ETCDCTL, f"--endpoints={outputs['endpoints'][0]}", "--command-timeout=3s",
             "endpoint", "health", "--cluster", "-w", "json"],
            capture_output=True, text=True, timeout=20, check=False,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
        listed = (sorted(h["endpoint"] for h in json.loads(result.stdout))
                  if result.returncode == 0 else [])
        if listed == sorted(outputs["endpoints"]) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, result.stderr or result.stdout
    health = json.loads(result.stdout)
    assert sorted(h["endpoint"] for h in health) == sorted(outputs["endpoints"])
    assert all(h["health"] for h in health)


def test_members_match_outputs(outputs):
    members = json.loads(etcdctl(outputs["endpoints"], "member", "list", "-w", "json"))
    client_urls = sorted(url for m in members["members"] for url in m["clientURLs"])
    assert client_urls == sorted(outputs["endpoints"])


def test_write_then_read_from_every_member(outputs):
    key = f"/infrablocks/blocktest/{outputs['cluster_name']}/{uuid.uuid4().hex}"
    value = uuid.uuid4().hex
    etcdctl(outputs["endpoints"][:1], "put", key, value)
    try:
        for endpoint in outputs["endpoints"]:
            got = etcdctl([endpoint], "get", key, "--print-value-only").strip()
            assert got == value, f"{endpoint} returned {got!r}"
    finally:
        etcdctl(outputs["endpoints"], "del", key)
