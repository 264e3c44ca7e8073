"""The rolling procedure: the declaration (declaration.py), the plan (plan.py), the decider
(decide.py), the driver (driver.py), gates, journal, faults, outcome. Below
:mod:`infrablocks.deploy`; the entry points that wire it to a workspace are
:mod:`infrablocks.upgrade`. See docs/ARCHITECTURE.md, "Rolling upgrades"."""
