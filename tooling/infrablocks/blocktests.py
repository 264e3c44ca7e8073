"""pytest plugin for block tests (``blocks/NAME/VERSION/tests/test_*.py``), run against a live
deployment: ``pytest -p infrablocks.blocktests blocks/base/1.0.0/tests``.

Fixtures:

- ``outputs``: the block's Terraform outputs (name → value, sensitive ones included), read from
  the JSON file named by ``INFRABLOCKS_BLOCK_OUTPUTS``.
- ``dependency_outputs``: dependency block name → its outputs, read from the JSON file named by
  ``INFRABLOCKS_DEPENDENCY_OUTPUTS`` (empty when the variable is unset: a block without
  dependencies).

Both files may hold plain values (``{"endpoints": [...]}``) or ``terraform output -json``'s shape
(``{"endpoints": {"value": [...], "type": ..., "sensitive": false}}``); either is accepted.
A missing or unreadable file fails the tests that use it with a message naming the variable
and the file, never a traceback from inside the plugin.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

OUTPUTS_ENV = "INFRABLOCKS_BLOCK_OUTPUTS"
DEPENDENCY_OUTPUTS_ENV = "INFRABLOCKS_DEPENDENCY_OUTPUTS"

_TERRAFORM_OUTPUT_KEYS = {"value", "type"}


class BlockOutputsError(Exception):
    """The outputs file named by an environment variable is missing or malformed."""


def unwrap_outputs(raw: dict[str, Any]) -> dict[str, Any]:
    """``terraform output -json`` entries → plain values; plain values pass through."""
    plain: dict[str, Any] = {}
    for name, entry in raw.items():
        is_wrapped = (isinstance(entry, dict) and entry.keys() >= _TERRAFORM_OUTPUT_KEYS
                      and entry.keys() <= {"value", "type", "sensitive"})
        plain[name] = entry["value"] if is_wrapped else entry
    return plain


def read_outputs_file(variable: str, *, required: bool = True) -> dict[str, Any]:
    """The JSON object in the file named by the environment ``variable``."""
    location = os.environ.get(variable)
    if not location:
        if not required:
            return {}
        raise BlockOutputsError(
            f"{variable} is not set: block tests run against a live deployment; infrablocks "
            f"sets it to a JSON file of the block's outputs")
    path = Path(location)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BlockOutputsError(f"{variable}={path}: no such file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise BlockOutputsError(f"{variable}={path}: not a JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise BlockOutputsError(f"{variable}={path}: expected a JSON object of outputs, got "
                                f"{type(data).__name__}")
    return data


@pytest.fixture(scope="session")
def outputs() -> dict[str, Any]:
    """The block's outputs (sensitive ones included)."""
    try:
        return unwrap_outputs(read_outputs_file(OUTPUTS_ENV))
    except BlockOutputsError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def dependency_outputs() -> dict[str, dict[str, Any]]:
    """Each dependency block's outputs, by block name."""
    try:
        raw = read_outputs_file(DEPENDENCY_OUTPUTS_ENV, required=False)
    except BlockOutputsError as exc:
        pytest.fail(str(exc), pytrace=False)
    malformed = [name for name, value in raw.items() if not isinstance(value, dict)]
    if malformed:
        pytest.fail(f"{DEPENDENCY_OUTPUTS_ENV}: expected block name → object of outputs; not "
                    f"an object: {', '.join(sorted(malformed))}", pytrace=False)
    return {name: unwrap_outputs(value) for name, value in raw.items()}


def pytest_report_header(config: pytest.Config) -> list[str]:
    header = [f"infrablocks block tests: outputs from {os.environ.get(OUTPUTS_ENV, '(unset)')}"]
    if os.environ.get(DEPENDENCY_OUTPUTS_ENV):
        header.append(f"dependency outputs from {os.environ[DEPENDENCY_OUTPUTS_ENV]}")
    return header
