"""The etcd cluster of a live base deployment, checked as on the local cloud (the same tests,
../../tests/test_cluster.py) against the members' private IPs: the runner sits inside the VPC."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import EMULATED, NO_SERVICES

_LOCAL = Path(__file__).resolve().parents[2] / "tests" / "test_cluster.py"
_spec = importlib.util.spec_from_file_location("base_service_tests", _LOCAL)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
globals().update({name: value for name, value in vars(_module).items()
                  if name.startswith("test_") and name != "test_outputs_name_three_members"})

pytestmark = pytest.mark.skipif(EMULATED, reason=NO_SERVICES)
