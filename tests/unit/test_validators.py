"""The extensible list of `doit check` checks."""

from __future__ import annotations

from pathlib import Path

import pytest

import infrablocks.validators as validators
from infrablocks.registry import Registry, load_registry
from infrablocks.validators import ValidationOutcome, register_validator, run_validators
from tests.support.registry_repo import copy_example


@pytest.fixture
def isolated_checks(monkeypatch: pytest.MonkeyPatch) -> list:
    checks = [("contracts", "infrablocks.contracts:contract_check")]
    monkeypatch.setattr(validators, "VALIDATORS", checks)
    return checks


def test_checks_run_in_order_with_problems_and_info(tmp_path: Path,
                                                   isolated_checks: list) -> None:
    registry = load_registry(copy_example(tmp_path))
    seen: list[Registry] = []

    def count_blocks(reg: Registry) -> ValidationOutcome:
        seen.append(reg)
        return ValidationOutcome(info=[f"{len(reg.blocks)} blocks"])

    register_validator("count", count_blocks)
    register_validator("complain", lambda reg: (f"{name} is suspicious" for name in ["nomad"]))
    results = run_validators(registry)
    assert [name for name, _ in results] == ["contracts", "count", "complain"]
    assert results[0][1].problems == [] and "version pairs" in results[0][1].info[0]
    assert results[1][1].info == ["5 blocks"] and seen == [registry]
    assert results[2][1].problems == ["nomad is suspicious"]


def test_registering_a_name_again_replaces_it(tmp_path: Path, isolated_checks: list) -> None:
    register_validator("contracts", lambda reg: ["replaced"])
    assert len(isolated_checks) == 1
    registry = load_registry(copy_example(tmp_path))
    assert run_validators(registry)[0][1].problems == ["replaced"]
