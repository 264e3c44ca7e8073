"""Checks of a live stolon deployment: one Patroni leader, every other member a streaming
replica, and a row written on the primary is read back from every replica. Run by infrablocks
with ``-p infrablocks.blocktests`` (fixture ``outputs``); uses Debian's ``psql``."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

PSQL = "/usr/bin/psql"
WAIT_SECONDS = 90


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def psql(outputs: dict, hosts: list[str], sql: str, *, read_write: bool = False) -> str:
    dsn = (f"host={','.join(hosts)} port={outputs['port']} user={outputs['superuser']} "
           f"dbname=postgres connect_timeout=5"
           + (" target_session_attrs=read-write" if read_write else ""))
    result = subprocess.run(
        [PSQL, dsn, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, check=False,
        env={**os.environ, "PGPASSWORD": outputs["superuser_password"]})
    assert result.returncode == 0, f"psql on {hosts}: {result.stderr.strip()}"
    return result.stdout.strip()


def cluster_view(outputs: dict) -> tuple[dict, list[dict]]:
    """(the leader's /patroni, the members of /cluster) once one leader and every other member
    streams from it; fails after WAIT_SECONDS with the last view."""
    deadline = time.monotonic() + WAIT_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            members = get_json(f"{outputs['patroni_api_urls'][0]}/cluster")["members"]
            leaders = [m for m in members if m["role"] == "leader"]
            if len(leaders) == 1 and len(members) == len(outputs["hosts"]):
                leader = get_json(leaders[0]["api_url"])
                streaming = {r["application_name"] for r in leader.get("replication", [])
                             if r.get("state") == "streaming"}
                replicas = {m["name"] for m in members if m["role"] == "replica"}
                last = (members, leader.get("replication"))
                if len(replicas) == len(members) - 1 and replicas <= streaming:
                    return leader, members
        except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
            last = error
        time.sleep(1)
    raise AssertionError(f"no leader with streaming replicas after {WAIT_SECONDS}s: {last}")


def test_outputs_describe_three_members(outputs):
    assert len(outputs["hosts"]) == 3
    assert outputs["port"] == 5432
    assert outputs["superuser"] == "postgres"
    assert outputs["superuser_password"]
    assert outputs["patroni_api_urls"] == [f"http://{h}:8008" for h in outputs["hosts"]]
    assert outputs["scope"]


def test_one_leader_and_every_other_member_streams_from_it(outputs):
    leader, members = cluster_view(outputs)
    assert sorted(m["host"] for m in members) == sorted(outputs["hosts"])
    assert leader["role"] == "master" and leader["state"] == "running"
    assert leader["patroni"]["scope"] == outputs["scope"]
    for member in members:
        if member["role"] == "replica":
            assert member["state"] == "running"


def test_write_on_the_primary_is_read_on_every_replica(outputs):
    _, members = cluster_view(outputs)
    replicas = [m["host"] for m in members if m["role"] == "replica"]
    table = f"blocktest_{uuid.uuid4().hex[:12]}"
    value = uuid.uuid4().hex
    psql(outputs, outputs["hosts"],
         f"CREATE TABLE {table} (v text); INSERT INTO {table} VALUES ('{value}')",
         read_write=True)
    try:
        for host in replicas:
            assert psql(outputs, [host], "SELECT pg_is_in_recovery()") == "t"
            deadline = time.monotonic() + 30
            while True:
                try:
                    got = psql(outputs, [host], f"SELECT v FROM {table}")
                except AssertionError:
                    got = None
                if got == value or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert got == value, f"replica {host} returned {got!r}"
    finally:
        psql(outputs, outputs["hosts"], f"DROP TABLE IF EXISTS {table}", read_write=True)
