"""Text the tool did not write as markup (errors, drift, warnings, causes) is printed as it is:
rich would read ``[environments.prod]`` as a style tag and drop it."""

from __future__ import annotations

import pytest

from infrablocks.deploy.status import BlockStatus, EnvironmentStatus
from infrablocks.tasks import _deploy_output

BRACKETED = "blocks.toml [environments.prod] subnet = '127.42.77.0/24' would move it"


def test_status_prints_bracketed_drift_warning_and_cause_whole(
        capsys: pytest.CaptureFixture[str]) -> None:
    block = BlockStatus(block="base", version="1.0.0", status="deployed", applied_at="now",
                        applied_by="me", terraform_version="1.15.5",
                        drift=f"error: {BRACKETED}", cause=["changed inputs: [net]"])
    status = EnvironmentStatus(environment="prod", declared=True, blocks=[block],
                               warnings=[f"[blocks.app.versions] {BRACKETED}"])

    _deploy_output.print_status([status], as_json=False)

    printed = capsys.readouterr()
    text = " ".join((printed.out + printed.err).split())
    assert "[environments.prod]" in text
    assert "[net]" in text
    assert "[blocks.app.versions]" in text
