"""The scheduler of a live nomad deployment, checked as on the local cloud (the same tests,
../../tests/test_scheduler.py) against its private IP and base's etcd: the runner sits inside
the VPC. (The jobs directory is on the node, not on the runner: not checked from here.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import EMULATED, NO_SERVICES

_LOCAL = Path(__file__).resolve().parents[2] / "tests" / "test_scheduler.py"
_spec = importlib.util.spec_from_file_location("nomad_service_tests", _LOCAL)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
test_the_scheduler_api_answers = _module.test_the_scheduler_api_answers
test_the_node_is_registered_in_base = _module.test_the_node_is_registered_in_base

pytestmark = pytest.mark.skipif(EMULATED, reason=NO_SERVICES)
