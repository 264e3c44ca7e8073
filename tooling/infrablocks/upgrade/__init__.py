"""Upgrades over deployments: the entry points (engine.py: ``upgrade``, ``roll``) wiring the
rolling procedure (:mod:`infrablocks.rolling`) to a workspace, the target version
(target.py), the dependents' re-apply (dependents.py), ``doit test-upgrade`` (testing.py).
Above :mod:`infrablocks.deploy` (it applies through its block runs), which receives ``roll``
as its ``Roller``. See docs/ARCHITECTURE.md, "Rolling upgrades"."""
