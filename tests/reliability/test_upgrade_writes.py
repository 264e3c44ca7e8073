"""Continuous writes to base's etcd cluster throughout a rolling upgrade: no acknowledged write
may be lost. Reports how many write attempts failed, how many writes needed retries, and the
longest stretch without a successful write (printed, and as junit properties)."""

from __future__ import annotations

import base64
import threading
import time
import urllib.error
from dataclasses import dataclass, field

import pytest

from tests.support.upgrade_env import UpgradeRepo, b64

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

PREFIX = "/writes/"
MAX_SECONDS = 300        # the writer stops by itself after this, whatever happens
MAX_ATTEMPTS = 50        # per write, across endpoints, 0.1 s apart


@dataclass
class WriterStats:
    acknowledged: dict[str, str] = field(default_factory=dict)
    failed_attempts: int = 0
    retried_writes: int = 0
    abandoned_writes: int = 0
    longest_gap: float = 0.0
    errors: list[str] = field(default_factory=list)


class Writer(threading.Thread):
    def __init__(self, repo: UpgradeRepo) -> None:
        super().__init__(daemon=True)
        self.repo = repo
        self.stats = WriterStats()
        self.stop_event = threading.Event()

    def run(self) -> None:
        started = last_ok = time.monotonic()
        sequence = 0
        while not self.stop_event.is_set() and time.monotonic() - started < MAX_SECONDS:
            key, value = f"{PREFIX}{sequence:06d}", f"value-{sequence}"
            for attempt in range(MAX_ATTEMPTS):
                ip = self.repo.ips[(sequence + attempt) % len(self.repo.ips)]
                try:
                    self.repo.put(key, value, ip=ip)
                except (OSError, urllib.error.URLError, ValueError) as exc:
                    self.stats.failed_attempts += 1
                    if len(self.stats.errors) < 20:
                        self.stats.errors.append(f"{key} via {ip}: {exc}")
                    time.sleep(0.1)
                    continue
                now = time.monotonic()
                self.stats.longest_gap = max(self.stats.longest_gap, now - last_ok)
                last_ok = now
                self.stats.acknowledged[key] = value
                if attempt:
                    self.stats.retried_writes += 1
                break
            else:
                self.stats.abandoned_writes += 1
            sequence += 1
            time.sleep(0.01)


def acknowledged_after(writer: Writer, count: int, timeout: float = 60.0) -> int:
    """Wait until the writer has `count` acknowledged writes (or `timeout` seconds pass, or
    the writer died); the number it has then. Waiting on the count, not on a clock, keeps the
    test the same on a loaded machine where each put takes longer."""
    deadline = time.monotonic() + timeout
    while (len(writer.stats.acknowledged) < count and writer.is_alive()
           and time.monotonic() < deadline):
        time.sleep(0.05)
    return len(writer.stats.acknowledged)


def read_all(repo: UpgradeRepo, ip: str) -> dict[str, str]:
    end = PREFIX[:-1] + chr(ord(PREFIX[-1]) + 1)
    found = repo.etcd(ip, "/v3/kv/range", {"key": b64(PREFIX), "range_end": b64(end)},
                      timeout=10)
    return {base64.b64decode(kv["key"]).decode(): base64.b64decode(kv["value"]).decode()
            for kv in found.get("kvs") or []}


@pytest.fixture
def repo():
    repo = UpgradeRepo()
    try:
        yield repo
    finally:
        problems = repo.close()
    assert not problems, problems


def test_no_acknowledged_write_is_lost_during_a_rolling_upgrade(repo, record_property):
    repo.create("1.0.0")
    writer = Writer(repo)
    writer.start()
    try:
        before = acknowledged_after(writer, 20)          # writes flow before the upgrade
        done = repo.upgrade()
        at_end = len(writer.stats.acknowledged)
        after = acknowledged_after(writer, at_end + 20)  # and still flow after it
    finally:
        writer.stop_event.set()
        writer.join(timeout=MAX_ATTEMPTS * 0.2 + 30)
    assert not writer.is_alive()
    assert done.returncode == 0, done.stdout + done.stderr
    stats = writer.stats
    report = (f"writes acknowledged {len(stats.acknowledged)}, failed attempts "
              f"{stats.failed_attempts}, writes retried {stats.retried_writes}, abandoned "
              f"{stats.abandoned_writes}, longest gap between acknowledged writes "
              f"{stats.longest_gap:.2f}s")
    print(report, *stats.errors, sep="\n")
    for name in ("failed_attempts", "retried_writes", "abandoned_writes", "longest_gap"):
        record_property(name, getattr(stats, name))
    record_property("acknowledged", len(stats.acknowledged))
    # the writer ran before, throughout and after the upgrade (counts, not clock time: how many
    # writes fit in a second depends on the machine)
    assert before >= 20 and at_end > before and after >= at_end + 20, (before, at_end, after,
                                                                       report)
    for ip in repo.ips:
        stored = read_all(repo, ip)
        lost = [k for k, v in stats.acknowledged.items() if stored.get(k) != v]
        assert not lost, f"{len(lost)} acknowledged writes missing on {ip}: {lost[:10]}"
    assert stats.abandoned_writes == 0, report
