"""When the environment's last block is gone but the cloud keeps its subnet (AWS refuses to
delete a subnet something still uses: ``DependencyViolation``), the reason is said, not
dropped: ``delete_environment_subnet`` returns it, ``destroy`` puts it in the run's warnings,
and the summary prints every warning of the run."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from infrablocks.cloud.aws.network import delete_environment_subnet
from infrablocks.runner import RunReport
from infrablocks.tasks import _deploy_output

SUBNET = {"SubnetId": "subnet-0abc", "CidrBlock": "172.31.64.0/24", "VpcId": "vpc-1"}
VIOLATION = ("The subnet 'subnet-0abc' has dependencies and cannot be deleted.")


def _ec2() -> object:
    return boto3.client("ec2", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


def test_a_subnet_in_use_is_kept_and_the_reason_returned() -> None:
    ec2 = _ec2()
    with Stubber(ec2) as stub:
        stub.add_response("describe_subnets", {"Subnets": [SUBNET]})
        stub.add_client_error("delete_subnet", service_error_code="DependencyViolation",
                              service_message=VIOLATION, http_status_code=400,
                              expected_params={"SubnetId": "subnet-0abc"})
        reason = delete_environment_subnet(ec2, "vpc-1", "prod")
        stub.assert_no_pending_responses()
    assert reason == f"subnet subnet-0abc (172.31.64.0/24): DependencyViolation: {VIOLATION}"


def test_a_deleted_or_absent_subnet_has_no_reason() -> None:
    ec2 = _ec2()
    with Stubber(ec2) as stub:
        stub.add_response("describe_subnets", {"Subnets": [SUBNET]})
        stub.add_response("delete_subnet", {}, {"SubnetId": "subnet-0abc"})
        stub.add_response("describe_subnets", {"Subnets": []})
        assert delete_environment_subnet(ec2, "vpc-1", "prod") is None
        assert delete_environment_subnet(ec2, "vpc-1", "gone") is None
        stub.assert_no_pending_responses()


def test_the_summary_prints_the_runs_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    report = RunReport(nodes={}, jobs=1, keep_going=False, reverse=True, started_at=0.0,
                       warnings=[f"kept in the cloud: subnet subnet-0abc (172.31.64.0/24): "
                                 f"DependencyViolation: [in use] {VIOLATION}"])
    _deploy_output.print_run_summary(report, "destroy in prod")
    err = " ".join(capsys.readouterr().err.split())
    assert ("warning: kept in the cloud: subnet subnet-0abc (172.31.64.0/24): "
            "DependencyViolation: [in use]") in err
