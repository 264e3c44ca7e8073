"""An AWS platform as a whole: what its environments hold, stopping a block, sweeping one.

Instances, volumes, network interfaces and security groups belong to an environment (and a
block) by their ``environment`` and ``block`` tags, which every block's AWS module sets.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from infrablocks.cloud.aws.images import IMAGE_TAG, describe_amis
from infrablocks.cloud.aws.ops import device_name, translated, waiter_config

__all__ = ["describe", "snapshot", "stop_instances", "sweep"]

LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")


def _tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def _filters(environment: str | None, block: str | None = None) -> list[dict[str, Any]]:
    filters = [{"Name": "tag-key", "Values": ["block"]}]
    if environment:
        filters.append({"Name": "tag:environment", "Values": [environment]})
    if block:
        filters.append({"Name": "tag:block", "Values": [block]})
    return filters


def describe(ec2: Any, what: str, environment: str | None,
             block: str | None = None) -> list[dict[str, Any]]:
    """``what`` = instances | volumes | network_interfaces | security_groups of the
    environment (all infrablocks ones when None), through the paginators."""
    operation, key = {
        "instances": ("describe_instances", "Reservations"),
        "volumes": ("describe_volumes", "Volumes"),
        "network_interfaces": ("describe_network_interfaces", "NetworkInterfaces"),
        "security_groups": ("describe_security_groups", "SecurityGroups"),
    }[what]
    filters = _filters(environment, block)
    found: list[dict[str, Any]] = []
    with translated(f"{what.replace('_', ' ')} of {environment or 'every environment'}"):
        for page in ec2.get_paginator(operation).paginate(Filters=filters):
            for item in page.get(key, []):
                if what == "instances":
                    found.extend(item.get("Instances", []))
                else:
                    if "TagSet" in item and "Tags" not in item:
                        item = {**item, "Tags": item["TagSet"]}
                    found.append(item)
    return found


def _name(item: dict[str, Any], key: str) -> str:
    return _tags(item).get("Name") or str(item.get(key, ""))


def snapshot(ec2: Any, environment: str | None, ready: Callable[[str], bool]) -> dict[str, Any]:
    """Instances (not terminated), volumes and images as ``doit cloud`` shows them."""
    images = describe_amis(ec2)
    refs = {i["ImageId"]: _tags(i).get(IMAGE_TAG, i.get("Name", "")) for i in images}
    instances = [i for i in describe(ec2, "instances", environment)
                 if i.get("State", {}).get("Name") != "terminated"]
    volumes = describe(ec2, "volumes", environment)
    volume_names = {v["VolumeId"]: _name(v, "VolumeId") for v in volumes}
    instance_names = {i["InstanceId"]: _name(i, "InstanceId") for i in instances}
    rows = []
    for instance in sorted(instances, key=lambda i: _name(i, "InstanceId")):
        state = instance.get("State", {}).get("Name", "unknown")
        rows.append({
            "id": instance["InstanceId"], "name": _name(instance, "InstanceId"),
            "image_id": instance.get("ImageId", ""),
            "image": refs.get(instance.get("ImageId", ""), instance.get("ImageId", "")),
            "private_ip": instance.get("PrivateIpAddress", ""), "state": state,
            "state_reason": (instance.get("StateReason") or {}).get("Message", "")
            if state != "running" else "",
            "ready": state == "running" and ready(instance["InstanceId"]),
            "tags": _tags(instance),
            "volumes": {device_name(m["DeviceName"]): volume_names.get(
                m["Ebs"]["VolumeId"], m["Ebs"]["VolumeId"])
                for m in instance.get("BlockDeviceMappings", [])
                if "Ebs" in m and m["Ebs"]["VolumeId"] in volume_names}})
    volume_rows = []
    for volume in sorted(volumes, key=lambda v: _name(v, "VolumeId")):
        attachment = next((a for a in volume.get("Attachments", [])
                           if a.get("State") in ("attaching", "attached")), None)
        volume_rows.append({
            "id": volume["VolumeId"], "name": _name(volume, "VolumeId"),
            "size_gb": volume.get("Size", 0), "state": volume.get("State", "unknown"),
            "tags": _tags(volume),
            "availability_zone": volume.get("AvailabilityZone", ""),
            "attached_to": None if attachment is None else {
                "instance_id": attachment["InstanceId"],
                "instance": instance_names.get(attachment["InstanceId"], ""),
                "device": device_name(attachment.get("Device", ""))}})
    image_rows = [{
        "id": image["ImageId"], "name": _tags(image).get("image_name", image.get("Name", "")),
        "version": _tags(image).get("image_version", ""), "ami_name": image.get("Name", ""),
        "tags": [], "digest": image.get("ImageId", ""),
        "registered_at": str(image.get("CreationDate", ""))} for image in images]
    return {"instances": rows, "volumes": volume_rows, "images": image_rows}


def stop_instances(ec2: Any, environment: str, block: str, *, grace: float,
                   timeout: float, poll_interval: float) -> list[str]:
    """Stop the block's instances that are not stopped, in parallel: ``StopInstances``, then
    after ``grace`` seconds a forced stop of those still running; waits until all are stopped."""
    from botocore.exceptions import WaiterError

    running = [i for i in describe(ec2, "instances", environment, block)
               if i.get("State", {}).get("Name") in ("pending", "running", "stopping")]
    if not running:
        return []
    ids = [i["InstanceId"] for i in running]
    subject = f"instances of {block} in {environment} ({', '.join(ids)})"
    waiter = ec2.get_waiter("instance_stopped")
    with translated(subject):
        ec2.stop_instances(InstanceIds=ids)
    try:
        waiter.wait(InstanceIds=ids, WaiterConfig=waiter_config(grace, poll_interval))
    except WaiterError:
        with translated(subject):
            ec2.stop_instances(InstanceIds=ids, Force=True)
        _wait(waiter, subject, "stopped", timeout, InstanceIds=ids,
              WaiterConfig=waiter_config(timeout, poll_interval))
    return [_name(i, "InstanceId") for i in running]


def _wait(waiter: Any, subject: str, wanted: str, timeout: float, **request: Any) -> None:
    """A waiter whose failure is a CloudTimeoutError naming ``subject`` (no traceback)."""
    from botocore.exceptions import WaiterError

    from infrablocks.cloud.ops import CloudTimeoutError

    try:
        waiter.wait(**request)
    except WaiterError as error:
        raise CloudTimeoutError(f"{subject}: not {wanted} after {timeout:g}s ({error})",
                                wanted=wanted) from None


def sweep(ec2: Any, environment: str, *, timeout: float, poll_interval: float
          ) -> dict[str, list[str]]:
    """Terminate the environment's instances; delete its volumes, network interfaces and
    security groups. What cannot go (attached to another environment's instance, still in use)
    is listed under ``kept`` with the reason. Each entry is ``"name (id)"``."""
    from botocore.exceptions import ClientError

    removed: dict[str, list[str]] = {"instances": [], "volumes": [], "kept": []}
    live = [i for i in describe(ec2, "instances", environment)
            if i.get("State", {}).get("Name") in LIVE_STATES]
    if live:
        ids = [i["InstanceId"] for i in live]
        subject = f"instances of environment {environment} ({', '.join(ids)})"
        with translated(subject):
            ec2.terminate_instances(InstanceIds=ids)
        _wait(ec2.get_waiter("instance_terminated"), subject, "terminated", timeout,
              InstanceIds=ids, WaiterConfig=waiter_config(timeout, poll_interval))
        removed["instances"] = [f"{_name(i, 'InstanceId')} ({i['InstanceId']})" for i in live]

    def attempt(label: str, call: Callable[[], Any]) -> bool:
        try:
            call()
        except ClientError as error:
            details = error.response.get("Error", {})
            if details.get("Code", "").endswith(".NotFound"):
                return False
            removed["kept"].append(f"{label}: {details.get('Code')}: {details.get('Message')}")
            return False
        return True

    ours = {i["InstanceId"] for i in live}

    def delete_volume(volume: dict[str, Any]) -> str | None:
        label = f"volume {_name(volume, 'VolumeId')} ({volume['VolumeId']})"
        for attachment in volume.get("Attachments", []):
            if attachment.get("State") not in ("attaching", "attached"):
                continue
            if attachment["InstanceId"] not in ours:
                removed["kept"].append(f"{label}: attached to {attachment['InstanceId']} of "
                                       "another environment")
                return None
            # DetachVolume names the instance (some EC2 emulators refuse it without)
            if not attempt(label, partial(ec2.detach_volume, VolumeId=volume["VolumeId"],
                                          InstanceId=attachment["InstanceId"], Force=True)):
                return None
            _wait(ec2.get_waiter("volume_available"), label, "available", timeout,
                  VolumeIds=[volume["VolumeId"]],
                  WaiterConfig=waiter_config(timeout, poll_interval))
        if attempt(label, lambda: ec2.delete_volume(VolumeId=volume["VolumeId"])):
            return f"{_name(volume, 'VolumeId')} ({volume['VolumeId']})"
        return None

    volumes = describe(ec2, "volumes", environment)
    with ThreadPoolExecutor(max_workers=8) as pool:
        removed["volumes"] = [r for r in pool.map(delete_volume, volumes) if r]
    interfaces = []
    for interface in describe(ec2, "network_interfaces", environment):
        label = f"network interface {_name(interface, 'NetworkInterfaceId')} " \
                f"({interface['NetworkInterfaceId']})"
        attachment = interface.get("Attachment") or {}
        owner = attachment.get("InstanceId")
        if owner and owner not in ours and interface.get("Status") == "in-use" \
                and not _terminated(ec2, owner):
            removed["kept"].append(f"{label}: attached to {owner} of another environment")
            continue
        if owner and interface.get("Status") == "in-use" and attachment.get("DeviceIndex", 0):
            attempt(label, partial(ec2.detach_network_interface,
                                   AttachmentId=attachment["AttachmentId"], Force=True))
        if attempt(label, partial(ec2.delete_network_interface,
                                  NetworkInterfaceId=interface["NetworkInterfaceId"])):
            interfaces.append(f"{_name(interface, 'NetworkInterfaceId')} "
                              f"({interface['NetworkInterfaceId']})")
    if interfaces:
        removed["network_interfaces"] = interfaces
    groups = []
    for group in describe(ec2, "security_groups", environment):
        label = f"security group {group.get('GroupName')} ({group['GroupId']})"
        if attempt(label, partial(ec2.delete_security_group, GroupId=group["GroupId"])):
            groups.append(f"{group.get('GroupName')} ({group['GroupId']})")
    if groups:
        removed["security_groups"] = groups
    return removed


def _terminated(ec2: Any, instance_id: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError:
        return True
    states = [i.get("State", {}).get("Name") for r in reservations for i in r["Instances"]]
    return not states or all(s == "terminated" for s in states)
