"""`doit ci-pipeline`: the generated GitHub Actions workflow (jobs, needs along the dependency
graph, venv cache, per-environment concurrency) and actionlint on it and on ci/workflows/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_affected import commit, git, repo, write  # noqa: F401 (fixture)

from infrablocks.ci.actionlint import ActionlintNotFound, find_actionlint, lint_workflow
from infrablocks.ci.affected import find_affected
from infrablocks.ci.pipeline import PipelineOptions, matrix, plan_jobs, render, workflow
from infrablocks.ci.workflow_yaml import dump

MAIN_REPO = Path(__file__).resolve().parents[2]
DOIT = Path(sys.executable).parent / "doit"


@pytest.fixture(scope="module")
def actionlint() -> None:
    try:
        find_actionlint()
    except ActionlintNotFound as exc:  # scripts/bootstrap installs it: its absence is a failure
        pytest.fail(str(exc))


def change_base_and_image(repo: Path) -> None:  # noqa: F811 (the fixture's name)
    write(repo, "blocks/base/1.1.0/main.tf", "# base 1.1.0, changed\n")
    write(repo, "images/etcd/1.1.0/files/entrypoint", "#!/bin/sh\necho changed\n")
    commit(repo, "change base 1.1.0 and its image")


def jobs_of(document: dict) -> dict[str, dict]:
    return document["jobs"]


def test_jobs_follow_the_dependency_graph(repo: Path) -> None:  # noqa: F811
    change_base_and_image(repo)
    affected = find_affected(repo)
    jobs = {job.id: job for job in plan_jobs(affected)}
    assert list(jobs) == ["image-etcd-1-1-0", "create-base-1-1-0", "upgrade-base-1-1-0",
                          "create-nomad-1-0-0", "create-app-1-0-0"]
    assert jobs["image-etcd-1-1-0"].commands == (".venv/bin/doit image etcd@1.1.0",)
    assert jobs["create-base-1-1-0"].needs == ("image-etcd-1-1-0",)
    assert jobs["create-base-1-1-0"].commands == (".venv/bin/doit test-create base@1.1.0",)
    # base 1.1.0 has a previous version: an upgrade job after its create job
    assert jobs["upgrade-base-1-1-0"].commands == (
        ".venv/bin/doit test-upgrade base --from 1.0.0 --to 1.1.0",)
    assert jobs["upgrade-base-1-1-0"].needs == ("create-base-1-1-0",)
    assert jobs["create-nomad-1-0-0"].needs == ("create-base-1-1-0",)
    assert jobs["create-app-1-0-0"].needs == ("create-nomad-1-0-0",)
    assert "upgrade-nomad-1-0-0" not in jobs          # nomad has no previous version


def test_workflow_content(repo: Path) -> None:  # noqa: F811
    change_base_and_image(repo)
    document = yaml.safe_load(render(find_affected(repo)))
    # PyYAML reads the bare key `on` as True (YAML 1.1); GitHub reads it as "on"
    triggers = document.get("on", document.get(True))
    assert "pull_request" in triggers
    assert document["concurrency"]["cancel-in-progress"] is True
    job = jobs_of(document)["create-base-1-1-0"]
    assert job["needs"] == ["image-etcd-1-1-0"]
    assert job["container"] == "debian:12"
    steps = job["steps"]
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"]["path"] == ".venv"
    assert "hashFiles('pyproject.toml', 'scripts/bootstrap')" in cache["with"]["key"]
    assert any(s.get("run") == ".venv/bin/doit test-create base@1.1.0" for s in steps)
    assert "environment" not in job and "concurrency" not in job


def test_deploy_jobs_get_one_concurrency_group_per_environment(repo: Path) -> None:  # noqa: F811
    change_base_and_image(repo)
    options = PipelineOptions(deploy_environments=("staging", "prod"))
    document = workflow(find_affected(repo), options)
    staging, prod = jobs_of(document)["deploy-staging"], jobs_of(document)["deploy-prod"]
    assert staging["environment"] == "staging"
    assert staging["concurrency"] == {"group": "infrablocks-env-staging",
                                      "cancel-in-progress": False}
    assert prod["concurrency"]["group"] == "infrablocks-env-prod"
    # after every test; stateful base is upgraded (rolling), the rest created
    assert set(prod["needs"]) == {"image-etcd-1-1-0", "create-base-1-1-0", "upgrade-base-1-1-0",
                                  "create-nomad-1-0-0", "create-app-1-0-0"}
    script = prod["steps"][-2]["run"].splitlines()
    assert script == [".venv/bin/doit upgrade base --env prod --to 1.1.0 --yes",
                      ".venv/bin/doit create nomad@1.0.0 --env prod --yes",
                      ".venv/bin/doit create app@1.0.0 --env prod --yes"]


def test_nothing_affected_still_makes_a_valid_workflow(repo: Path, actionlint,  # noqa: F811
                                                       tmp_path: Path) -> None:
    document = workflow(find_affected(repo))
    assert list(jobs_of(document)) == ["nothing-affected"]
    path = tmp_path / "empty.yml"
    path.write_text(render(find_affected(repo)))
    assert lint_workflow(path) == []


def test_matrix_has_the_same_jobs_by_stage(repo: Path) -> None:  # noqa: F811
    change_base_and_image(repo)
    assert matrix(find_affected(repo)) == {
        "image": [{"ref": "etcd@1.1.0"}],
        "create": [{"ref": "base@1.1.0"}, {"ref": "nomad@1.0.0"}, {"ref": "app@1.0.0"}],
        "upgrade": [{"block": "base", "from": "1.0.0", "to": "1.1.0"}],
    }


def test_generated_workflow_passes_actionlint(repo: Path, actionlint,  # noqa: F811
                                              tmp_path: Path) -> None:
    change_base_and_image(repo)
    path = tmp_path / "affected.yml"
    path.write_text(render(find_affected(repo), PipelineOptions(deploy_environments=("prod",))))
    assert lint_workflow(path) == []


def test_actionlint_is_not_a_rubber_stamp(repo: Path, actionlint,  # noqa: F811
                                          tmp_path: Path) -> None:
    change_base_and_image(repo)
    document = workflow(find_affected(repo))
    document["jobs"]["create-app-1-0-0"]["needs"] = ["create-nowhere"]
    path = tmp_path / "broken.yml"
    path.write_text(dump(document))
    problems = lint_workflow(path)
    assert any("create-nowhere" in p.message and p.kind == "job-needs" for p in problems)


@pytest.mark.parametrize("name", ["pull-request.yml", "release.yml"])
def test_the_monorepos_own_workflows_pass_actionlint(name: str, actionlint) -> None:
    assert [str(p) for p in lint_workflow(MAIN_REPO / "ci" / "workflows" / name)] == []


def test_release_workflow_upgrades_prod_after_approval() -> None:
    document = yaml.safe_load((MAIN_REPO / "ci" / "workflows" / "release.yml").read_text())
    triggers = document.get("on", document.get(True))
    assert triggers["push"]["tags"] == ["release-*"]
    upgrade = document["jobs"]["upgrade-prod"]
    assert upgrade["environment"]["name"] == "prod"
    assert upgrade["needs"] == "tag-images"
    assert upgrade["concurrency"]["group"] == "infrablocks-env-prod"
    scripts = "\n".join(step.get("run", "") for step in upgrade["steps"])
    assert '.venv/bin/doit upgrade "$block" --env prod --yes' in scripts
    tagging = "\n".join(s.get("run", "") for s in document["jobs"]["tag-images"]["steps"])
    assert '.venv/bin/doit image "$ref" --tag stable' in tagging


def test_yaml_scalars_read_back_verbatim() -> None:
    tricky = ["on", "yes", "no", "off", "y", "n", "null", "Null", "~", "true", "False", "1.0",
              ".5", ".inf", "-.Inf", ".nan", "1e3", "+1", "-7", "0x10", "0o17", "01", "1_000",
              "2026-11-30", "12:30:00", "a: b", "x #y", "${{ github.ref }}", "debian:12", "-x",
              "", " lead", "trail ", "plain text", "it's", "→", "*alias", "&anchor", "!tag",
              "@at", "`tick", "%pct", "|bar", ">gt", "[list]", "{map}"]
    document = {"values": tricky, "keys": {value: value for value in tricky if value},
                "script": "line one\nline two\n", "no-newline": "a\nb",
                "native": [True, False, None, 3, 0.5]}
    text = dump(document)
    assert yaml.safe_load(text) == document
    # what a YAML 1.2 reader (GitHub's, actionlint's) would read as a number, a bool or null is
    # quoted too, not only what PyYAML's YAML 1.1 resolver knows
    lines = {line.strip() for line in text.splitlines()}
    for value in (".5", ".inf", "1e3", "+1", "0o17", "0x10", "01", "2026-11-30", "yes", "on",
                  "null", "~"):
        assert f"- '{value}'" in lines, value
    assert "- true" in lines and "- null" in lines and "- 0.5" in lines


def test_yaml_keeps_the_hand_written_style() -> None:
    text = dump({"name": "ci", "jobs": {"build": {"needs": [], "env": {}, "steps": [
        {"uses": "actions/checkout@v4"}, {"run": "echo one\necho two\n"}]}}})
    assert text == ("name: ci\n"
                    "jobs:\n"
                    "  build:\n"
                    "    needs: []\n"
                    "    env: {}\n"
                    "    steps:\n"
                    "      - uses: actions/checkout@v4\n"
                    "      - run: |\n"
                    "          echo one\n"
                    "          echo two\n")


def test_doit_ci_pipeline_command(repo: Path, tmp_path: Path) -> None:  # noqa: F811
    change_base_and_image(repo)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRABLOCKS_")}
    out = tmp_path / "wf" / "affected.yml"

    def doit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(DOIT), "ci-pipeline", *args], cwd=repo, env=env, text=True,
                              capture_output=True, check=False, timeout=60)

    refused = doit("--base", "main", "--output", str(out))   # no directory is made for it
    assert refused.returncode == 2 and "wf does not exist" in refused.stderr, refused.stderr
    assert not out.parent.exists()
    out.parent.mkdir()
    written = doit("--base", "main", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert "create-app-1-0-0" in yaml.safe_load(out.read_text())["jobs"]
    assert doit("--base", "main", "--output", str(out), "--check").returncode == 0
    write(repo, "blocks/standalone/1.0.0/main.tf", "# now this changes too\n")
    stale = doit("--base", "main", "--output", str(out), "--check")
    assert stale.returncode == 1 and "is not the workflow this change needs" in stale.stderr
    as_matrix = doit("--base", "main", "--format", "matrix")
    assert json.loads(as_matrix.stdout)["image"] == [{"ref": "etcd@1.1.0"}]
    bad = doit("--format", "gitlab")     # checked by the command layer: a usage error
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--format expects one of workflow, matrix, got 'gitlab'" in bad.stderr
