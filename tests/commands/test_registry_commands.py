"""`doit check`, `doit resolve`, `doit graph`, `doit list` run for real on fixture repos."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.registry_repo import MAIN_REPO

Doit = Callable[..., subprocess.CompletedProcess[str]]  # the `doit` fixture (conftest.py)
RepoWriter = Callable[..., Path]  # the `write_repo` fixture


def test_list_shows_the_commands(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "list")
    assert result.returncode == 0, result.stderr
    names = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {"check", "resolve", "graph"} <= names
    assert "validate blocks.toml" in result.stdout


def test_help_shows_the_arguments(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "help", "graph")
    assert result.returncode == 0
    for option in ("--block", "--env", "--format", "--output"):
        assert option in result.stdout


def test_check_passes_on_the_example(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok blocks.toml: 5 blocks, 7 block versions, 2 environments" in result.stdout
    assert "ok contracts" in result.stdout
    assert "all checks passed" in result.stdout


def test_check_reports_every_registry_problem(tmp_path: Path, doit: Doit,
                                             write_repo: RepoWriter) -> None:
    repo = write_repo(tmp_path, """
        [blocks.base]
        statefull = true
        [blocks.base.versions."1.0.0"]
        [blocks.app.versions."1.0.0"]
        requires = { bsae = "~> 1.0", base = "~> 7.0" }
    """, versions=("base/1.0.0",))
    result = doit(repo, "check")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    err = result.stderr
    assert "4 problems in the block registry" in err
    assert "blocks.base.statefull: unknown key; did you mean `stateful`?" in err
    assert 'blocks.app.versions."1.0.0": directory blocks/app/1.0.0/ does not exist' in err
    assert "did you mean `base`?" in err
    assert "no version of `base` satisfies `~> 7.0`" in err


def test_check_reports_contract_mismatches(example_repo: Path, doit: Doit) -> None:
    outputs = example_repo / "blocks/nomad/1.0.0/outputs.tf"
    outputs.write_text(outputs.read_text().replace('output "jobs_dir"', 'output "job_dir"'))
    result = doit(example_repo, "check")
    assert result.returncode == 2
    assert "FAILED contracts" in result.stdout
    assert ("microservice01 1.0.0: variable \"nomad\" uses jobs_dir, which nomad 1.0.0 does "
            "not output") in result.stderr
    assert "microservice02 1.0.0" in result.stderr
    assert "Traceback" not in result.stderr


def test_toml_syntax_error(tmp_path: Path, doit: Doit, write_repo: RepoWriter) -> None:
    repo = write_repo(tmp_path, "[blocks.base\n")
    result = doit(repo, "check")
    assert result.returncode == 2
    assert "blocks.toml:1:" in result.stderr and "TOML syntax error" in result.stderr


def test_resolve_microservice01(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "resolve", "microservice01")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Resolution of microservice01 in environment prod" in out
    for line in ("base           1.0.0 (stateful)", "nomad          1.0.0",
                 "stolon         1.1.0 (stateful)", "microservice01 1.0.0"):
        assert line in out
    assert "microservice02" not in out
    assert "← pinned to 1.0.0 by environment prod" in out
    assert "1. base 1.0.0\n  2. nomad 1.0.0, stolon 1.1.0\n  3. microservice01 1.0.0" in out


def test_resolve_json_with_options_after_the_targets(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "resolve", "microservice01", "--env", "staging", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["environment"] == "staging"
    assert {n: s["version"] for n, s in document["selected"].items()} == {
        "base": "1.1.0", "microservice01": "1.0.0", "nomad": "1.0.0", "stolon": "1.1.0"}
    assert document["order"] == ["base", "nomad", "stolon", "microservice01"]
    assert document["levels"] == [["base"], ["nomad", "stolon"], ["microservice01"]]
    assert document["selected"]["nomad"]["reasons"][0] == \
        "microservice01 1.0.0 requires nomad ~> 1.0"


def test_resolve_errors(example_repo: Path, doit: Doit) -> None:
    unknown = doit(example_repo, "resolve", "microservice1")
    assert unknown.returncode == 2
    assert "unknown block `microservice1`; did you mean `microservice01`" in unknown.stderr
    none = doit(example_repo, "resolve")
    assert none.returncode == 2 and "name at least one block" in none.stderr
    conflict = doit(example_repo, "resolve", "base@1.1.0")
    assert conflict.returncode == 1
    assert "pinned to 1.0.0 by environment prod" in conflict.stderr
    assert "target base = 1.1.0" in conflict.stderr
    assert "Traceback" not in conflict.stderr + unknown.stderr
    typo = doit(example_repo, "resolve", "base", "--env", "prdo")
    assert typo.returncode == 0
    assert "environment `prdo` is not declared in blocks.toml: no pins apply; did you mean " \
           "`prod`?" in typo.stderr


def test_graph_tree_is_the_default(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "graph")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "infrablocks (prod)"
    assert "microservice02 1.0.0" in result.stdout
    assert "stolon 1.1.0 (stateful) >= 1.0, < 2.0" in result.stdout


@pytest.mark.parametrize(("fmt", "expected"), [
    ("dot", 'digraph "infrablocks (prod)" {'),
    ("mermaid", "flowchart BT"),
    ("json", '{\n  "nodes": ['),
])
def test_graph_text_formats(example_repo: Path, fmt: str, expected: str,
                            doit: Doit) -> None:
    result = doit(example_repo, "graph", "--format", fmt)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(expected)
    assert "microservice02" in result.stdout


def test_graph_highlights_a_block_environment(example_repo: Path, doit: Doit) -> None:
    result = doit(example_repo, "graph", "--block", "microservice02", "--format", "json",
                      "--env", "staging")
    assert result.returncode == 0, result.stderr
    nodes = {n["name"]: n for n in json.loads(result.stdout)["nodes"]}
    assert {name for name, n in nodes.items() if n["highlighted"]} == {
        "base", "nomad", "microservice02"}
    assert nodes["base"]["version"] == "1.1.0"  # staging has no pins
    unknown = doit(example_repo, "graph", "--block", "nomd")
    assert unknown.returncode == 2 and "did you mean `nomad`" in unknown.stderr


def test_graph_output_file(example_repo: Path, tmp_path: Path, doit: Doit) -> None:
    target = tmp_path / "graph.mmd"
    result = doit(example_repo, "graph", "--format", "mermaid", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert target.read_text().startswith("flowchart BT")
    tree = tmp_path / "tree.txt"
    assert doit(example_repo, "graph", "--output", str(tree)).returncode == 0
    assert "microservice01 1.0.0" in tree.read_text() and "\x1b[" not in tree.read_text()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_graph_svg_and_png(example_repo: Path, tmp_path: Path, doit: Doit) -> None:
    svg = tmp_path / "g.svg"
    result = doit(example_repo, "graph", "--format", "svg", "--output", str(svg))
    assert result.returncode == 0, result.stderr
    assert "<svg" in svg.read_text() and "microservice01" in svg.read_text()
    default = doit(example_repo, "graph", "--format", "png", "--block", "stolon")
    assert default.returncode == 0, default.stderr
    png = example_repo / ".infrablocks" / "graph.png"
    assert f"wrote {png}" in default.stdout
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_graph_of_a_registry_that_does_not_resolve_as_a_whole(
        tmp_path: Path, doit: Doit, write_repo: RepoWriter) -> None:
    repo = write_repo(tmp_path, """
        [blocks.lib.versions."1.0.0"]
        [blocks.lib.versions."2.0.0"]
        [blocks.a.versions."1.0.0"]
        requires = { lib = "~> 1.0" }
        [blocks.b.versions."1.0.0"]
        requires = { lib = "~> 2.0" }
    """, versions=("lib/1.0.0", "lib/2.0.0", "a/1.0.0", "b/1.0.0"))
    result = doit(repo, "graph", "--format", "dot")
    assert result.returncode == 0, result.stderr
    assert "do not all resolve together" in result.stderr
    assert '"lib" [label="lib\\n1.0.0, 2.0.0"];' in result.stdout
    highlighted = doit(repo, "graph", "--block", "b", "--format", "json")
    nodes = {n["name"]: n for n in json.loads(highlighted.stdout)["nodes"]}
    assert nodes["lib"]["version"] == "2.0.0" and nodes["lib"]["highlighted"]
    assert not nodes["a"]["highlighted"]


def test_check_and_every_command_refuse_what_they_would_misuse(example_repo: Path,
                                                               doit: Doit) -> None:
    """A subnet outside the local cloud's range and a rolling address naming no resource of the
    module: `doit check` fails on them, and create, plan, status and upgrade give the same
    located message instead of misbehaving."""
    from infrablocks.state import backend_from_settings, new_record

    for version in ("1.0.0", "1.1.0"):   # base's real resources, beside its contract
        shutil.copy(MAIN_REPO / "blocks" / "base" / version / "main.tf",
                    example_repo / "blocks" / "base" / version / "main.tf")
    toml = example_repo / "blocks.toml"
    text = toml.read_text()
    assert 'instances = "localcloud_instance.member"\n' in text
    toml.write_text(text.replace('instances = "localcloud_instance.member"\n',
                                 'instances = "localcloud_instance.members"\n', 1))
    instances_line = toml.read_text().splitlines().index(
        'instances = "localcloud_instance.members"') + 1
    rolling = (f"blocks.toml:{instances_line}: blocks.base.rolling.instances: "
               "'localcloud_instance.members' is not a resource of base 1.")
    checked = doit(example_repo, "check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "all checks passed" not in checked.stdout
    assert rolling in checked.stderr, checked.stderr
    assert "did you mean `localcloud_instance.member`?" in checked.stderr

    backend_from_settings(None, example_repo).put_record(new_record(
        "staging", "base", "1.0.0", outputs=None, terraform_version="1.15.5"))
    for args in (("create", "base", "--env", "staging"), ("plan", "base", "--env", "staging"),
                 ("upgrade", "base", "--env", "staging", "--dry-run"),
                 ("upgrade", "base", "--env", "staging", "--yes")):
        result = doit(example_repo, *args)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert rolling in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr

    toml.write_text(toml.read_text().replace("[environments.staging]",
                                             '[environments.staging]\nsubnet = "10.0.0.0/24"'))
    subnet_line = toml.read_text().splitlines().index('subnet = "10.0.0.0/24"') + 1
    subnet = (f"blocks.toml:{subnet_line}: environments.staging.subnet: '10.0.0.0/24' is "
              "outside 127.42.0.0/16")
    for args in (("check",), ("create", "base", "--env", "staging"),
                 ("plan", "base", "--env", "staging"), ("status",)):
        result = doit(example_repo, *args)
        assert result.returncode == 2, (args, result.stdout + result.stderr)
        assert subnet in result.stderr, (args, result.stderr)
