"""Checks of a live nomad deployment: the scheduler's XML-RPC API answers, its jobs directory
exists, and the node is registered in base's etcd. Run by infrablocks with
``-p infrablocks.blocktests`` (fixtures ``outputs`` and ``dependency_outputs``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import xmlrpc.client
from pathlib import Path

ETCDCTL = "/usr/bin/etcdctl"


def test_outputs_name_the_node(outputs):
    assert outputs["api_url"] == f"http://{outputs['node_ip']}:9001"
    assert Path(outputs["jobs_dir"]).is_absolute()


def test_the_scheduler_api_answers(outputs):
    proxy = xmlrpc.client.ServerProxy(f"{outputs['api_url']}/RPC2")
    assert proxy.supervisor.getState()["statename"] == "RUNNING"
    assert proxy.supervisor.getAPIVersion()
    assert isinstance(proxy.supervisor.getAllProcessInfo(), list)


def test_the_jobs_directory_exists(outputs):
    assert Path(outputs["jobs_dir"]).is_dir()


def test_the_node_is_registered_in_base(outputs, dependency_outputs):
    base = dependency_outputs["base"]
    prefix = f"/{base['cluster_name']}/nomad/nodes/"
    result = subprocess.run(
        [ETCDCTL, f"--endpoints={','.join(base['endpoints'])}", "--command-timeout=5s",
         "get", "--prefix", prefix, "-w", "json"],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "ETCDCTL_API": "3"})
    assert result.returncode == 0, result.stderr
    records = [json.loads(base64.b64decode(kv["value"]))
               for kv in json.loads(result.stdout).get("kvs", [])]
    assert [r["api_url"] for r in records] == [outputs["api_url"]]
    assert records[0]["ip"] == outputs["node_ip"]
