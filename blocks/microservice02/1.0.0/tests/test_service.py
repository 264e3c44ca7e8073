"""Checks of a live microservice02 deployment: health and echo over HTTP. Run by infrablocks
with ``-p infrablocks.blocktests`` (fixture ``outputs``)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

WAIT_SECONDS = 30


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_healthy(url: str) -> dict:
    deadline = time.monotonic() + WAIT_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = get(f"{url}/health")
            last = (status, body)
            if status == 200:
                return body
        except (urllib.error.URLError, OSError) as error:
            last = error
        time.sleep(0.5)
    raise AssertionError(f"{url}/health not 200 after {WAIT_SECONDS}s: {last}")


def test_the_service_is_healthy(outputs):
    health = wait_healthy(outputs["url"])
    assert health == {"status": "ok", "service": "microservice02", "version": "1.0.0"}


def test_echo_returns_the_message(outputs):
    wait_healthy(outputs["url"])
    message = "hello, blocks & friends ✓"
    status, body = get(f"{outputs['url']}/echo?{urllib.parse.urlencode({'msg': message})}")
    assert status == 200 and body == {"echo": message}


def test_echo_without_a_message_is_a_client_error(outputs):
    wait_healthy(outputs["url"])
    status, body = get(f"{outputs['url']}/echo")
    assert status == 400 and "msg" in body["error"]
