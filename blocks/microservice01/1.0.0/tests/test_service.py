"""Checks of a live microservice01 deployment: the service is healthy, an item written over
HTTP is read back through the app, and it is stored in the service's own database in stolon.
Run by infrablocks with ``-p infrablocks.blocktests`` (fixtures ``outputs`` and
``dependency_outputs``); uses Debian's ``psql`` for the database check."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid

PSQL = "/usr/bin/psql"
WAIT_SECONDS = 60


def request(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_healthy(url: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = request("GET", f"{url}/health")
            last = (status, body)
            if status == 200:
                return json.loads(body)
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(1)
    raise AssertionError(f"{url}/health not 200 after {WAIT_SECONDS}s: {last}")


def test_the_service_is_healthy(outputs):
    health = wait_healthy(outputs["url"])
    assert health["status"] == "ok"
    assert health["database"] == outputs["database"]


def test_put_then_get_round_trip(outputs):
    wait_healthy(outputs["url"])
    key = f"blocktest-{uuid.uuid4().hex[:12]}"
    value = f"value {uuid.uuid4().hex} é"
    status, _ = request("PUT", f"{outputs['url']}/items/{key}", value.encode())
    assert status == 204
    status, body = request("GET", f"{outputs['url']}/items/{key}")
    assert status == 200 and body.decode() == value
    status, _ = request("GET", f"{outputs['url']}/items/missing-{key}")
    assert status == 404


def test_items_live_in_the_service_s_own_database(outputs, dependency_outputs):
    wait_healthy(outputs["url"])
    stolon = dependency_outputs["stolon"]
    key = f"blocktest-{uuid.uuid4().hex[:12]}"
    status, _ = request("PUT", f"{outputs['url']}/items/{key}", b"in-postgres")
    assert status == 204
    dsn = (f"host={','.join(stolon['hosts'])} port={stolon['port']} user={stolon['superuser']}"
           f" dbname={outputs['database']} target_session_attrs=read-write connect_timeout=5")
    # A replica that has not replayed the service's CREATE DATABASE yet answers "database does
    # not exist" and libpq stops there: retry for a bounded while.
    deadline = time.monotonic() + 20
    while True:
        result = subprocess.run(
            [PSQL, dsn, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c",
             f"SELECT value FROM items WHERE key = '{key}'"],
            capture_output=True, text=True, timeout=30, check=False,
            env={**os.environ, "PGPASSWORD": stolon["superuser_password"]})
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "in-postgres"
