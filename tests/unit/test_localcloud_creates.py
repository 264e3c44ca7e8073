"""Client tokens (EC2's ClientToken) on the local cloud, and the provider's journal of creates
that no Terraform state has confirmed (cloud/local/provider_creates.py). Under real Terraform,
with the provider killed mid-apply: tests/integration/test_shared_provider.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.errors import InvalidStateError
from infrablocks.cloud.local.provider_creates import CreateJournal
from infrablocks.cloud.local.records import Image
from tests.support.localcloud import terminating_cloud, write_artifact

ARGUMENTS = {"name": "m1", "private_ip": "127.42.204.11", "user_data": {}, "tags": {"a": "b"}}


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[LocalCloud]:
    with terminating_cloud(tmp_path / "cloud") as cloud:
        yield cloud


@pytest.fixture
def image(cloud: LocalCloud, tmp_path: Path) -> Image:
    return cloud.register_image("idle", "1.0.0", write_artifact(tmp_path / "artifact"))


def test_a_client_token_makes_run_instance_and_create_volume_idempotent(
        cloud: LocalCloud, image: Image) -> None:
    first = cloud.run_instance(image_id=image.id, client_token="t-1", **ARGUMENTS)
    again = cloud.run_instance(image_id=image.id, client_token="t-1", **ARGUMENTS)
    assert again.id == first.id and again.client_token == "t-1"
    assert [i.id for i in cloud.describe_instances(filters={"client-token": "t-1"})] == [first.id]
    with pytest.raises(InvalidStateError, match="already used by instance"):  # no token: a new one
        cloud.run_instance(image_id=image.id, **ARGUMENTS)
    cloud.terminate_instance(first.id, grace=1)
    relaunched = cloud.run_instance(image_id=image.id, client_token="t-1", **ARGUMENTS)
    assert relaunched.id != first.id      # a terminated instance is not returned

    volume = cloud.create_volume(name="d", size_gb=1, client_token="v-1")
    assert cloud.create_volume(name="d", size_gb=1, client_token="v-1").id == volume.id
    assert cloud.create_volume(name="d", size_gb=1).id != volume.id
    assert cloud.create_volume(name="d", size_gb=1, client_token="v-2").id != volume.id
    assert cloud.get_volume(volume.id).client_token == "v-1"


def _begin_in_another_process(cloud: LocalCloud, kind: str, arguments: dict) -> str:
    """A provider process that began a create and died before Terraform heard of it."""
    code = textwrap.dedent(f"""
        from infrablocks.cloud.local.control import LocalCloud
        from infrablocks.cloud.local.provider_creates import CreateJournal
        cloud = LocalCloud({str(cloud.root)!r})
        with cloud.locked():
            print(CreateJournal(cloud).begin({kind!r}, {arguments!r}).token)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


def test_a_create_by_a_dead_process_that_no_state_confirmed_is_taken_over_by_its_retry(
        cloud: LocalCloud) -> None:
    journal = CreateJournal(cloud)
    orphan = _begin_in_another_process(cloud, "instance", ARGUMENTS)
    retry = journal.begin("instance", ARGUMENTS)
    assert retry.retry and retry.token == orphan
    # Taken over: now it is this (living) process's create, not an orphan for anyone else.
    other = CreateJournal(cloud).begin("instance", ARGUMENTS)
    assert not other.retry and other.token != orphan

    # Other arguments are another create, never a retry of that one.
    changed = _begin_in_another_process(cloud, "instance", {**ARGUMENTS, "tags": {"a": "c"}})
    assert journal.begin("instance", ARGUMENTS).token != changed
    assert not journal.begin("volume", ARGUMENTS).retry      # another kind


def test_a_confirmed_create_is_never_taken_over(cloud: LocalCloud) -> None:
    journal = CreateJournal(cloud)
    token = _begin_in_another_process(cloud, "volume", {"name": "d", "size_gb": 1})
    journal.confirm(token)        # Terraform read it: a state holds it
    assert not journal.begin("volume", {"name": "d", "size_gb": 1}).retry
    journal.confirm(None)         # resources made without a token: nothing to do
    journal.confirm("volume-not-there")


def test_a_create_in_progress_in_a_living_process_is_not_taken_over(cloud: LocalCloud) -> None:
    journal = CreateJournal(cloud)
    first = journal.begin("instance", ARGUMENTS)       # this process is alive, still creating
    second = CreateJournal(cloud).begin("instance", ARGUMENTS)
    assert not second.retry and second.token != first.token


def test_a_create_that_returned_but_was_never_confirmed_is_taken_over(cloud: LocalCloud) -> None:
    # The provider returned the result, and Terraform was killed before it saved its state:
    # the provider process lives on (shared by the run), but the create is no longer running.
    journal = CreateJournal(cloud)
    first = journal.begin("instance", ARGUMENTS)
    journal.done(first.token)
    retry = journal.begin("instance", ARGUMENTS)
    assert retry.retry and retry.token == first.token
