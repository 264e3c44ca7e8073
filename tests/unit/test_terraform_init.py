"""terraform/init.py's plugin-cache bypass and terraform/applylog.py's apply summary."""

from __future__ import annotations

import os
from pathlib import Path

from infrablocks.terraform.applylog import applied_changes
from infrablocks.terraform.init import bypass_plugin_cache


def test_links_through_the_cache_are_pointed_at_their_final_target(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / "provider"
    mirror.mkdir(parents=True)
    cache = tmp_path / "plugin-cache"
    (cache / "host" / "ns").mkdir(parents=True)
    (cache / "host" / "ns" / "mirrored").symlink_to(mirror, target_is_directory=True)
    registry_provider = cache / "host" / "ns" / "real"
    registry_provider.mkdir()
    providers = tmp_path / "work" / ".terraform" / "providers"
    through_cache = providers / "host" / "ns" / "mirrored" / "1.0.0" / "linux_amd64"
    in_cache = providers / "host" / "ns" / "real" / "1.0.0" / "linux_amd64"
    elsewhere = providers / "host" / "ns" / "other" / "1.0.0" / "linux_amd64"
    for link, target in ((through_cache, cache / "host" / "ns" / "mirrored"),
                         (in_cache, registry_provider), (elsewhere, mirror)):
        link.parent.mkdir(parents=True)
        link.symlink_to(target, target_is_directory=True)

    bypass_plugin_cache(providers, cache)
    assert Path(os.readlink(through_cache)) == mirror.resolve()
    assert Path(os.readlink(in_cache)) == registry_provider      # stable: left alone
    assert Path(os.readlink(elsewhere)) == mirror                 # not through the cache
    bypass_plugin_cache(tmp_path / "missing", cache)              # no providers yet: no-op


def test_applied_changes_reads_the_last_summary(tmp_path: Path) -> None:
    log = tmp_path / "apply.log"
    log.write_text("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.\n"
                   "…\nApply complete! Resources: 9 added, 2 changed, 0 destroyed.\n")
    assert applied_changes(log) == {"create": 9, "update": 2}
    log.write_text("No changes. Your infrastructure matches the configuration.\n")
    assert applied_changes(log) == {}
    assert applied_changes(tmp_path / "missing.log") == {}
