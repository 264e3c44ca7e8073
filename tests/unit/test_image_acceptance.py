"""checks.toml of an image version (what its verification boots and checks), the example images'
own checks files, and the `doit check` check that block versions' images have templates."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infrablocks.errors import ConfigError
from infrablocks.images import available_images, parse_image_ref
from infrablocks.images.acceptance import load_verify_spec, substitute
from infrablocks.images.inventory import check_block_images
from infrablocks.registry import load_registry

REPO_ROOT = Path(__file__).resolve().parents[2]


def image_repo(tmp_path: Path, checks: str | None) -> Path:
    version = tmp_path / "images" / "demo" / "1.0.0"
    version.mkdir(parents=True)
    (version / "demo.pkr.hcl").write_text("# template\n")
    if checks is not None:
        (version / "checks.toml").write_text(checks)
    return tmp_path


def problems(tmp_path: Path, checks: str) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        load_verify_spec(image_repo(tmp_path, checks), parse_image_ref("demo@1.0.0"))
    return failure.value.problems


@pytest.mark.parametrize("ref", [f"{n}@{v}" for n, vs in available_images(REPO_ROOT).items()
                                 for v in vs])
def test_every_example_image_declares_valid_checks(ref: str) -> None:
    spec = load_verify_spec(REPO_ROOT, parse_image_ref(ref))
    assert spec.checks
    if spec.boot.kind == "instance" and spec.boot.volume:
        assert any(c.volume_mounted for c in spec.checks), "the volume is not checked"


def test_companions_and_placeholders(tmp_path: Path) -> None:
    spec = load_verify_spec(image_repo(tmp_path, """
[boot]
volume = "xvdf"
user_data = { peer = "{dcs.ip}", me = "{ip}" }

[[companions]]
name = "dcs"
image = "etcd@1.1.0"
user_data = { me = "{dcs.ip}" }

[[checks]]
name = "answers"
http = "http://{ip}:80/"
status = 204
timeout = 5
"""), parse_image_ref("demo@1.0.0"))
    assert spec.companions[0].image == parse_image_ref("etcd@1.1.0")
    assert spec.checks[0].status == 204 and spec.checks[0].timeout == 5.0
    assert substitute(spec.boot.user_data["peer"], {"dcs.ip": "127.42.251.2"}) == "127.42.251.2"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"images/demo/1.0.0/checks.toml not found"):
        load_verify_spec(image_repo(tmp_path, None), parse_image_ref("demo@1.0.0"))


def test_every_problem_is_reported_with_its_key(tmp_path: Path) -> None:
    found = problems(tmp_path, """
[boot]
kind = "vm"
colour = "blue"

[[checks]]
name = "two kinds"
command = ["true"]
http = "http://{ip}/"

[[checks]]
name = "unknown placeholder"
command = ["echo", "{dsc.ip}"]

[[checks]]
command = ["true"]
""")
    prefix = "images/demo/1.0.0/checks.toml: "
    assert prefix + "boot.colour: unknown key (allowed: environment, kind, ready_timeout, " \
                    "user_data, volume)" in found
    assert prefix + "boot.kind: 'vm' is not one of instance, process" in found
    assert prefix + "checks[0] (two kinds): set exactly one of command, http, volume_mounted " \
                    "(found: command, http)" in found
    assert prefix + "checks[1].command[1]: unknown placeholder {dsc.ip} (valid: {ip}, " \
                    "{instance_dir}, {volume_dir}, {image_dir})" in found
    assert any(p.startswith(prefix + "checks[2].name:") for p in found)


def test_no_checks_and_bad_toml(tmp_path: Path) -> None:
    assert problems(tmp_path / "a", "[boot]\n") == [
        "images/demo/1.0.0/checks.toml: checks: declare at least one check ([[checks]] with "
        "command, http or volume_mounted)"]
    with pytest.raises(ConfigError, match="checks.toml: not valid TOML"):
        load_verify_spec(image_repo(tmp_path / "b", "[boot\n"), parse_image_ref("demo@1.0.0"))


def test_doit_check_finds_block_images_without_templates(tmp_path: Path) -> None:
    assert check_block_images(load_registry(REPO_ROOT)) == []
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copytree(REPO_ROOT / "images" / "etcd", repo / "images" / "etcd")
    (repo / "blocks" / "base" / "1.0.0").mkdir(parents=True)
    (repo / "blocks.toml").write_text(
        '[blocks.base.versions."1.0.0"]\nimages = ["etcd@1.0.0", "etcd@9.0.0", "consul@1.0.0"]\n')
    assert check_block_images(load_registry(repo)) == [
        'blocks.base.versions."1.0.0".images: etcd@9.0.0 has no template '
        "(images/etcd/9.0.0/*.pkr.hcl not found; versions of etcd: 1.0.0, 1.1.0)",
        'blocks.base.versions."1.0.0".images: consul@1.0.0 has no template '
        "(images/consul/1.0.0/*.pkr.hcl not found; images: etcd)",
    ]


@pytest.mark.parametrize("aws_dir", sorted(str(p.relative_to(REPO_ROOT))
                                          for p in REPO_ROOT.glob("images/*/*/aws")))
def test_aws_variant_passes_packer_validate(aws_dir: str, tmp_path: Path) -> None:
    """`packer validate -syntax-only`, and the full validation (offline, dummy credentials:
    the amazon-ebs builder's arguments are checked against its schema)."""
    import os
    import subprocess

    packer = shutil.which("packer") or "/usr/bin/packer"
    if not Path(packer).exists():
        pytest.fail("packer is not installed (scripts/bootstrap installs it)")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", "PACKER_CACHE_DIR": str(tmp_path),
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_EC2_METADATA_DISABLED": "true"}
    for extra in (["-syntax-only"], []):
        run = subprocess.run([packer, "validate", *extra, "."], cwd=REPO_ROOT / aws_dir,
                             env=env, capture_output=True, text=True, timeout=60, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
    template = next((REPO_ROOT / aws_dir).glob("*.pkr.hcl")).read_text()
    assert '"amazon-ebs"' in template and "../scripts/provision.sh" in template
