"""Static contract check: dependency variables vs dependency outputs, parsed with python-hcl2."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from infrablocks.contracts import (
    SensitiveInputError,
    check_contracts,
    check_received_inputs,
    contract_check,
    object_attributes,
    read_interface,
    refuse_sensitive_leaks,
    registry_pairs,
    resolution_pairs,
    sensitivity_problems,
)
from infrablocks.registry import load_registry
from infrablocks.resolve import resolve
from tests.support.registry_repo import copy_example, make_repo

TOML = """
[blocks.base.versions."1.0.0"]
[blocks.base.versions."1.1.0"]
[blocks.app.versions."1.0.0"]
requires = { base = "~> 1.0" }
"""

BASE_OUTPUTS = """
output "endpoints" { value = local.endpoints }
output "cluster_name" { value = "c" }
output "member_ips" { value = [] }
"""

APP_VARIABLES = """
variable "environment" { type = string }

variable "base" {
  description = "Outputs of base."
  type = object({
    endpoints    = list(string)
    cluster_name = string
  })
}
"""


def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, TOML, files={"blocks/base/1.0.0/outputs.tf": BASE_OUTPUTS,
                                            "blocks/base/1.1.0/outputs.tf": BASE_OUTPUTS,
                                            "blocks/app/1.0.0/variables.tf": APP_VARIABLES})


def test_the_example_blocks_honour_their_contracts(tmp_path: Path) -> None:
    registry = load_registry(copy_example(tmp_path))
    assert check_contracts(registry) == []
    outcome = contract_check(registry)
    assert outcome.problems == []
    assert "version pairs" in outcome.info[0]


def test_matching_contract_with_extra_outputs_is_fine(tmp_path: Path) -> None:
    registry = load_registry(repo(tmp_path))
    assert len(registry_pairs(registry)) == 2
    assert check_contracts(registry) == []


def test_missing_output_is_reported_with_block_version_variable_and_file(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "blocks/base/1.1.0/outputs.tf").write_text(
        'output "endpoints" { value = [] }\n', encoding="utf-8")
    registry = load_registry(root)
    problems = check_contracts(registry)
    assert len(problems) == 1, problems
    problem = problems[0]
    assert (problem.dependent, str(problem.dependent_version)) == ("app", "1.0.0")
    assert (problem.dependency, str(problem.dependency_version)) == ("base", "1.1.0")
    assert problem.variable == "base"
    assert problem.missing == ("cluster_name",)
    assert problem.file == Path("blocks/app/1.0.0/variables.tf")
    assert problem.line == 4
    assert str(problem) == (
        'blocks/app/1.0.0/variables.tf:4: app 1.0.0: variable "base" uses cluster_name, '
        "which base 1.1.0 does not output (its outputs: endpoints)")


def test_only_the_given_pairs_are_checked(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "blocks/base/1.1.0/outputs.tf").write_text("", encoding="utf-8")
    registry = load_registry(root)
    resolution = resolve(registry, ["app"], {"base": registry.blocks["base"].newest_first()[1]
                                             .version})
    assert [(a.label, b.label) for a, b in resolution_pairs(resolution)] == [
        ("app 1.0.0", "base 1.0.0")]
    assert check_contracts(registry, resolution_pairs(resolution)) == []
    assert len(check_contracts(registry)) == 1


def test_missing_variable(tmp_path: Path) -> None:
    registry = load_registry(repo(tmp_path))
    (registry.root / "blocks/app/1.0.0/variables.tf").write_text(
        'variable "environment" { type = string }\n', encoding="utf-8")
    problems = check_contracts(registry)
    assert len(problems) == 1, problems
    assert 'app 1.0.0 requires base but declares no variable "base"' in str(problems[0])


def test_variable_must_be_an_object(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "blocks/app/1.0.0/variables.tf").write_text(
        'variable "base" {\n  type = map(string)\n}\n', encoding="utf-8")
    problems = check_contracts(load_registry(root))
    assert len(problems) == 1
    assert 'variable "base" must be typed object({ … })' in str(problems[0])
    assert "found type map(string)" in str(problems[0])


def test_optional_attributes_are_not_required(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "blocks/app/1.0.0/variables.tf").write_text(
        'variable "base" {\n  type = object({ endpoints = list(string), '
        'tls_ca = optional(string, "") })\n}\n', encoding="utf-8")
    assert check_contracts(load_registry(root)) == []


def test_parse_errors_are_located(tmp_path: Path) -> None:
    root = repo(tmp_path)
    (root / "blocks/base/1.0.0/outputs.tf").write_text(
        'output "endpoints" {\n  value = \n}\n', encoding="utf-8")
    problems = check_contracts(load_registry(root))
    assert len(problems) == 1, problems
    assert problems[0].file == Path("blocks/base/1.0.0/outputs.tf")
    assert problems[0].line == 2
    assert str(problems[0]).startswith("blocks/base/1.0.0/outputs.tf:2: cannot parse HCL")


def test_parse_errors_of_unpaired_blocks_are_reported(tmp_path: Path) -> None:
    root = make_repo(tmp_path, '[blocks.alone.versions."1.0.0"]\n',
                     files={"blocks/alone/1.0.0/main.tf": 'resource "x" "y" {\n'})
    problems = check_contracts(load_registry(root))
    assert len(problems) == 1 and "cannot parse HCL" in str(problems[0])


def test_interface_reading(tmp_path: Path) -> None:
    (tmp_path / "a.tf").write_text(APP_VARIABLES + BASE_OUTPUTS, encoding="utf-8")
    interface = read_interface(tmp_path)
    assert set(interface.variables) == {"environment", "base"}
    assert interface.outputs == {"endpoints", "cluster_name", "member_ips"}
    assert interface.variable_lines["base"] == (tmp_path / "a.tf", 4)


def test_object_attributes() -> None:
    assert object_attributes("${object({a = list(object({x = string, y = number})), "
                             "b = optional(number, 3), \"c\" = map(string)})}") == {
        "a": True, "b": False, "c": True}
    assert object_attributes("string") is None
    assert object_attributes(None) is None
    assert object_attributes("${object({})}") == {}


# -- sensitivity across the boundary ----------------------------------------------------------

SENSITIVE_TOML = """
[blocks.db.versions."1.0.0"]
[blocks.db.versions."1.1.0"]
[blocks.app.versions."1.0.0"]
requires = { db = ">= 1.0" }
[blocks.web.versions."1.0.0"]
requires = { db = "~> 1.0" }
[blocks.ops.versions."1.0.0"]
requires = { db = "~> 1.0" }
"""
DB_1_0 = """
output "endpoint" { value = "db" }
output "password" {
  value     = "x"
  sensitive = true
}
"""
DB_1_1 = DB_1_0 + """
output "admin_token" {
  value     = "y"
  sensitive = true
}
"""
APP_SAFE = """
variable "db" {
  type      = object({ endpoint = string, password = string })
  sensitive = true
}
"""
WEB_CARELESS = """
variable "environment" { type = string }

variable "db" {
  type = object({
    endpoint = string
    password = string
  })
}
"""
OPS_UNTYPED = """
variable "db" {}
"""


def sensitive_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path, SENSITIVE_TOML, files={
        "blocks/db/1.0.0/outputs.tf": DB_1_0, "blocks/db/1.1.0/outputs.tf": DB_1_1,
        "blocks/app/1.0.0/variables.tf": APP_SAFE,
        "blocks/web/1.0.0/variables.tf": WEB_CARELESS,
        "blocks/ops/1.0.0/variables.tf": OPS_UNTYPED})


def test_read_interface_knows_sensitive_variables_and_outputs(tmp_path: Path) -> None:
    root = sensitive_repo(tmp_path)
    assert read_interface(root / "blocks/db/1.1.0").sensitive_outputs == {"password",
                                                                          "admin_token"}
    assert read_interface(root / "blocks/app/1.0.0").sensitive_variables == {"db"}
    assert read_interface(root / "blocks/web/1.0.0").sensitive_variables == set()


def test_check_reports_each_variable_receiving_a_sensitive_output(tmp_path: Path) -> None:
    registry = load_registry(sensitive_repo(tmp_path))
    problems = sensitivity_problems(registry)
    assert [str(p) for p in problems] == [
        'blocks/web/1.0.0/variables.tf:4: web 1.0.0: variable "db" receives the sensitive '
        'output password of db 1.0.0 (declared sensitive) but is not declared sensitive: add '
        '`sensitive = true` to variable "db" (else Terraform prints the value in plans, apply '
        'logs and outputs)',
        'blocks/ops/1.0.0/variables.tf:2: ops 1.0.0: variable "db" receives the sensitive '
        'output password of db 1.0.0 (declared sensitive) but is not declared sensitive: add '
        '`sensitive = true` to variable "db" (else Terraform prints the value in plans, apply '
        'logs and outputs)']
    [web] = [p for p in problems if p.dependent == "web"]
    assert (web.variable, web.dependency, web.missing) == ("db", "db", ("password",))
    reported = contract_check(registry).problems   # `doit check` (ops is untyped, too)
    assert [p for p in reported if "sensitive" in p] == [str(p) for p in problems]


def test_an_untyped_variable_receives_every_output(tmp_path: Path) -> None:
    registry = load_registry(sensitive_repo(tmp_path))
    ops = registry.block_version("ops", "1.0.0")
    db = registry.block_version("db", "1.1.0")
    [problem] = sensitivity_problems(registry, [(ops, db)])
    assert problem.missing == ("admin_token", "password")
    assert "sensitive outputs admin_token, password of db 1.1.0" in str(problem)


def test_create_refuses_the_pairs_it_would_apply_with_the_same_message(tmp_path: Path) -> None:
    registry = load_registry(sensitive_repo(tmp_path))
    pairs = resolution_pairs(resolve(registry, ["web", "app"]))
    with pytest.raises(SensitiveInputError) as refused:
        refuse_sensitive_leaks(pairs, tmp_path / "cache")
    assert refused.value.exit_code == 2
    assert refused.value.problems == [str(p).split(": ", 1)[1]
                                      for p in sensitivity_problems(registry, pairs)]
    assert "db 1.1.0" in refused.value.problems[0]
    refuse_sensitive_leaks(resolution_pairs(resolve(registry, ["app"])), tmp_path / "cache")
    cached = list((tmp_path / "cache").iterdir())
    assert cached and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cached)


def test_sensitivity_from_the_state_is_checked_per_block(tmp_path: Path) -> None:
    registry = load_registry(sensitive_repo(tmp_path))
    web = registry.block_version("web", "1.0.0")
    app = registry.block_version("app", "1.0.0")
    check_received_inputs(web, {"db": set()}, lambda dep: f"{dep} 1.0.0")   # nothing sensitive
    check_received_inputs(app, {"db": {"password"}}, lambda dep: f"{dep} 1.0.0")
    with pytest.raises(SensitiveInputError) as refused:
        check_received_inputs(web, {"db": {"endpoint", "password"}}, lambda dep: f"{dep} 1.3.0")
    assert refused.value.problems == [
        'web 1.0.0: variable "db" receives the sensitive outputs endpoint, password of db 1.3.0 '
        '(sensitive in its state) but is not declared sensitive: add `sensitive = true` to '
        'variable "db" (else Terraform prints the values in plans, apply logs and outputs)']
    assert str(refused.value).startswith("refusing to apply web 1.0.0")
