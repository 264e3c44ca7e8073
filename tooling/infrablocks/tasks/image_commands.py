"""`doit image NAME@VERSION [--tag TAG]`: build with packer, verify by booting, tag or remove."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infrablocks.errors import UsageError
from infrablocks.tasks._command import command_task, flag, option


def task_image() -> dict[str, Any]:
    """Build images/NAME/VERSION with packer, verify it by booting it, keep it if tagged."""
    return command_task(
        "image", _image, positional="refs",
        doc="build images/NAME/VERSION with packer, boot it on the local cloud and run its "
            "checks (checks.toml), then keep it if tagged, else remove it "
            "(doit image etcd@1.1.0 [--tag stable])",
        params=[option("tag", help="tag the verified image(s) with TAG and keep them "
                                   "(found by tag: data \"localcloud_image\" { tag = … })"),
                flag("keep", help="keep a verified image even without a tag"),
                flag("remove", help="deregister NAME@VERSION from the local cloud instead of "
                                    "building it (refused while instances use it)"),
                flag("verify", help="check registered images instead of building them: "
                                    "artifact intact and same content as a fresh build "
                                    "(all images in images/ when none is named)")],
    )


def _image(refs: list[str], tag: str | None, keep: bool = False, remove: bool = False,
           verify: bool = False) -> int | None:
    from infrablocks.images import find_template_dir, parse_image_ref
    from infrablocks.images.checkspec import load_verify_spec
    from infrablocks.paths import find_repo_root

    if remove and verify:
        raise UsageError("doit image: --remove and --verify exclude each other")
    if (remove or verify) and (tag or keep):
        raise UsageError("doit image: --tag and --keep go with a build, not with "
                         f"--{'remove' if remove else 'verify'}")
    if not refs and not verify:
        raise UsageError("doit image: name an image to build, e.g. `doit image etcd@1.0.0`")
    parsed = [parse_image_ref(ref) for ref in refs]
    repo_root = find_repo_root()
    if verify:
        return _verify(repo_root, parsed)
    if remove:
        return _remove(repo_root, parsed)
    for ref in parsed:  # every reference (and its checks) checked before the first slow build
        find_template_dir(repo_root, ref)
        load_verify_spec(repo_root, ref)
    return _release(repo_root, parsed, tag, keep)


def _release(repo_root: Path, refs: list[Any], tag: str | None, keep: bool) -> int | None:
    from rich.console import Console

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images.release import release_image
    from infrablocks.paths import work_dir

    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    console = Console(highlight=False, soft_wrap=True)
    for ref in refs:
        with console.status(f"{ref}: building") as status:
            release = release_image(repo_root, ref, cloud, tag=tag, keep=keep,
                                    progress=lambda text, ref=ref: status.update(
                                        f"{ref}: {text}"))
        verification = release.verification
        how = "[green]registered[/]" if release.new else \
            "[yellow]unchanged[/] (same content, same id)"
        console.print(f"[bold]{ref}[/] {how}, [green]verified[/] "
                      f"({len(verification.checks)} checks passed in "
                      f"{verification.seconds:.1f} s), {release.outcome}")
        console.print(f"  id          {release.image.id}")
        console.print(f"  digest      {release.image.digest}")
        console.print(f"  build time  {release.artifact.build_seconds:.2f} s")
        for check in verification.checks:
            console.print(f"  [green]✓[/] {check.name} [dim]({check.seconds:.1f} s: "
                          f"{check.detail})[/]")
        if release.image.tags and release.outcome != "removed (untagged)":
            console.print(f"  tags        {', '.join(release.image.tags)}")
        console.print(f"  packer log  {_relative(release.artifact.log_path, repo_root)}")
    return None


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _remove(repo_root: Path, refs: list[Any]) -> int | None:
    from rich.console import Console

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import lookup_image
    from infrablocks.paths import work_dir

    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    images = [lookup_image(cloud, ref) for ref in refs]  # all found before removing any
    console = Console(highlight=False, soft_wrap=True)
    for image in images:
        cloud.remove_image(image.id)
        console.print(f"[bold]{image.ref}[/] removed ({image.id})")
    return None


def _verify(repo_root: Path, refs: list[Any]) -> int | None:
    from rich.console import Console

    from infrablocks.cloud.local.control import LocalCloud
    from infrablocks.images import ImageRef, available_images, find_template_dir, verify_image
    from infrablocks.paths import work_dir

    if not refs:
        refs = [ImageRef(name, version)
                for name, versions in available_images(repo_root).items() for version in versions]
    for ref in refs:
        find_template_dir(repo_root, ref)
    cloud = LocalCloud.from_env(default=work_dir(repo_root) / "cloud")
    console = Console(highlight=False, soft_wrap=True)
    failed = 0
    for ref in refs:
        with console.status(f"verifying {ref}"):
            result = verify_image(repo_root, ref, cloud)
        if not result.registered:
            console.print(f"[bold]{ref}[/] [dim]not registered (nothing to verify)[/]")
        elif result.ok:
            console.print(f"[bold]{ref}[/] [green]ok[/] ({result.image.id}, intact, same "
                          f"content as images/{ref.name}/{ref.version}/)")
        else:
            failed += 1
            for problem in result.problems():
                console.print(f"[bold red]✗[/] {problem}")
    return 1 if failed else None
