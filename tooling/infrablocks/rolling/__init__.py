"""Rolling upgrades: the decider (decide.py), the driver (driver.py), the entry points
(engine.py). See docs/ARCHITECTURE.md, "Rolling upgrades"."""
