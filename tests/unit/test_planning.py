"""The cross-block plan's pure parts: composition, state merge, the split, the saved plan file."""

from __future__ import annotations

import json
import os
import stat
import zipfile
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError, InfrablocksError, UsageError
from infrablocks.planning.compose import (
    OVERRIDE_FILE,
    PENDING_FILE,
    ModuleSpec,
    declared_outputs,
    merge_states,
    module_provider_configs,
    pending_image_files,
    render_root,
    write_composition,
)
from infrablocks.planning.planfile import (
    PlanFileError,
    describe_difference,
    fingerprint_changes,
    read_plan_file,
    write_plan_file,
)
from infrablocks.planning.split import contains_unknown, split_plan
from infrablocks.terraform.plan import Plan

LOCALCLOUD = "infrablocks.local/infrablocks/localcloud"
VERSIONS_TF = f'''terraform {{
  required_providers {{
    localcloud = {{ source = "{LOCALCLOUD}", version = "~> 0.1" }}
  }}
}}

provider "localcloud" {{}}
'''


def _module(root: Path, name: str, main: str, outputs: str = "", extra: dict | None = None
            ) -> Path:
    directory = root / "blocks" / name
    directory.mkdir(parents=True)
    (directory / "main.tf").write_text(main)
    (directory / "outputs.tf").write_text(outputs)
    (directory / "versions.tf").write_text(VERSIONS_TF)
    for rel, text in (extra or {}).items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    return directory


# -- composition ----------------------------------------------------------------------------------


def test_root_wires_declared_attributes_the_dependency_provides(tmp_path: Path) -> None:
    specs = [ModuleSpec("base", tmp_path / "b"),
             ModuleSpec("app", tmp_path / "a", {"base": ["endpoints", "optional_extra"],
                                                "raw": None})]
    text = render_root(specs, {"base": {"endpoints", "cluster_name"}, "raw": {"x"}},
                       environment="staging", subnet="127.42.7.0/24")
    assert 'module "base" {\n  source      = "./modules/base"' in text
    assert '  environment = "staging"\n  subnet_cidr = "127.42.7.0/24"' in text
    assert "  base = {\n    endpoints = module.base.endpoints\n  }" in text  # no extra
    assert "  raw = module.raw" in text
    assert 'output "outputs_app" {\n  value     = module.app\n  sensitive = true\n}' in text


def test_write_composition_copies_blocks_without_tests_and_refuses_own_tfvars(
        tmp_path: Path) -> None:
    source = _module(tmp_path, "base", 'resource "terraform_data" "x" {}\n',
                     'output "endpoints" {\n  value = 1\n}\n',
                     extra={"tests/test_it.py": "", "terraform.tfstate": "{}"})
    root = tmp_path / "composed"
    root.mkdir()
    write_composition(root, [ModuleSpec("base", source)], environment="e", subnet="s")
    copied = sorted(p.name for p in (root / "modules" / "base").iterdir())
    assert copied == ["main.tf", "outputs.tf", "versions.tf"]
    assert declared_outputs(source) == {"endpoints"}

    (source / "terraform.tfvars").write_text('x = 1\n')
    with pytest.raises(ConfigError, match="terraform.tfvars"):
        write_composition(root, [ModuleSpec("base", source)], environment="e", subnet="s")


def test_pending_images_defer_only_their_lookups(tmp_path: Path) -> None:
    source = _module(tmp_path, "app", '''
data "localcloud_image" "etcd" {
  name    = "etcd"
  version = local.image_version
}

data "localcloud_image" "other" {
  name = "other"
}

data "localcloud_image" "computed" {
  name = local.which
}

data "some_other_type" "x" {
  name = "etcd"
}
''')
    files = pending_image_files(source, ["etcd"])
    override = files[OVERRIDE_FILE]
    assert 'data "localcloud_image" "etcd" {\n  name = terraform_data.' in override
    assert '"computed"' in override                 # not a literal: deferred to be safe
    assert '"other"' not in override and "some_other_type" not in override
    assert 'resource "terraform_data" "infrablocks_image_pending"' in files[PENDING_FILE]
    assert pending_image_files(source, ["unrelated"]).keys() == {PENDING_FILE, OVERRIDE_FILE}
    plain = _module(tmp_path, "plain", 'resource "terraform_data" "x" {}\n')
    assert pending_image_files(plain, ["etcd"]) == {}


def test_merged_state_moves_resources_and_their_providers_into_modules(tmp_path: Path) -> None:
    own = _module(tmp_path, "base", "")
    inherits = tmp_path / "blocks" / "plain"
    inherits.mkdir()
    (inherits / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    aliased = tmp_path / "blocks" / "aws"
    aliased.mkdir()
    (aliased / "main.tf").write_text('provider "aws" {\n  alias  = "east"\n  region = "x"\n}\n')
    configs = {"base": module_provider_configs(own), "plain": module_provider_configs(inherits),
               "aws": module_provider_configs(aliased)}
    assert configs["base"] == {(LOCALCLOUD, None)}
    assert configs["aws"] == {("registry.terraform.io/hashicorp/aws", "east")}
    states = {
        "base": {"version": 4, "lineage": "l1", "serial": 9, "outputs": {"a": {"value": 1}},
                 "resources": [
                     {"mode": "managed", "type": "localcloud_instance", "name": "member",
                      "provider": f'provider["{LOCALCLOUD}"]', "instances": [{}]},
                     {"module": "module.inner", "mode": "managed", "type": "terraform_data",
                      "name": "x", "provider": f'provider["{LOCALCLOUD}"]', "instances": []}]},
        "plain": {"version": 4, "resources": [
            {"mode": "managed", "type": "terraform_data", "name": "x",
             "provider": 'provider["terraform.io/builtin/terraform"]', "instances": []}]},
        "aws": {"version": 4, "resources": [
            {"mode": "managed", "type": "aws_instance", "name": "a",
             "provider": 'provider["registry.terraform.io/hashicorp/aws"].east',
             "instances": []}]},
    }
    merged = merge_states(states, configs, "1.15.5")
    assert merged["version"] == 4 and merged["outputs"] == {} and merged["serial"] == 1
    assert merged["lineage"] not in ("l1", None)
    found = {(r.get("module"), r["name"]): r["provider"] for r in merged["resources"]}
    assert found == {
        ("module.base", "member"): f'module.base.provider["{LOCALCLOUD}"]',
        ("module.base.module.inner", "x"): f'module.base.provider["{LOCALCLOUD}"]',
        ("module.plain", "x"): 'provider["terraform.io/builtin/terraform"]',
        ("module.aws", "a"): 'module.aws.provider["registry.terraform.io/hashicorp/aws"].east',
    }
    assert states["base"]["resources"][0].get("module") is None   # inputs left untouched
    with pytest.raises(InfrablocksError, match="format version 3"):
        merge_states({"old": {"version": 3}}, {}, "1.15.5")


# -- the split ------------------------------------------------------------------------------------


def _rc(address: str, actions: list[str], mode: str = "managed") -> dict:
    parts = address.split(".")
    kind_at = len(parts) - (3 if mode == "data" else 2)
    entry = {"address": address, "mode": mode, "type": parts[-2], "name": parts[-1],
             "change": {"actions": actions}}
    if kind_at > 0:
        entry["module_address"] = ".".join(parts[:kind_at])
    return entry


def test_split_gives_each_block_its_changes_and_unknown_outputs() -> None:
    raw = {
        "resource_changes": [
            _rc("module.net.terraform_data.net", ["create"]),
            _rc("module.net.terraform_data.infrablocks_image_pending", ["create"]),
            _rc("module.net.data.localcloud_image.etcd", ["read"], mode="data"),
            _rc("module.app.terraform_data.app", ["update"]),
            _rc("module.app.terraform_data.same", ["no-op"]),
            _rc("module.app.module.inner.terraform_data.deep", ["delete", "create"]),
        ],
        "output_changes": {
            "outputs_net": {"actions": ["create"], "after": {"cidr": "10.0.0.0/24"},
                            "after_unknown": {"name": True, "cidr": False,
                                              "list": [False, True]}},
            "outputs_app": {"actions": ["create"], "after": {"url": "u"},
                            "after_unknown": False},
        },
    }
    slices = split_plan(Plan.from_json(raw), ["net", "app", "idle"])
    assert slices["net"].actions() == [("terraform_data.net", "create")]
    assert slices["net"].outputs == {"cidr": "10.0.0.0/24"}
    assert slices["net"].unknown_outputs == {"name", "list"}
    assert slices["app"].actions() == [("module.inner.terraform_data.deep", "replace"),
                                       ("terraform_data.app", "update")]
    assert slices["app"].outputs == {"url": "u"} and not slices["app"].unknown_outputs
    assert slices["idle"].changes == [] and slices["idle"].outputs == {}
    assert contains_unknown({"a": [False, {"b": True}]}) and not contains_unknown([False, {}])


# -- the saved plan file ---------------------------------------------------------------------------


def _manifest() -> dict:
    return {"environment": "dev", "subnet": "127.42.9.0/24", "terraform_version": "1.15.5",
            "fingerprint": {"net": {"lineage": None, "serial": None, "record": None}},
            "blocks": [{"block": "net", "target": "1.0.0", "apply": "saved"}]}


def test_plan_file_is_private_and_reads_back(tmp_path: Path) -> None:
    plan = tmp_path / "net.tfplan"
    plan.write_bytes(b"PK-ish bytes")
    out = tmp_path / "reviewed.plan"
    old = os.umask(0o022)
    try:
        write_plan_file(out, _manifest(), {"net": plan})
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    extract = tmp_path / "x"
    extract.mkdir(mode=0o700)
    manifest, plans = read_plan_file(out, extract)
    assert manifest["environment"] == "dev" and manifest["format"] == 1
    assert plans["net"].read_bytes() == b"PK-ish bytes"
    assert stat.S_IMODE(plans["net"].stat().st_mode) == 0o600


@pytest.mark.parametrize("content, message", [
    (b"not a zip", "not a readable saved plan"),
    (None, "not a plan saved by doit plan --out"),
    ("format", "has plan format 99"),
    ("damaged", "damaged saved plan: missing or invalid blocks"),
])
def test_bad_plan_files_are_refused_with_the_file_named(tmp_path: Path, content, message
                                                        ) -> None:
    path = tmp_path / "bad.plan"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        document = {"kind": "something-else"} if content is None else \
            {"kind": "infrablocks-plan", "format": 99} if content == "format" else \
            {"kind": "infrablocks-plan", "format": 1, **_manifest(), "blocks": "x"}
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("manifest.json", json.dumps(document))
    with pytest.raises(PlanFileError, match=message) as raised:
        read_plan_file(path, tmp_path)
    assert str(path) in raised.value.message
    with pytest.raises(PlanFileError, match="no plan file"):
        read_plan_file(tmp_path / "missing.plan", tmp_path)


def test_fingerprint_changes_name_what_moved() -> None:
    before = {"a": {"lineage": "l", "serial": 3, "record": "r1"},
              "b": {"lineage": None, "serial": None, "record": None},
              "c": {"lineage": "l", "serial": 1, "record": "r"}}
    after = {"a": {"lineage": "l", "serial": 5, "record": "r2"},
             "b": {"lineage": "m", "serial": 1, "record": "r"},
             "c": {"lineage": "l", "serial": 1, "record": "r"},
             "d": {"lineage": "x", "serial": 1, "record": None}}
    assert fingerprint_changes(before, after) == [
        "a: state serial 3 → 5, its deployment record changed",
        "b: its state appeared, its deployment record appeared",
        "d: its state appeared",
    ]
    assert fingerprint_changes(before, before) == []


def test_describe_difference_lists_each_address_once() -> None:
    text = describe_difference([("x.a", "create"), ("x.b", "update")],
                               [("x.b", "replace"), ("x.c", "delete")])
    assert text.splitlines() == ["x.a: create → no change", "x.b: update → replace",
                                 "x.c: no change → delete"]


def test_scratch_directories_are_private_and_those_of_dead_processes_swept(tmp_path: Path
                                                                           ) -> None:
    import subprocess
    import sys

    from infrablocks.planning.scratch import private_scratch

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)
    private = tmp_path / "private"          # the private root beside the working area
    dead = private / f".plan-{finished.stdout.strip()}-left"
    dead.mkdir(parents=True)
    mine = private / f".apply-{os.getpid()}-running"
    mine.mkdir()
    other = private / "staging"
    other.mkdir()
    fresh = private_scratch(tmp_path / "work", "plan")
    assert fresh.parent == private and fresh.name.startswith(f".plan-{os.getpid()}-")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert not dead.exists() and mine.exists() and other.exists()
    assert not (tmp_path / "work").exists()   # nothing holding secrets in the working area


def test_plan_file_refuses_a_directory_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is a directory"):
        write_plan_file(tmp_path, _manifest(), {})
    with pytest.raises(UsageError, match="is not a directory"):
        write_plan_file(tmp_path / "no" / "such.plan", _manifest(), {})
