"""Deployment records: stamped by whom/when, round trip, clear errors for damaged files."""

from __future__ import annotations

import json
import re

import pytest

from infrablocks.errors import InfrablocksError
from infrablocks.state.outputs import Outputs
from infrablocks.state.records import DEPLOYED, DeploymentRecord, current_identity, new_record


def test_new_record_stamps_time_identity_and_outputs_digest() -> None:
    outputs = Outputs({"url": "http://127.42.1.31:8081", "token": "x"}, {"token"})
    record = new_record("prod", "microservice01", "1.0.0", outputs=outputs,
                        terraform_version="1.15.5", extra={"images": ["etcd@1.0.0"]})

    assert record.status == DEPLOYED
    assert record.applied_by == current_identity() and "@" in record.applied_by
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record.applied_at)
    assert record.outputs_digest == outputs.digest()
    assert b"x\"" not in record.dumps()  # values never stored, only the digest
    again = DeploymentRecord.loads(record.dumps(), where="test")
    assert again == record


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="valid: creating, deployed"):
        new_record("prod", "base", "1.0.0", outputs=None, terraform_version="1.15.5",
                   status="done")


@pytest.mark.parametrize("raw, message", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (json.dumps({"environment": "prod"}).encode(), "malformed"),
    (json.dumps({"format": 99}).encode(), "record format 99"),
])
def test_damaged_records_name_the_file(raw: bytes, message: str) -> None:
    with pytest.raises(InfrablocksError, match=message) as caught:
        DeploymentRecord.loads(raw, where="/state/prod/base/deployment.json")
    assert "/state/prod/base/deployment.json" in str(caught.value)
