"""A local cloud for a unit test, and image artifacts made of one entrypoint script.

Imported by the test modules (``from tests.support.localcloud import ...``); each
module keeps its own three-line ``cloud`` fixture around ``terminating_cloud``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infrablocks.cloud.local.control import LocalCloud

IDLE_ENTRYPOINT = "#!/bin/sh\nexec sleep 300\n"


@contextmanager
def terminating_cloud(root: Path) -> Iterator[LocalCloud]:
    """A LocalCloud on ``root``; on exit, even after a failure, every instance is terminated
    (1 s grace) so that no entrypoint process outlives the test."""
    cloud = LocalCloud(root)
    try:
        yield cloud
    finally:
        for instance in cloud.describe_instances():
            cloud.terminate_instance(instance.id, grace=1)


def write_artifact(directory: Path, entrypoint: str = IDLE_ENTRYPOINT) -> Path:
    """Make ``directory`` an image artifact: an executable ``entrypoint`` with that text."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "entrypoint"
    script.write_text(entrypoint)
    script.chmod(0o755)
    return directory
