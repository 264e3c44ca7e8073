"""Helpers shared by the test suites (imported as ``tests.support.*``; pytest puts the
repository root on ``sys.path``, see ``pythonpath`` in pyproject.toml)."""
