"""An AWS platform's settings (blocks.toml ``[platforms.NAME]`` with ``kind = "aws"``).

::

    [platforms.aws]
    region = "eu-west-1"                 # required
    profile = "infra"                    # optional: a profile of ~/.aws/config
    endpoint = "http://127.0.0.1:5000"   # optional: every AWS API at this URL (moto, LocalStack)
    endpoints = { ec2 = "http://…" }     # optional: per service (the SDKs' service ids)
    vpc_id = "vpc-0123456789abcdef0"     # optional: default, the region's default VPC
    subnets = "10.42.0.0/16"             # optional: where environments' subnets go (in the VPC)
    poll_interval = 5                    # optional: seconds between EC2 polls

Credentials are never settings: the AWS SDKs' standard chain finds them (environment variables,
the profile's files, SSO, an instance or task role). What the tool hands to Terraform and to the
block tests is the region, the profile and the endpoints, as the SDKs' own environment variables
(``AWS_REGION``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_<SERVICE>``), which the
hashicorp/aws provider (AWS SDK for Go v2) and boto3 both read.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infrablocks.errors import ConfigError

__all__ = ["AwsSettings", "settings_problems"]

KEYS = ("region", "profile", "endpoint", "endpoints", "vpc_id", "subnets", "poll_interval")
CREDENTIAL_KEYS = ("access_key", "secret_key", "token", "session_token", "access_key_id",
                   "secret_access_key")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_SERVICE = re.compile(r"^[a-z][a-z0-9-]*$")
_VPC = re.compile(r"^vpc-[0-9a-f]+$")


def settings_problems(table: Mapping[str, Any], where: str) -> list[str]:
    """Every problem of an AWS platform table; ``where`` prefixes each message."""
    problems: list[str] = []
    for key in sorted(set(table) - set(KEYS)):
        if key in CREDENTIAL_KEYS:
            problems.append(f"{where}.{key}: credentials are never read from blocks.toml; the "
                            "AWS chain finds them (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, "
                            "a profile, SSO, an instance role)")
        else:
            problems.append(f"{where}.{key}: unknown key (valid: kind, {', '.join(KEYS)})")
    region = table.get("region")
    if region is None:
        problems.append(f"{where}.region: missing (e.g. \"eu-west-1\")")
    elif not isinstance(region, str) or not _REGION.match(region):
        problems.append(f"{where}.region: {region!r} is not an AWS region like \"eu-west-1\"")
    for key in ("profile", "vpc_id"):
        value = table.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            problems.append(f"{where}.{key}: must be a non-empty string")
    vpc = table.get("vpc_id")
    if isinstance(vpc, str) and vpc and not _VPC.match(vpc):
        problems.append(f"{where}.vpc_id: {vpc!r} is not a VPC id like \"vpc-0123abcd\"")
    endpoint = table.get("endpoint")
    if endpoint is not None and not _is_url(endpoint):
        problems.append(f"{where}.endpoint: {endpoint!r} is not an http(s) URL")
    endpoints = table.get("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, dict):
            problems.append(f"{where}.endpoints: must be a table like {{ ec2 = \"http://…\" }}")
        else:
            for service, url in endpoints.items():
                if not _SERVICE.match(str(service)):
                    problems.append(f"{where}.endpoints.{service}: not a service id (ec2, sts…)")
                elif not _is_url(url):
                    problems.append(f"{where}.endpoints.{service}: {url!r} is not an http(s) URL")
    subnets = table.get("subnets")
    if subnets is not None:
        try:
            network = ipaddress.ip_network(str(subnets))
        except ValueError as exc:
            problems.append(f"{where}.subnets: {subnets!r} is not a network ({exc})")
        else:
            if network.version != 4 or network.prefixlen > 24:
                problems.append(f"{where}.subnets: {subnets!r} must be an IPv4 network of /24 "
                                "or larger (each environment takes a /24 of it)")
    interval = table.get("poll_interval")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int | float)
                                 or interval <= 0):
        problems.append(f"{where}.poll_interval: must be a positive number of seconds")
    return problems


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^\s/]+", value) is not None


def _service_variable(service: str) -> str:
    """The SDKs' variable for one service's endpoint: ``ec2`` → ``AWS_ENDPOINT_URL_EC2``."""
    return "AWS_ENDPOINT_URL_" + re.sub(r"[^A-Z0-9]", "_", service.upper())


@dataclass(frozen=True)
class AwsSettings:
    """Validated AWS platform settings (no credentials, ever)."""

    region: str
    profile: str | None = None
    endpoint: str | None = None
    endpoints: dict[str, str] = field(default_factory=dict)
    vpc_id: str | None = None
    subnets: str | None = None
    poll_interval: float = 5.0

    @classmethod
    def from_table(cls, table: Mapping[str, Any], where: str = "AWS platform") -> AwsSettings:
        problems = settings_problems(table, where)
        if problems:
            raise ConfigError(f"{where}: invalid settings", problems=problems)
        return cls(region=table["region"], profile=table.get("profile"),
                   endpoint=table.get("endpoint"), endpoints=dict(table.get("endpoints") or {}),
                   vpc_id=table.get("vpc_id"), subnets=table.get("subnets"),
                   poll_interval=float(table.get("poll_interval", 5.0)))

    @property
    def emulated(self) -> bool:
        """An endpoint override points EC2 elsewhere (moto, LocalStack): an emulator, whose
        instances run no software."""
        return bool(self.endpoint or self.endpoints.get("ec2"))

    def endpoint_for(self, service: str) -> str | None:
        return self.endpoints.get(service) or self.endpoint

    def environment(self) -> dict[str, str]:
        """The SDKs' environment variables for these settings (Terraform, block tests)."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.profile:
            env["AWS_PROFILE"] = self.profile
        if self.endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        for service, url in sorted(self.endpoints.items()):
            env[_service_variable(service)] = url
        return env

    def describe(self) -> str:
        where = f"aws {self.region}"
        if self.profile:
            where += f" (profile {self.profile})"
        if self.endpoint or self.endpoints:
            where += f" at {self.endpoint or ', '.join(sorted(self.endpoints.values()))}"
        return where

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` with these settings (the standard credential chain)."""
        import boto3

        session = boto3.session.Session(profile_name=self.profile, region_name=self.region)
        # any service by name: the stubs type only literal service names
        make_client: Callable[..., Any] = session.client
        return make_client(service, endpoint_url=self.endpoint_for(service))
