"""`create`'s preview names the members that roll as the cluster does (``prod-base-2``), not
by Terraform's 0-based count index; ``--json`` keeps both."""

from __future__ import annotations

import pytest

from infrablocks.deploy.preview import CreatePreview, PreviewEntry
from infrablocks.tasks import _deploy_output


def _preview() -> CreatePreview:
    return CreatePreview("prod", [PreviewEntry(
        block="base", deployed="1.0.0", target="1.0.0", action="roll",
        counts={"add": 1, "change": 0, "replace": 0, "destroy": 0}, rolls=[1],
        members=["prod-base-2"], why=["drift: the infrastructure differs from its state"],
        stateful=True)])


def test_the_preview_names_rolled_members_by_their_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    _deploy_output.print_create_preview(_preview())

    text = " ".join(capsys.readouterr().out.split())
    assert "roll (prod-base-2, one at a time)" in text
    assert "members 1" not in text


def test_the_previews_json_keeps_indexes_and_names() -> None:
    [entry] = _preview().to_json()["blocks"]
    assert entry["rolls"] == [1] and entry["members"] == ["prod-base-2"]
