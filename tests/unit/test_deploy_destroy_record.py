"""What a failed destroy leaves: a record saying so, what the state still holds, the next step."""

from __future__ import annotations

import pytest

from infrablocks.deploy.workspace import open_workspace
from tests.support.registry_repo import make_repo, record_deployed

TOML = """
[blocks.base]
stateful = true
[blocks.base.versions."1.0.0"]

[environments.prod]
"""


@pytest.fixture
def workspace(tmp_path):
    return open_workspace(make_repo(tmp_path / "repo", TOML))


def test_a_failed_destroy_leaves_a_truthful_record_and_the_next_step(workspace) -> None:
    import json

    from infrablocks.deploy.block_ops import _destroy_failed
    from infrablocks.deploy.status import environment_status
    from infrablocks.errors import InfrablocksError

    record_deployed(workspace, "prod", base="1.0.0")
    state = workspace.backend.terraform_backend("prod", "base").config["path"]
    with open(state, "w") as handle:
        json.dump({"version": 4, "serial": 1, "lineage": "x", "outputs": {}, "resources": [
            {"mode": "managed", "type": "aws_network_interface", "name": "member",
             "instances": []},
            {"mode": "data", "type": "aws_ami", "name": "etcd", "instances": []}]}, handle)
    error = InfrablocksError("terraform destroy failed: DetachNetworkInterface …")
    _destroy_failed(workspace, "prod", "base", workspace.backend.get_record("prod", "base"),
                    "1.15.5", error)
    record = workspace.backend.get_record("prod", "base")
    assert (record.status, record.extra) == (
        "failed", {"failed_action": "destroy", "remaining": ["aws_network_interface.member"]})
    assert error.hint == ("base is only partly destroyed in prod: its state still holds "
                          "aws_network_interface.member (doit status shows it as failed); once "
                          "the cause is fixed, run `doit destroy base --env prod` again")
    assert environment_status(workspace, "prod", drift=False).blocks[0].status == \
        "failed (destroy)"
