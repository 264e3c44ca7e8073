"""Lock waits and dead holders, with real processes (issue 10, part 5).

A `terraform_data` block whose apply takes a few seconds (a `local-exec` sleep):

- `doit create` is killed with SIGKILL while Terraform applies. Terraform runs in its own
  session and keeps going. A second `create` at once takes over the dead holder's lock and says
  so, but waits for the Terraform it left running; with a short `--lock-timeout` it gives up
  saying so and writes nothing; with the default it waits until that Terraform has written its
  state, then finishes. No record is ever `failed`, and none is written while the orphaned apply
  runs.
- A second `create` while a live one holds the lock waits, saying who holds it and since when,
  then goes on; with `--lock-timeout 0` it is refused at once, naming the holder.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.processes import is_alive
from infrablocks.state.locks import LockInfo, lock_workers
from tests.support.tfdata_repo import ENV, TfDataRepo, ok

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.slow]

SLOW = '''
resource "terraform_data" "slow" {{
  input = "{marker}"
  provisioner "local-exec" {{
    command = "sleep {seconds}"
  }}
}}

output "marker" {{
  value = terraform_data.slow.output
}}
'''


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[TfDataRepo]:
    repo = TfDataRepo(tmp_path)
    repo.add("slow", "1.0.0", SLOW.format(marker="one", seconds=12))
    try:
        yield repo
    finally:
        repo.close()


class RecordWatch:
    """Polls the block's record in a thread: every status it was seen in, in order."""

    def __init__(self, repo: TfDataRepo, block: str) -> None:
        self.backend = repo.backend()
        self.block = block
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        try:
            record = self.backend.get_record(ENV, self.block)
        except Exception:   # half-written: the next poll sees it
            return
        status = record.status if record else "none"
        if not self.seen or self.seen[-1] != status:
            self.seen.append(status)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poll()
            time.sleep(0.05)

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()                 # the last status, written just before the command ended
        return self.seen


def wait_for_apply(process, timeout: float = 120.0) -> list[str]:
    """Read the background doit's stderr until its block reached `apply` (and Terraform had a
    moment to start the provisioner)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stderr is not None
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "slow: apply" in line:
            time.sleep(2.0)
            return lines
    raise AssertionError("never reached apply:\n" + "".join(lines))


def lock_info(repo: TfDataRepo) -> LockInfo:
    path = repo.root / ".infrablocks" / "state" / ENV / "slow" / "infrablocks.lock.json"
    info = LockInfo.loads(path.read_bytes())
    assert info is not None
    return info


def test_create_killed_during_apply_the_next_create_waits_for_its_terraform(
        repo: TfDataRepo, tmp_path: Path) -> None:
    first = repo.popen("create", "slow", "--env", ENV, "--yes")
    try:
        wait_for_apply(first)
        holder = lock_info(repo)
        assert holder.pid == first.pid
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    orphans = lock_workers(holder.token)
    assert orphans, "the killed create's Terraform should still be applying"
    assert repo.record("slow").status == "creating"

    watch = RecordWatch(repo, "slow")
    try:
        impatient = repo.doit("create", "slow", "--env", ENV, "--yes", "--lock-timeout", "1")
        assert impatient.returncode == 1, impatient.stdout + impatient.stderr
        assert "Traceback" not in impatient.stderr
        text = " ".join((impatient.stdout + impatient.stderr).split())
        assert f"(pid {holder.pid}, since {holder.since}) died" in text
        assert "the Terraform it started still runs (pid" in text
        assert "nothing was changed" in text
        assert any(is_alive(pid) for pid in orphans)    # it gave up while they ran
        assert repo.record("slow").status == "creating"       # and wrote nothing

        report = tmp_path / "second.json"
        second = repo.doit("create", "slow", "--env", ENV, "--yes", "--report", str(report))
    finally:
        seen = watch.stop()
    ok(second)
    text = " ".join(second.stderr.split()) + " ".join(second.stdout.split())
    assert "died holding the lock of slow; waiting up to" in text
    assert "for the Terraform it left running (pid" in text
    assert not any(is_alive(pid) for pid in orphans)
    node = json.loads(report.read_text())["run"]["nodes"][0]
    assert node["status"] == "succeeded"
    assert any("took over the lock" in note for note in node["detail"]["notes"])
    # the orphan finished the apply: the second create found an empty plan
    assert node["detail"]["action"] == "unchanged", node
    assert repo.record("slow").status == "deployed"
    assert repo.outputs("slow")["marker"] == "one"
    assert "failed" not in seen, seen
    # no record was written while the orphaned Terraform applied: `creating` until it ended
    assert seen[0] == "creating" and seen[-1] == "deployed", seen


def test_a_second_create_waits_for_a_live_holder_or_is_refused_at_once(
        repo: TfDataRepo, tmp_path: Path) -> None:
    first = repo.popen("create", "slow", "--env", ENV, "--yes")
    try:
        wait_for_apply(first)
        holder = lock_info(repo)
        refused = repo.doit("create", "slow", "--env", ENV, "--yes", "--lock-timeout", "0",
                            "--report", str(tmp_path / "refused.json"))
        waited = repo.doit("create", "slow", "--env", ENV, "--yes",
                           "--report", str(tmp_path / "waited.json"))
        first_stdout, first_stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, first_stdout + first_stderr

    assert refused.returncode == 1, refused.stdout + refused.stderr
    [node] = json.loads((tmp_path / "refused.json").read_text())["run"]["nodes"]
    assert "block 'slow' in environment 'stage' is locked by" in node["error"]
    assert f"(pid {holder.pid}, running `create`) since {holder.since}" in node["error"]

    ok(waited)
    text = " ".join(waited.stderr.split())
    assert (f"waiting up to 300s for the lock of slow: held by {holder.holder} "
            f"(pid {holder.pid}, running `create`) since {holder.since}") in text
    [node] = json.loads((tmp_path / "waited.json").read_text())["run"]["nodes"]
    assert node["detail"]["action"] == "unchanged"
