"""Outputs: real values for wiring, masked everywhere people look; a stable digest."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from infrablocks.state.outputs import MASK, Outputs, outputs_to_json, render_outputs_table

STATE = {
    "version": 4,
    "outputs": {
        "endpoints": {"value": ["127.42.1.11:2379", "127.42.1.12:2379"],
                      "type": ["list", "string"]},
        "password": {"value": "hunter2-very-secret", "type": "string", "sensitive": True},
    },
}


def test_values_are_real_but_every_rendering_masks_sensitive_ones() -> None:
    outputs = Outputs.from_state(STATE)

    assert outputs["password"] == "hunter2-very-secret"
    assert outputs.unmasked()["password"] == "hunter2-very-secret"
    assert outputs.sensitive == {"password"}
    assert outputs.type_of("password") == "string"
    for text in (repr(outputs), str(outputs), f"{outputs}", json.dumps(outputs.masked()),
                 json.dumps(outputs.to_json()), json.dumps(outputs_to_json(outputs))):
        assert "hunter2" not in text
        assert MASK in text
    assert "127.42.1.11:2379" in str(outputs)

    rendered = io.StringIO()
    console = Console(file=rendered, width=120)
    console.print(outputs)
    console.print(render_outputs_table(outputs, title="base"))
    assert "hunter2" not in rendered.getvalue() and MASK in rendered.getvalue()


def test_json_reveals_only_when_asked() -> None:
    outputs = Outputs.from_state(STATE)
    assert outputs.to_json()["password"] == {"value": MASK, "sensitive": True}
    assert outputs.to_json(reveal=True)["password"]["value"] == "hunter2-very-secret"


def test_digest_ignores_order_but_not_values_or_sensitivity() -> None:
    outputs = Outputs.from_state(STATE)
    reordered = Outputs.from_terraform(dict(reversed(list(STATE["outputs"].items()))))
    assert outputs.digest() == reordered.digest()
    assert len(outputs.digest()) == 64

    changed = Outputs({"endpoints": outputs["endpoints"], "password": "other"}, {"password"})
    assert changed.digest() != outputs.digest()
    unflagged = Outputs(outputs.unmasked(), frozenset())
    assert unflagged.digest() != outputs.digest()


def test_no_state_means_no_outputs_and_subset_keeps_sensitivity() -> None:
    assert len(Outputs.from_state(None)) == 0
    assert str(Outputs()) == "(no outputs)"
    subset = Outputs.from_state(STATE).subset(["password", "missing"])
    assert list(subset) == ["password"] and subset.is_sensitive("password")
    with pytest.raises(ValueError):
        Outputs({"a": 1}, {"b"})
