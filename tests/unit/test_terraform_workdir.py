"""Preparing a deployment's working directory from a block's source directory."""

import json
import shutil
import stat
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError
from infrablocks.terraform.workdir import (
    BACKEND_CONFIG_FILE,
    BACKEND_FILE,
    INPUTS_FILE,
    BackendSpec,
    Inputs,
    forget_private_dir,
    init_reason,
    prepare_workdir,
    private_dir_of,
    read_inputs,
    record_init,
    sensitive_inputs,
    terraform_variables_env,
)


@pytest.fixture
def area(tmp_path):
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


def make_block(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def local(path="/state/x.tfstate"):
    return BackendSpec("local", {"path": path})


V1 = {"main.tf": 'resource "terraform_data" "a" {}\n', "variables.tf": "variable \"x\" {}\n",
      "modules/net/main.tf": "# module\n", "files/entrypoint.sh": "#!/bin/sh\n",
      "tests/test_live.py": "def test(): pass\n", "terraform.tfstate": "{}",
      ".terraform/providers/x": "binary"}


def test_block_files_are_copied_without_tests_state_or_terraform_dirs(area):
    source = make_block(area / "blocks/base/1.0.0", V1)
    workdir = prepare_workdir(area / "work", "prod", "base", source, local(), {"x": 1})
    assert workdir == area / "work/prod/base"
    copied = sorted(p.relative_to(workdir).as_posix() for p in workdir.rglob("*")
                    if p.is_file() and not p.name.startswith(".infrablocks"))
    assert copied == sorted([BACKEND_FILE, INPUTS_FILE, "files/entrypoint.sh", "main.tf",
                             "modules/net/main.tf", "variables.tf"])
    # The source tree is left exactly as it was.
    assert sorted(p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()) \
        == sorted(V1)


def test_generated_backend_and_inputs(area):
    source = make_block(area / "src", {"main.tf": ""})
    inputs = {"environment": "prod", "subnet_cidr": "127.42.7.0/24",
              "base": {"endpoints": ["http://127.42.7.11:2379"], "size": 3}}
    workdir = prepare_workdir(area / "work", "prod", "stolon", source,
                              local('/st/prod/"stolon"/${x}.tfstate'), inputs)
    backend = (workdir / BACKEND_FILE).read_text()
    assert 'backend "local" {\n    path = "/st/prod/\\"stolon\\"/$${x}.tfstate"\n  }' in backend
    assert json.loads((workdir / INPUTS_FILE).read_text()) == inputs
    assert not (workdir / BACKEND_CONFIG_FILE).exists()


def test_s3_backend_is_a_partial_configuration_with_a_tfbackend_file(area):
    source = make_block(area / "src", {"main.tf": ""})
    spec = BackendSpec("s3", {"bucket": "states", "key": "prod/base.tfstate",
                              "region": "us-east-1", "use_path_style": True,
                              "endpoints": {"s3": "http://127.0.0.1:5000"}})
    workdir = prepare_workdir(area / "work", "prod", "base", source, spec, {})
    assert 'backend "s3" {}' in (workdir / BACKEND_FILE).read_text()
    assert (workdir / BACKEND_CONFIG_FILE).read_text() == (
        'bucket = "states"\nkey = "prod/base.tfstate"\nregion = "us-east-1"\n'
        'use_path_style = true\nendpoints = {\n  s3 = "http://127.0.0.1:5000"\n}\n')
    # Switching back to a local backend removes the s3 settings.
    prepare_workdir(area / "work", "prod", "base", source, local(), {})
    assert not (workdir / BACKEND_CONFIG_FILE).exists()


def test_a_new_block_version_replaces_stale_files_and_keeps_terraform_data(area):
    v1 = make_block(area / "blocks/base/1.0.0", V1)
    workdir = prepare_workdir(area / "work", "prod", "base", v1, local(), {})
    # What Terraform writes in the working directory.
    (workdir / ".terraform").mkdir()
    (workdir / ".terraform/terraform.tfstate").write_text("{}")
    (workdir / ".terraform.lock.hcl").write_text("# lock\n")
    (workdir / "terraform.tfstate").write_text("{}")
    v2 = make_block(area / "blocks/base/1.1.0", {
        "main.tf": 'resource "terraform_data" "b" {}\n', "outputs.tf": "# outputs\n"})
    prepare_workdir(area / "work", "prod", "base", v2, local(), {})
    assert (workdir / "main.tf").read_text() == 'resource "terraform_data" "b" {}\n'
    assert (workdir / "outputs.tf").is_file()
    for stale in ("variables.tf", "modules/net/main.tf", "files/entrypoint.sh"):
        assert not (workdir / stale).exists(), stale
    assert not (workdir / "modules").exists() and not (workdir / "files").exists()
    for kept in (".terraform/terraform.tfstate", ".terraform.lock.hcl", "terraform.tfstate"):
        assert (workdir / kept).is_file(), kept


def test_unchanged_files_are_not_rewritten(area):
    source = make_block(area / "src", {"main.tf": "# a\n"})
    workdir = prepare_workdir(area / "work", "dev", "b", source, local(), {"x": 1})
    stamps = {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()}
    prepare_workdir(area / "work", "dev", "b", source, local(), {"x": 1})
    assert {p.name: p.stat().st_mtime_ns for p in workdir.iterdir()} == stamps


def test_a_deleted_copy_is_restored(area):
    source = make_block(area / "src", {"main.tf": "# a\n"})
    workdir = prepare_workdir(area / "work", "dev", "b", source, local(), {})
    (workdir / "main.tf").unlink()
    prepare_workdir(area / "work", "dev", "b", source, local(), {})
    assert (workdir / "main.tf").read_text() == "# a\n"


def test_init_reason_follows_backend_and_source_changes(area):
    source = make_block(area / "src", {"main.tf": "# a\n"})
    workdir = prepare_workdir(area / "work", "dev", "b", source, local("/a.tfstate"), {"x": 1})
    assert init_reason(workdir) == "not initialized"
    (workdir / ".terraform").mkdir()
    record_init(workdir)
    assert init_reason(workdir) is None
    # Inputs do not need an init.
    prepare_workdir(area / "work", "dev", "b", source, local("/a.tfstate"), {"x": 2})
    assert init_reason(workdir) is None
    prepare_workdir(area / "work", "dev", "b", source, local("/b.tfstate"), {"x": 2})
    assert init_reason(workdir) == "backend configuration changed"
    record_init(workdir)
    (source / "main.tf").write_text("# b\n")
    prepare_workdir(area / "work", "dev", "b", source, local("/b.tfstate"), {"x": 2})
    assert init_reason(workdir) == "block files changed"
    record_init(workdir)
    assert init_reason(workdir, {"key": "other"}) == "backend configuration changed"


def test_bad_backends_are_refused_with_the_valid_choices(area):
    source = make_block(area / "src", {"main.tf": ""})
    with pytest.raises(ConfigError, match="unknown state backend 'gcs'") as info:
        prepare_workdir(area / "w", "dev", "b", source, BackendSpec("gcs", {}), {})
    assert "local, s3" in str(info.value)
    with pytest.raises(ConfigError, match="needs a `path`"):
        prepare_workdir(area / "w", "dev", "b", source, BackendSpec("local", {}), {})
    with pytest.raises(ConfigError, match="needs bucket and key"):
        prepare_workdir(area / "w", "dev", "b", source, BackendSpec("s3", {"region": "x"}), {})


def test_reserved_file_names_in_a_block_are_refused(area):
    source = make_block(area / "src", {"main.tf": "", "_infrablocks_backend.tf": ""})
    with pytest.raises(ConfigError, match="reserved for infrablocks") as info:
        prepare_workdir(area / "w", "dev", "b", source, local(), {})
    assert info.value.problems == ["_infrablocks_backend.tf"]


def test_inputs_that_are_not_json_name_the_input(area):
    source = make_block(area / "src", {"main.tf": ""})
    with pytest.raises(ConfigError, match="block 'b': inputs cannot be written as JSON") as info:
        prepare_workdir(area / "w", "dev", "b", source, local(), {"ok": 1, "when": object()})
    assert info.value.problems == ["input 'when'"]


def test_missing_source_and_bad_names(area):
    with pytest.raises(ConfigError, match="source directory .* does not exist"):
        prepare_workdir(area / "w", "dev", "b", area / "nope", local(), {})
    source = make_block(area / "src", {"main.tf": ""})
    with pytest.raises(ConfigError, match="invalid environment name '../x'"):
        prepare_workdir(area / "w", "../x", "b", source, local(), {})


# -- secrets stay out of the working directory -----------------------------------------------

def test_sensitive_inputs_go_to_the_private_directory_not_the_workdir(area):
    source = make_block(area / "src", V1)
    secret = {"password": "s3cret-value", "endpoint": "db"}
    inputs = Inputs({"environment": "prod", "db": secret, "base": {"ip": "127.42.1.11"}},
                    sensitive={"db"})
    workdir = prepare_workdir(area / ".infrablocks" / "work", "prod", "app", source, local(),
                              inputs)
    private = area / ".infrablocks" / "private" / "prod" / "app"
    assert json.loads((workdir / INPUTS_FILE).read_text()) == {
        "environment": "prod", "base": {"ip": "127.42.1.11"}}
    assert not any(b"s3cret" in p.read_bytes() for p in workdir.rglob("*") if p.is_file())
    assert private_dir_of(workdir) == private.resolve()
    for directory in (private, private.parent, private.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "inputs.json").stat().st_mode) == 0o600
    assert sensitive_inputs(workdir) == {"db": secret}
    assert read_inputs(workdir) == inputs and read_inputs(workdir).sensitive == {"db"}
    assert terraform_variables_env(workdir) == {
        "TF_VAR_db": '{\n  endpoint = "db"\n  password = "s3cret-value"\n}'}

    # nothing sensitive any more (e.g. the dependency changed): the private file goes
    prepare_workdir(area / ".infrablocks" / "work", "prod", "app", source, local(),
                    {"environment": "prod"})
    assert not (private / "inputs.json").exists() and terraform_variables_env(workdir) == {}
    forget_private_dir(workdir)
    assert not private.exists()


def test_an_unprepared_workdir_has_no_private_directory(area):
    assert private_dir_of(area) is None and read_inputs(area) is None
    assert terraform_variables_env(area) == {}
