"""The local cloud's image registry: content-addressed ids, immutable versions, lookup."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infrablocks.cloud.local.control import LocalCloud
from infrablocks.cloud.local.errors import (
    ImageConflictError,
    InvalidParameterError,
    InvalidStateError,
    NotFoundError,
)
from tests.support.localcloud import write_artifact


def make_artifact(directory: Path, body: str = "exec sleep 300\n") -> Path:
    write_artifact(directory, "#!/bin/sh\n" + body)
    (directory / "conf").mkdir(exist_ok=True)
    (directory / "conf" / "settings.txt").write_text("heartbeat=100\n")
    return directory


@pytest.fixture
def cloud(tmp_path: Path) -> LocalCloud:
    return LocalCloud(tmp_path / "cloud")


def test_register_copies_the_artifact_and_records_it(cloud: LocalCloud, tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "a")
    image = cloud.register_image("etcd", "1.0.0", artifact, tags=["stable"],
                                 metadata={"built_at": "2026-01-01T00:00:00+00:00"})
    assert image.id.startswith("img-") and len(image.id) == len("img-") + 12
    assert image.digest.startswith("sha256:")
    assert Path(image.path) == cloud.root / "images" / image.id
    assert (Path(image.path) / "conf" / "settings.txt").read_text() == "heartbeat=100\n"
    assert os.access(Path(image.path) / "entrypoint", os.X_OK)
    assert (Path(image.path) / "image.json").is_file()
    assert image.tags == ("stable",)
    assert image.metadata == {"built_at": "2026-01-01T00:00:00+00:00"}
    assert cloud.list_images() == [image]


def test_same_content_same_version_gives_the_same_image(cloud: LocalCloud,
                                                        tmp_path: Path) -> None:
    first = cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "a"))
    # an identical tree elsewhere (as a second packer build would produce)
    again = cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "b"), tags=["x"])
    assert again.id == first.id and again.digest == first.digest
    assert again.tags == ("x",)
    assert len(cloud.list_images()) == 1


def test_different_content_under_a_registered_version_is_refused(cloud: LocalCloud,
                                                                 tmp_path: Path) -> None:
    first = cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "a"))
    changed = make_artifact(tmp_path / "b", body="exec sleep 301\n")
    with pytest.raises(ImageConflictError) as err:
        cloud.register_image("etcd", "1.0.0", changed)
    assert "etcd@1.0.0" in str(err.value) and first.id in str(err.value)
    assert "immutable" in str(err.value)
    assert [i.id for i in cloud.list_images()] == [first.id]
    # no staging leftovers
    assert [p.name for p in (cloud.root / "images").iterdir()] == [first.id]


def test_mode_change_is_a_content_change(cloud: LocalCloud, tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "a")
    first = cloud.register_image("etcd", "1.0.0", artifact)
    (artifact / "conf" / "settings.txt").chmod(0o600)
    with pytest.raises(ImageConflictError):
        cloud.register_image("etcd", "1.0.0", artifact)
    assert cloud.register_image("etcd", "1.0.1", artifact).id != first.id


def test_find_by_version_tag_or_newest(cloud: LocalCloud, tmp_path: Path) -> None:
    old = cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "a"))
    new = cloud.register_image("etcd", "1.10.0", make_artifact(tmp_path / "b", "exec true\n"))
    mid = cloud.register_image("etcd", "1.2.0", make_artifact(tmp_path / "c", "exec :\n"))
    assert cloud.find_image("etcd", "1.0.0") == old
    assert cloud.find_image("etcd").id == new.id  # semantic order, not string order
    cloud.tag_image(mid.id, "stable")
    assert cloud.find_image("etcd", tag="stable").id == mid.id
    # a tag names one image per name: tagging another moves it
    cloud.tag_image(old.id, "stable")
    assert cloud.find_image("etcd", tag="stable").id == old.id
    assert "stable" not in cloud.get_image(mid.id).tags


def test_not_found_names_what_exists(cloud: LocalCloud, tmp_path: Path) -> None:
    cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "a"))
    with pytest.raises(NotFoundError) as err:
        cloud.find_image("etcd", "9.9.9")
    assert "etcd@9.9.9" in str(err.value) and "1.0.0" in str(err.value)
    with pytest.raises(NotFoundError) as err:
        cloud.find_image("patroni", "1.0.0")
    assert "patroni@1.0.0" in str(err.value) and "etcd@1.0.0" in str(err.value)
    assert "doit image patroni@1.0.0" in str(err.value)
    with pytest.raises(NotFoundError, match="tagged 'prod'"):
        cloud.find_image("etcd", tag="prod")


def test_remove_image_refused_while_an_instance_uses_it(cloud: LocalCloud,
                                                        tmp_path: Path) -> None:
    image = cloud.register_image("etcd", "1.0.0", make_artifact(tmp_path / "a"))
    instance = cloud.run_instance(name="u", image_id=image.id, private_ip="127.42.201.2")
    try:
        with pytest.raises(InvalidStateError, match="terminate them first"):
            cloud.remove_image(image.id)
    finally:
        cloud.terminate_instance(instance.id, grace=1)
    cloud.remove_image(image.id)
    assert cloud.list_images() == []
    assert list((cloud.root / "images").iterdir()) == []


@pytest.mark.parametrize(("name", "version", "message"), [
    ("Etcd", "1.0.0", "image name"),
    ("etcd", "1.0", "semantic version"),
    ("etcd", "latest", "semantic version"),
])
def test_bad_names_and_versions(cloud: LocalCloud, tmp_path: Path, name: str, version: str,
                                message: str) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        cloud.register_image(name, version, make_artifact(tmp_path / "a"))


def test_artifact_needs_an_executable_entrypoint(cloud: LocalCloud, tmp_path: Path) -> None:
    artifact = make_artifact(tmp_path / "a")
    (artifact / "entrypoint").chmod(0o644)
    with pytest.raises(InvalidParameterError, match="executable `entrypoint`"):
        cloud.register_image("etcd", "1.0.0", artifact)
    with pytest.raises(InvalidParameterError, match="not a directory"):
        cloud.register_image("etcd", "1.0.0", tmp_path / "missing")
